"""One reader per interaction file format, shared by ``streamrec import`` (``infra/importers``)
and ``streamrec train --interactions FILE`` (``trainer.data.sources``), so that a row means
the same event in both: the same type, value, time and event id, or the same refusal.

Formats:

- ``csv``: DESIGN's header ``user_id,item_id,timestamp[,type][,value][,event_id]`` (plus
  ``basket_id``, ``profession``, ``segment`` when present). ``timestamp`` in epoch seconds or
  ISO 8601; an empty one means now (DESIGN: "missing means now"). Without a ``type`` a row
  with a ``value`` is a rating (``rate``), otherwise a ``view``. The event id is the
  ``event_id`` column, else ``csv-{user}-{item}-{timestamp}-{type}``.
- ``movielens``: ``u.data`` (tab-separated) or ``ratings.dat`` (``::``): user, item, rating,
  timestamp; every line is a ``rate``, id ``ml-{user}-{item}-{timestamp}``.
- ``jsonl``: one DESIGN-shaped event per line, validated by ``schemas.events.parse_event``;
  a line without ``event_id`` gets ``jsonl-`` and a hash of the line.

A row that cannot be an event (no id, an id the schema refuses, an unreadable time, an
unknown type, a rating that is missing or outside 1–5, a malformed line) is refused with
its line number and the reason; it never stops the file. ``iter_events`` yields events for
the broker (or ``InvalidEvent`` per refused row); ``read_frame`` gives the trainer's event
frame and a ``LoadReport`` counting the refusals by kind. A file that cannot be read at all
(no such file, no ``user_id``/``item_id`` in the header) raises ``InvalidDataset``.

>>> import tempfile, pathlib
>>> f = pathlib.Path(tempfile.mkdtemp()) / "e.csv"
>>> _ = f.write_text("user_id,item_id,timestamp,value\\nu1,i1,10,4\\nu1,i2,11,9\\n")
>>> [e["type"] if isinstance(e, dict) else e.reason for e in iter_events(f, "csv")]
['rate', 'line 3: value: a rating must be between 1 and 5 (got 9)']
>>> frame, report = read_frame(f, "csv")
>>> frame[["item_id", "type", "value"]].values.tolist(), report.dropped
([['i1', 'rate', 4.0]], {'rows with a rating outside 1–5': 1})
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import logging
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import orjson
import pandas as pd

from schemas import topics
from schemas.errors import InvalidDataset, InvalidEvent
from schemas.events import ID_PATTERN, EventType, parse_event
from trainer.data.rows import COLUMNS, EXTRA, LoadReport, flatten

log = logging.getLogger(__name__)

FORMATS = ("csv", "movielens", "jsonl")
CHUNK_ROWS = 100_000
TYPES = {t.value for t in EventType}
RATING = (1.0, 5.0)  # schemas.events.Interaction: a ``rate`` needs a value in this range
MAX_ID = 128
#: the columns of a chunk: the event frame, its extras, and per row the line and the refusal
CHUNK_COLUMNS = ["line", "event_id", *COLUMNS, *EXTRA, "error", "why"]


# --- per format: raw string cells, one row per line ------------------------------------------------
def _csv_chunks(path: Path) -> Iterator[tuple[pd.DataFrame, list[tuple[int, str]]]]:
    """Raw CSV cells (str, stripped) with a ``line`` column, and the malformed lines."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh, skipinitialspace=True)
        try:
            header = [c.strip().lower() for c in next(reader)]
        except StopIteration:
            raise InvalidDataset(f"{path}: the file is empty") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidDataset(f"{path}: not a readable CSV: {exc}") from None
        missing = {"user_id", "item_id"} - set(header)
        if missing:
            raise InvalidDataset(f"{path}: header lacks {', '.join(sorted(missing))} "
                                 f"(expected user_id,item_id,timestamp[,type][,value])")
        width = len(header)
        rows: list[list[str]] = []
        lines: list[int] = []
        bad: list[tuple[int, str]] = []
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as exc:
                bad.append((reader.line_num, f"not a readable CSV line: {exc}"))
                continue
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) > width:
                bad.append((reader.line_num, f"expected {width} fields ({','.join(header)}), got {len(row)}"))
                continue
            rows.append([c.strip() for c in row] + [""] * (width - len(row)))
            lines.append(reader.line_num)
            if len(rows) >= CHUNK_ROWS:
                yield _cells(rows, header, lines), bad
                rows, lines, bad = [], [], []
        if rows or bad:
            yield _cells(rows, header, lines), bad


def _cells(rows: list[list[str]], header: list[str], lines: list[int]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=header, dtype=object)
    df = df.loc[:, ~df.columns.duplicated()]
    df["line"] = lines
    return df


