"""Reading Parquet parts in bounded chunks, strings as integer codes (issue 17: 10M events).

A snapshot's parts are read a batch of rows at a time (``pyarrow`` ``iter_batches``), only the
columns asked for. String columns come out of Parquet dictionary-encoded and are turned into
``int32`` codes into one vocabulary grown chunk by chunk (``StringCodes``), so a column of ten
million user ids costs four bytes a row plus its distinct values, and no Python object is
made per event. The other columns are kept as Arrow arrays. ``Columns`` holds what was read;
``Columns.take`` gives the rows asked for as one Arrow table (strings decoded once, Arrow
memory, not Python objects), the shape ``Snapshot.frame`` turns into pandas.

>>> import tempfile; from pathlib import Path; import pyarrow as pa, pyarrow.parquet as pq
>>> d = Path(tempfile.mkdtemp())
>>> pq.write_table(pa.table({"u": ["a", "b", "a"], "x": [1.0, 2.0, 3.0]}), d / "p1.parquet")
>>> pq.write_table(pa.table({"u": ["c", None, "a"]}), d / "p2.parquet")
>>> schema = pa.schema([("u", pa.string()), ("x", pa.float64())])
>>> cols = read_columns([d / "p1.parquet", d / "p2.parquet"], schema, batch_rows=2)
>>> cols.codes["u"].tolist(), cols.part.tolist()
([0, 1, 0, 2, -1, 0], [0, 0, 0, 1, 1, 1])
>>> cols.take(np.array([5, 3])).to_pydict()
{'u': ['a', 'c'], 'x': [None, None]}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: rows per batch read from a part: bounds the memory of a read beyond what it keeps
BATCH_ROWS = 262_144


class StringCodes:
    """Distinct strings in order of first sight and the ``int32`` code of each (null: -1).

    A batch's dictionary is matched against the vocabulary once per distinct dictionary (the
    batches of one Parquet row group share theirs), never once per row.

    >>> c = StringCodes()
    >>> c.encode(pa.array(["x", "y", "x"])).tolist(), c.encode(pa.array([None, "z", "y"])).tolist()
    ([0, 1, 0], [-1, 2, 1])
    >>> c.values.to_pylist()
    ['x', 'y', 'z']
    """

    def __init__(self) -> None:
        self.values: pa.Array = pa.array([], pa.string())
        self._last: tuple[pa.Array, np.ndarray] | None = None  # (dictionary, its codes)

    def encode(self, column: pa.Array) -> np.ndarray:
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column.cast(pa.string()))
        dictionary = column.dictionary.cast(pa.string())
        if self._last is not None and (dictionary is self._last[0] or dictionary.equals(self._last[0])):
            mapping = self._last[1]
        else:
            mapping = self._match(dictionary)
            self._last = (dictionary, mapping)
        idx = column.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
        # -1 (null) indexes the appended sentinel
        return np.append(mapping, np.int32(-1))[idx]

    def _match(self, dictionary: pa.Array) -> np.ndarray:
        """The codes of a dictionary's values, new values appended to the vocabulary."""
        found = pc.index_in(dictionary, value_set=self.values).fill_null(-1).to_numpy(zero_copy_only=False)
        mapping = found.astype(np.int32)
        new = mapping < 0
        if new.any():
            mapping[new] = np.arange(len(self.values), len(self.values) + int(new.sum()), dtype=np.int32)
            self.values = pa.concat_arrays([self.values, dictionary.filter(pa.array(new))])
        return mapping

    def decode(self, codes: np.ndarray) -> pa.Array:
        return self.values.take(pa.array(codes, mask=codes < 0))


@dataclass
class Columns:
    """The columns read from a sequence of parts: codes for strings, Arrow for the rest, and
    the number (position in the list) of the part each row came from."""

    schema: pa.Schema
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    vocab: dict[str, StringCodes] = field(default_factory=dict)
    arrays: dict[str, pa.ChunkedArray] = field(default_factory=dict)
    part: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.part)

    def numbers(self, name: str) -> np.ndarray:
        """A numeric column as numpy (nulls as NaN for floats)."""
        return self.arrays[name].to_numpy()

    def take(self, rows: np.ndarray, names: Iterable[str] | None = None) -> pa.Table:
        """The rows at ``rows`` (positions, in the order given) as one table in ``schema``'s order."""
        names = list(names) if names is not None else self.schema.names
        cols = {}
        for n in names:
            if n in self.codes:
                cols[n] = self.vocab[n].decode(self.codes[n][rows])
            else:
                cols[n] = self.arrays[n].take(pa.array(rows))
        return pa.table(cols, schema=pa.schema([self.schema.field(n) for n in names]))


