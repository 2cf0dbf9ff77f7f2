"""Interaction files: MovieLens (u.data / ratings.dat), DESIGN's CSV, and JSON lines.

The reading itself is the trainer's (``trainer.data.readers``), so a row is the same event
here and in ``streamrec train --interactions FILE``: a CSV row with a ``value`` and no
``type`` is a ``rate`` in both, and a row refused here (a rating outside 1–5, an unknown
type, an unreadable time...) is refused there too. Every row is validated; a bad row becomes
an ``InvalidEvent`` naming its line, which the producer loop reports and skips (the rest of
the file still goes through). Event ids are derived from the row, so importing a file twice
counts nothing twice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from schemas import topics
from schemas.errors import InvalidDataset, InvalidEvent
from trainer.data.readers import iter_events

Record = tuple[str, str, dict]


def _records(path: Path, fmt: str) -> Iterator[Record | InvalidEvent]:
    try:
        for ev in iter_events(path, fmt):
            yield ev if isinstance(ev, InvalidEvent) else (topics.INTERACTIONS, ev["user_id"], ev)
    except InvalidDataset as exc:  # the whole file (no such file, a header without ids)
        raise InvalidEvent(str(exc)) from None


def read_movielens(path: Path) -> Iterator[Record | InvalidEvent]:
    """``u.data`` (tab-separated) or ``ratings.dat`` (``::``): user, item, rating, timestamp."""
    return _records(path, "movielens")


def read_csv(path: Path) -> Iterator[Record | InvalidEvent]:
    """CSV with header ``user_id,item_id,timestamp[,type][,value][,event_id]``."""
    return _records(path, "csv")


def read_jsonl(path: Path) -> Iterator[Record | InvalidEvent]:
    """One DESIGN-shaped event per line."""
    return _records(path, "jsonl")