def _movielens_chunks(path: Path) -> Iterator[tuple[pd.DataFrame, list[tuple[int, str]]]]:
    sep = "::" if "::" in first_line(path) else "\t"
    with open(path, encoding="latin-1") as fh:
        numbered = enumerate(fh, 1)
        while True:
            block = list(itertools.islice(numbered, CHUNK_ROWS))
            if not block:
                return
            block = [(n, line.strip()) for n, line in block if line.strip()]
            parts = [line.split(sep) for _, line in block]
            bad = [(n, "expected user, item, rating, timestamp") for (n, _), p in zip(block, parts) if len(p) < 4]
            good = [i for i, p in enumerate(parts) if len(p) >= 4]
            df = pd.DataFrame([parts[i][:4] for i in good], columns=["user_id", "item_id", "value", "timestamp"],
                              dtype=object)
            for c in df.columns:
                df[c] = df[c].str.strip()
            df["type"] = "rate"
            df["line"] = [block[i][0] for i in good]
            yield df, bad


# --- the rules every format shares ------------------------------------------------------------------
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


def _stable_id(prefix: str, text: str) -> str:
    if len(text) + len(prefix) + 1 <= MAX_ID:
        return f"{prefix}-{text}"
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()}"


def to_events(cells: pd.DataFrame, prefix: str, now: float | None = None) -> pd.DataFrame:
    """Raw string cells → ``CHUNK_COLUMNS``: the event each row is, or why it is none
    (``error``: the reason with the value; ``why``: its kind, for counting)."""
    now = time.time() if now is None else now
    n = len(cells)
    col = lambda name: (cells[name].astype(object).where(cells[name].notna(), "")  # noqa: E731
                        if name in cells else pd.Series([""] * n, index=cells.index, dtype=object))
    out = pd.DataFrame(index=cells.index)
    out["line"] = cells["line"].astype("int64") if "line" in cells else np.arange(1, n + 1)
    user, item = col("user_id").astype(str), col("item_id").astype(str)
    ts_raw, typ_raw, val_raw, eid = col("timestamp").astype(str), col("type").astype(str), col("value").astype(str), \
        col("event_id").astype(str)
    out["user_id"], out["item_id"] = user, item
    ts = parse_timestamps(ts_raw.where(ts_raw != ""))
    out["timestamp"] = ts.where(ts_raw != "", now)
    value = pd.to_numeric(val_raw.where(val_raw != ""), errors="coerce").astype("float64")
    out["value"] = value
    typ = typ_raw.str.lower()
    out["type"] = typ.where(typ != "", np.where(value.notna(), EventType.rate.value, EventType.view.value))
    derived = user + "-" + item + "-" + ts_raw.where(ts_raw != "", "None")
    if prefix != "ml":
        derived = derived + "-" + out["type"].astype(str)
    long = derived.str.len() > MAX_ID - len(prefix) - 1
    derived = (prefix + "-" + derived).astype(object)
    if long.any():
        derived[long] = [_stable_id(prefix, text) for text in (derived[long].str.slice(len(prefix) + 1))]
    out["event_id"] = eid.where(eid != "", derived)
    for extra in EXTRA:
        if extra in cells:
            cell = col(extra).astype(str)
            out[extra] = cell.where(cell != "", None)

    error = pd.Series([None] * n, index=cells.index, dtype=object)
    why = pd.Series([None] * n, index=cells.index, dtype=object)

    def refuse(mask: pd.Series, kind: str, reasons: pd.Series) -> None:
        mask = mask & error.isna()
        if mask.any():
            error[mask] = reasons[mask]
            why[mask] = kind

    for name, ids in (("user_id", user), ("item_id", item)):
        refuse(ids == "", "rows without a user_id or item_id", pd.Series(f"{name}: missing", index=cells.index))
        refuse(~ids.str.match(ID_PATTERN), "rows with an invalid id",
               name + ": not an id (letters, digits, _.:@- only, at most 128): " + ids.str.slice(0, 40))
    refuse(ts.isna() & (ts_raw != ""), "rows with an unreadable timestamp",
           "timestamp: neither epoch seconds nor ISO 8601: " + ts_raw.str.slice(0, 40))
    refuse(value.isna() & (val_raw != ""), "rows with a non-numeric value", "value: not a number: " + val_raw.str.slice(0, 40))
    refuse(~out["type"].isin(TYPES), "rows with an unknown type",
           "type: unknown " + out["type"].str.slice(0, 40) + f" (one of {', '.join(sorted(TYPES))})")
    rate = out["type"] == EventType.rate.value
    refuse(rate & ~value.between(*RATING), "rows with a rating outside 1–5",
           "value: a rating must be between 1 and 5 (got " + val_raw.where(val_raw != "", "none") + ")")
    refuse(out["event_id"].str.len() > MAX_ID, "rows with an invalid id", pd.Series("event_id: longer than 128", index=cells.index))
    out["error"], out["why"] = error, why
    return out.reindex(columns=CHUNK_COLUMNS)


def _malformed(bad: list[tuple[int, str]]) -> pd.DataFrame:
    df = pd.DataFrame({"line": [n for n, _ in bad], "error": [r for _, r in bad]}, dtype=object)
    df["why"] = "malformed lines"
    return df.reindex(columns=CHUNK_COLUMNS)


