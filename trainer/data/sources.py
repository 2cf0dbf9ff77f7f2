"""Where a training set comes from: a file (through the shared readers of
``trainer.data.readers``), or the replayed Parquet snapshot (``trainer.data.snapshot``).

Every source gives the one event frame (``trainer.data.rows.COLUMNS``: ``user_id, item_id``
str, ``timestamp`` float epoch seconds, ``type`` str, ``value`` float, NaN when absent):

- DESIGN's CSV and MovieLens ``u.data`` / ``ratings.dat`` / JSON lines, read exactly as
  ``streamrec import`` reads them (``trainer.data.readers``: a row is the same event, or
  the same refusal, in both); ``u.item`` / ``movies.dat`` beside a MovieLens file give
  titles and genres;
- the snapshot, and ``events_for_training``: replay the topics when a broker is
  configured, then read the snapshot (what ``streamrec train`` without a file and the
  scheduler both run).

Rows that cannot be used are dropped and counted in the returned ``LoadReport``; a file that
cannot be a dataset at all raises ``InvalidDataset`` with the reason.

Dependencies go one way: ``rows`` ← ``readers``, ``snapshot`` ← ``sources``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from schemas.errors import InvalidDataset, ServiceUnavailable
from trainer.data.readers import first_line, parse_timestamps, read_frame
from trainer.data.rows import COLUMNS, EXTRA, LoadReport, Source
from trainer.data.snapshot import Snapshot

log = logging.getLogger(__name__)

__all__ = ["COLUMNS", "EXTRA", "LoadReport", "Source", "parse_timestamps", "load_source", "sniff_format",
           "read_meta", "read_movielens_items", "ITEM_FIELDS", "USER_FIELDS", "events_for_training", "Loaded"]

ML_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]


def read_csv(path: Path) -> Source:
    frame, report = read_frame(Path(path), "csv")
    return Source(frame, report)


def read_jsonl(path: Path) -> Source:
    frame, report = read_frame(Path(path), "jsonl")
    return Source(frame, report)


def read_movielens(path: Path) -> Source:
    """``u.data`` or ``ratings.dat``, with item titles and genres from the file beside it."""
    frame, report = read_frame(Path(path), "movielens")
    return Source(frame, report, item_meta=read_movielens_items(Path(path).parent))


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


def sniff_format(path: Path) -> str:
    """``snapshot``, ``jsonl``, ``movielens`` or ``csv``, from the path and its first line.

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
    if path.suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    first = first_line(path)
    if "::" in first:
        return "movielens"
    fields = first.rstrip("\n").split("\t")
    if len(fields) >= 4 and all(f.strip().lstrip("-").replace(".", "", 1).isdigit() for f in fields[:4]):
        return "movielens"
    return "csv"


def load_source(path: Path, fmt: str = "auto") -> Source:
    """Read any supported file (``fmt``: auto | csv | movielens | jsonl | snapshot)."""
    fmt = sniff_format(path) if fmt == "auto" else fmt
    if fmt == "csv":
        src = read_csv(path)
    elif fmt == "movielens":
        src = read_movielens(path)
    elif fmt == "jsonl":
        src = read_jsonl(path)
    elif fmt == "snapshot":
        src = Snapshot(Path(path)).read()
    else:
        raise InvalidDataset(f"unknown format {fmt!r}: use auto, csv, movielens, jsonl or snapshot")
    if src.events.empty:
        raise InvalidDataset(f"{path}: no usable events ({src.report.describe()})")
    return src


@dataclass
class Loaded:
    """What ``events_for_training`` found: the source (None when the replay found nothing new
    and the caller asked to skip reading then), the replay's report, and why it failed."""

    source: Source | None
    replay: object | None = None  # trainer.replay.ReplayResult
    replay_failed: str | None = None


def events_for_training(
    settings,
    interactions: Path | None = None,
    fmt: str = "auto",
    do_replay: bool = True,
    progress: bool = False,
    say: Callable[[str], None] = log.info,
    skip_unchanged: bool = False,
) -> Loaded:
    """The training events: the file ``interactions`` when given; otherwise replay the
    topics (when ``do_replay`` and a broker is configured) and read the snapshot.

    A replay that fails (broker down) is reported through ``say`` and the snapshot is read as
    it is; with no snapshot either, the failure is raised. With ``skip_unchanged`` a replay
    that changed nothing (no new interactions, no restarted log) returns ``source=None``
    without reading the snapshot. ``InvalidDataset`` when there is nothing to read."""
    if interactions is not None:
        return Loaded(load_source(interactions, fmt))
    from trainer.replay import replay  # aiokafka behind it; a file needs none of it

    snap = Snapshot(settings.snapshot_path())
    result, failed = None, None
    if do_replay and settings.kafka_bootstrap:
        try:
            result = replay(settings, progress=progress)
            say(result.describe())
        except ServiceUnavailable as exc:
            if not snap.exists():
                raise
            failed = str(exc)
            say(f"warning: {exc}; training on the snapshot as it is")
    if skip_unchanged and result is not None and not result.changed:
        return Loaded(None, result, failed)
    if not snap.exists():
        raise InvalidDataset(
            f"no data: pass --interactions FILE, or replay the topic first (`streamrec replay`; "
            f"no snapshot with events at {snap.path})"
        )
    return Loaded(snap.read(), result, failed)