def batches(path: Path, schema: pa.Schema, names: list[str],
            batch_rows: int = BATCH_ROWS) -> Iterator[dict[str, pa.Array]]:
    """One part's ``names`` columns a batch at a time, in ``schema``'s types: strings as
    dictionary arrays, a column the part lacks (written before it existed) as nulls."""
    strings = pf_strings(path)
    pf = pq.ParquetFile(path, read_dictionary=[n for n in names if n in strings])
    have = set(pf.schema_arrow.names)
    read = [n for n in names if n in have] or pf.schema_arrow.names[:1]  # none of them: the rows still count
    for batch in pf.iter_batches(batch_size=batch_rows, columns=read):
        out = {}
        for n in names:
            want = schema.field(n).type
            if n not in have:
                out[n] = pa.nulls(batch.num_rows, want)
                continue
            col = batch.column(n)
            if pa.types.is_dictionary(col.type) and pa.types.is_string(want):
                out[n] = col
            elif col.type != want:
                out[n] = col.cast(want)
            else:
                out[n] = col
        yield out


def pf_strings(path: Path) -> set[str]:
    """The string columns of a part (read from its footer)."""
    return {f.name for f in pq.read_schema(path) if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}


def read_columns(paths: list[Path], schema: pa.Schema, names: list[str] | None = None,
                 plain: Iterable[str] = (), batch_rows: int = BATCH_ROWS) -> Columns:
    """``names`` (default: all of ``schema``) of every part, in order, a batch at a time.

    String columns become codes, except those in ``plain`` (kept as Arrow strings: a column
    with a value per row, such as ``event_id``, gains nothing from a vocabulary)."""
    names = list(names) if names is not None else schema.names
    plain = set(plain)
    out = Columns(pa.schema([schema.field(n) for n in names]))
    coded = [n for n in names if pa.types.is_string(schema.field(n).type) and n not in plain]
    out.vocab = {n: StringCodes() for n in coded}
    codes: dict[str, list[np.ndarray]] = {n: [] for n in coded}
    arrays: dict[str, list[pa.Array]] = {n: [] for n in names if n not in coded}
    parts: list[np.ndarray] = []
    for k, path in enumerate(paths):
        for batch in batches(Path(path), schema, names, batch_rows):
            rows = len(next(iter(batch.values())))
            parts.append(np.full(rows, k, np.int32))
            for n in coded:
                codes[n].append(out.vocab[n].encode(batch[n]))
            for n in arrays:
                col = batch[n]
                arrays[n].append(col.cast(pa.string()) if pa.types.is_dictionary(col.type) else col)
    out.part = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    out.codes = {n: (np.concatenate(c) if c else np.zeros(0, np.int32)) for n, c in codes.items()}
    out.arrays = {n: pa.chunked_array(a, type=out.schema.field(n).type) for n, a in arrays.items()}
    return out


def first_of_each(keys: pa.ChunkedArray | np.ndarray, order: np.ndarray, keep: str = "first") -> np.ndarray:
    """Positions of the rows to keep, one per distinct key, in ``order``: the first (or last)
    row of each key when the rows are taken in ``order``; null keys count as one key.

    >>> first_of_each(pa.chunked_array([["a", "b", "a", None, None]]), np.arange(5)).tolist()
    [0, 1, 3]
    >>> first_of_each(np.array([7, 8, 7]), np.array([2, 1, 0]), keep="last").tolist()
    [1, 0]
    """
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))  # a row's place in the log
    if isinstance(keys, np.ndarray):
        _, first = np.unique(keys[order] if keep == "first" else keys[order][::-1], return_index=True)
        ranks = first if keep == "first" else len(order) - 1 - first
    else:
        how = "min" if keep == "first" else "max"
        table = pa.table({"key": keys, "rank": pa.array(rank)})
        ranks = table.group_by("key", use_threads=False).aggregate([("rank", how)]).column(f"rank_{how}").to_numpy()
    return order[np.sort(ranks)]