def read_chunks(path: Path, fmt: str) -> Iterator[pd.DataFrame]:
    """``CHUNK_COLUMNS`` frames of at most ``CHUNK_ROWS`` lines each, in file order
    (csv and movielens; jsonl goes through ``jsonl_events``)."""
    path = Path(path)
    if not path.exists():
        raise InvalidDataset(f"{path}: no such file")
    if fmt == "csv":
        chunks, prefix = _csv_chunks(path), "csv"
    elif fmt == "movielens":
        chunks, prefix = _movielens_chunks(path), "ml"
    else:
        raise InvalidDataset(f"unknown format {fmt!r}: use {', '.join(FORMATS)}")
    now = time.time()
    for cells, bad in chunks:
        parts = [to_events(cells, prefix, now)] + ([_malformed(bad)] if bad else [])
        yield pd.concat(parts, ignore_index=True).sort_values("line", kind="stable") if bad else parts[0]


def jsonl_events(path: Path) -> Iterator[tuple[int, object]]:
    """``(line, Interaction | InvalidEvent)`` per non-empty line of a JSON-lines file."""
    path = Path(path)
    if not path.exists():
        raise InvalidDataset(f"{path}: no such file")
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield n, InvalidEvent(f"line {n}: malformed JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                yield n, InvalidEvent(f"line {n}: expected a JSON object")
                continue
            if not obj.get("event_id"):  # deterministic: the same line is the same event
                obj["event_id"] = "jsonl-" + hashlib.sha1(line.strip()).hexdigest()
            try:
                yield n, parse_event(obj)
            except InvalidEvent as exc:
                yield n, InvalidEvent(f"line {n}: {exc.reason}")


# --- the two consumers ---------------------------------------------------------------------------------
def iter_events(path: Path, fmt: str) -> Iterator[dict | InvalidEvent]:
    """Events for the broker: a DESIGN event dict per usable row (validated by
    ``parse_event``, as the worker will), an ``InvalidEvent`` naming the line otherwise."""
    if fmt == "jsonl":
        for _, ev in jsonl_events(path):
            yield ev if isinstance(ev, InvalidEvent) else ev.model_dump(mode="json")
        return
    for chunk in read_chunks(path, fmt):
        for row in chunk.itertuples(index=False):
            if row.error is not None:
                yield InvalidEvent(f"line {row.line}: {row.error}")
                continue
            ctx = {k: getattr(row, k) for k in ("basket_id", "profession") if isinstance(getattr(row, k), str)}
            obj = {"event_id": row.event_id, "type": row.type, "user_id": row.user_id, "item_id": row.item_id,
                   "ts": float(row.timestamp), "value": None if pd.isna(row.value) else float(row.value),
                   "context": ctx}
            try:
                yield parse_event(obj).model_dump(mode="json")
            except InvalidEvent as exc:
                yield InvalidEvent(f"line {row.line}: {exc.reason}")


def read_frame(path: Path, fmt: str) -> tuple[pd.DataFrame, LoadReport]:
    """The trainer's event frame (``COLUMNS`` plus the ``EXTRA`` columns the file has) and
    what was refused, counted by kind (the first few reasons are logged with their lines)."""
    report = LoadReport(str(path))
    if fmt == "jsonl":
        rows, refused = [], []
        for n, ev in jsonl_events(path):
            if isinstance(ev, InvalidEvent):
                refused.append(ev.reason)
                report.drop("malformed or invalid lines", 1)
            else:
                rows.append(flatten(topics.INTERACTIONS, ev))
        frame = pd.DataFrame(rows).reindex(columns=COLUMNS + ["basket_id", "profession"])
        examples = refused[:5]
    else:
        frames, examples = [], []
        for chunk in read_chunks(path, fmt):
            bad = chunk["error"].notna()
            for kind, count in chunk.loc[bad, "why"].value_counts(sort=False).items():
                report.drop(kind, count)
            if len(examples) < 5:
                examples += [f"line {n}: {e}" for n, e in zip(chunk.loc[bad, "line"], chunk.loc[bad, "error"])][:5]
            frames.append(chunk[~bad])
        frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CHUNK_COLUMNS)
        present = [c for c in EXTRA if c in frame and frame[c].notna().any()]
        frame = frame[COLUMNS + present]
    frame = frame.reset_index(drop=True)
    frame["user_id"] = frame["user_id"].astype(str)
    frame["item_id"] = frame["item_id"].astype(str)
    frame["type"] = frame["type"].astype(str)
    frame["timestamp"] = frame["timestamp"].astype("float64")
    frame["value"] = frame["value"].astype("float64")
    report.rows = len(frame)
    if report.dropped:
        log.warning("%s; e.g. %s", report.describe(), "; ".join(examples))
    return frame, report


def first_line(path: Path) -> str:
    with open(path, encoding="latin-1") as fh:
        return fh.readline()
