"""Readers that turn a file into the one event frame every dataset is built from.

The frame has columns ``user_id, item_id`` (str), ``timestamp`` (float epoch seconds),
``type`` (str) and ``value`` (float, NaN when absent). Sources:

- DESIGN's CSV: header ``user_id,item_id,timestamp[,type][,value]`` (timestamp in epoch
  seconds or ISO 8601; without ``type`` a row is a ``rate`` when it has a value, else a ``view``);
- MovieLens ``u.data`` (tab-separated) and ``ratings.dat`` (``::``): every rating is a
  ``rate`` event; ``u.item`` / ``movies.dat`` beside them give titles and genres;
- the replayed Parquet snapshot (``trainer.data.snapshot``).

Rows that cannot be used (an empty id, a timestamp that is not one) are dropped and
counted in the returned ``LoadReport``; a file that cannot be a dataset at all raises
``InvalidDataset`` with the reason.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from schemas.errors import InvalidDataset

log = logging.getLogger(__name__)

COLUMNS = ["user_id", "item_id", "timestamp", "type", "value"]
#: optional columns kept when a source has them (basket lines and the buyer's segment, for
#: the basket artefacts of a run)
EXTRA = ["basket_id", "profession", "segment"]
ML_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


@dataclass
class LoadReport:
    """What a reader kept and what it dropped, and why."""

    source: str
    rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    def describe(self) -> str:
        lost = ", ".join(f"{n} {why}" for why, n in self.dropped.items())
        return f"{self.source}: {self.rows} events" + (f" ({lost} dropped)" if lost else "")


@dataclass
class Source:
    """Events plus whatever metadata came with them."""

    events: pd.DataFrame
    report: LoadReport
    item_meta: pd.DataFrame | None = None  # index item_id; title, text, category
    user_meta: pd.DataFrame | None = None  # index user_id; segment, ...
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)  # snapshot offsets, when from one


def parse_timestamps(raw: pd.Series) -> pd.Series:
    """Epoch seconds (float) from numbers or ISO 8601 strings; NaN where neither.

    >>> parse_timestamps(pd.Series(["10", "1970-01-01T00:01:00Z", "soon"])).tolist()
    [10.0, 60.0, nan]
    """
    num = pd.to_numeric(raw, errors="coerce").astype("float64")
    todo = num.isna() & raw.notna()
    if todo.any():
        iso = pd.to_datetime(raw[todo].astype(str), utc=True, errors="coerce", format="ISO8601")
        secs = (iso - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        num[todo] = secs.to_numpy(dtype="float64", na_value=np.nan)
    return num


def normalise(frame: pd.DataFrame, report: LoadReport) -> pd.DataFrame:
    """Bring a raw frame to ``COLUMNS``; drop (and count) the rows that cannot be used."""
    missing = {"user_id", "item_id"} - set(frame.columns)
    if missing:
        raise InvalidDataset(
            f"{report.source}: header lacks {', '.join(sorted(missing))} "
            f"(expected user_id,item_id,timestamp[,type][,value])"
        )
    out = pd.DataFrame(index=frame.index)
    for col in ("user_id", "item_id"):
        out[col] = frame[col].astype("string").str.strip()
    if "timestamp" in frame:
        out["timestamp"] = parse_timestamps(frame["timestamp"])
    else:  # no time: row order is the only order there is
        out["timestamp"] = np.arange(len(frame), dtype="float64")
    out["value"] = pd.to_numeric(frame["value"], errors="coerce") if "value" in frame else np.nan
    if "type" in frame:
        typ = frame["type"].astype("string").str.strip().str.lower()
        out["type"] = typ.fillna("").replace("", pd.NA)
    else:
        out["type"] = pd.NA
    default = np.where(out["value"].notna(), "rate", "view")
    out["type"] = out["type"].fillna(pd.Series(default, index=out.index)).astype(str)

    bad_id = out["user_id"].isna() | out["item_id"].isna() | (out["user_id"] == "") | (out["item_id"] == "")
    report.drop("rows without a user_id or item_id", bad_id.sum())
    bad_ts = ~bad_id & out["timestamp"].isna()
    report.drop("rows with an unreadable timestamp", bad_ts.sum())
    extra = [c for c in EXTRA if c in frame]
    for col in extra:
        out[col] = frame[col].astype("string").str.strip().replace("", pd.NA).astype(object)
    out = out[~(bad_id | bad_ts)].reset_index(drop=True)
    out["user_id"] = out["user_id"].astype(str)
    out["item_id"] = out["item_id"].astype(str)
    report.rows = len(out)
    if report.dropped:
        log.warning("%s", report.describe())
    return out[COLUMNS + extra]


def read_csv(path: Path) -> Source:
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], skipinitialspace=True,
                          on_bad_lines="warn")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InvalidDataset(f"{path}: not a readable CSV: {exc}") from None
    except pd.errors.EmptyDataError:
        raise InvalidDataset(f"{path}: the file is empty") from None
    raw.columns = [c.strip().lower() for c in raw.columns]
    report = LoadReport(str(path))
    return Source(normalise(raw, report), report)


def read_movielens(path: Path) -> Source:
    """``u.data`` or ``ratings.dat``, with item titles and genres from the file beside it."""
    path = Path(path)
    sep = "::" if "::" in _first_line(path) else "\t"
    raw = pd.read_csv(path, sep=sep, header=None, names=["user_id", "item_id", "value", "timestamp"],
                      dtype=str, engine="python" if sep == "::" else "c", encoding="latin-1")
    raw["type"] = "rate"
    report = LoadReport(str(path))
    return Source(normalise(raw, report), report, item_meta=read_movielens_items(path.parent))


def read_movielens_items(folder: Path) -> pd.DataFrame | None:
    """Titles and genres (``category`` = first genre, ``text`` = every genre) when present."""
    folder = Path(folder)
    if (folder / "u.item").exists():
        raw = pd.read_csv(folder / "u.item", sep="|", header=None, encoding="latin-1", dtype=str)
        flags = raw.iloc[:, 5:5 + len(ML_GENRES)].astype(int).to_numpy()
        genres = [[g for g, f in zip(ML_GENRES, row) if f] for row in flags]
        ids, titles = raw[0], raw[1]
    elif (folder / "movies.dat").exists():
        raw = pd.read_csv(folder / "movies.dat", sep="::", header=None, engine="python", encoding="latin-1",
                          dtype=str)
        genres = [str(g).split("|") for g in raw[2]]
        ids, titles = raw[0], raw[1]
    else:
        return None
    return pd.DataFrame(
        {
            "title": titles.fillna("").to_numpy(),
            "category": ["|".join(g) if g else None for g in genres],  # multi-valued, `|`-separated
        },
        index=pd.Index(ids.astype(str).to_numpy(), name="item_id"),
    )


ITEM_FIELDS = ("title", "text", "category", "subcategory", "level")
USER_FIELDS = ("segment", "profession", "level")


def read_meta(path: Path, id_column: str, fields: tuple[str, ...]) -> pd.DataFrame:
    """Item or user metadata from a CSV (header with ``id_column``) or JSON lines (catalog /
    users records as on the topics); indexed by the id, the last record of an id winning."""
    path = Path(path)
    if not path.exists():
        raise InvalidDataset(f"{path}: no such file")
    if path.suffix in (".jsonl", ".json", ".ndjson"):
        try:
            raw = pd.read_json(path, lines=True, dtype=False)
        except ValueError as exc:
            raise InvalidDataset(f"{path}: not JSON lines: {exc}") from None
    else:
        try:
            raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InvalidDataset(f"{path}: not a readable CSV: {exc}") from None
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    if id_column not in raw:
        raise InvalidDataset(f"{path}: no {id_column} column (found {', '.join(raw.columns) or 'none'})")
    raw = raw[raw[id_column].notna()]
    if "segment" in fields and "segment" not in raw and "profession" in raw:
        raw["segment"] = raw["profession"]  # synonyms, as in schemas.catalog.UserProfile
    keep = [f for f in fields if f in raw]
    meta = raw[keep].copy()
    meta.index = pd.Index(raw[id_column].astype(str).str.strip(), name=id_column)
    return meta[~meta.index.duplicated(keep="last")]


def _first_line(path: Path) -> str:
    with open(path, encoding="latin-1") as fh:
        return fh.readline()


def sniff_format(path: Path) -> str:
    """``snapshot``, ``movielens`` or ``csv``, from the path and its first line.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = Path(d) / "u.data"; _ = p.write_text("1\\t2\\t3\\t4\\n")
    >>> sniff_format(p)
    'movielens'
    """
    path = Path(path)
    if path.is_dir() or path.suffix == ".parquet":
        return "snapshot"
    if not path.exists():
        raise InvalidDataset(f"{path}: no such file")
    first = _first_line(path)
    if "::" in first:
        return "movielens"
    fields = first.rstrip("\n").split("\t")
    if len(fields) >= 4 and all(f.strip().lstrip("-").replace(".", "", 1).isdigit() for f in fields[:4]):
        return "movielens"
    return "csv"


def load_source(path: Path, fmt: str = "auto") -> Source:
    """Read any supported file (``fmt``: auto | csv | movielens | snapshot)."""
    fmt = sniff_format(path) if fmt == "auto" else fmt
    if fmt == "csv":
        src = read_csv(path)
    elif fmt == "movielens":
        src = read_movielens(path)
    elif fmt == "snapshot":
        from trainer.data.snapshot import Snapshot

        src = Snapshot(Path(path)).read()
    else:
        raise InvalidDataset(f"unknown format {fmt!r}: use auto, csv, movielens or snapshot")
    if src.events.empty:
        raise InvalidDataset(f"{path}: no usable events ({src.report.describe()})")
    return src
