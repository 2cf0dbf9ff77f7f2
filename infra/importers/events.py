"""Interaction files: MovieLens (u.data / ratings.dat), DESIGN's CSV, and JSON lines.

Readers validate every row; a bad row raises ``InvalidEvent`` with its line number, which
the producer loop reports and skips (the rest of the file still goes through).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

import orjson

from schemas import topics
from schemas.errors import InvalidEvent
from schemas.events import parse_event


def _event(obj: dict, where: str) -> tuple[str, str, dict]:
    try:
        ev = parse_event(obj)
    except InvalidEvent as exc:
        raise InvalidEvent(f"{where}: {exc.reason}") from None
    return topics.INTERACTIONS, ev.user_id, ev.model_dump(mode="json")


def read_movielens(path: Path) -> Iterator[tuple[str, str, dict] | InvalidEvent]:
    """``u.data`` (tab-separated) or ``ratings.dat`` (``::``): user, item, rating, timestamp."""
    with open(path, encoding="latin-1") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split("::") if "::" in line else line.split("\t")
            if len(parts) < 4:
                yield InvalidEvent(f"line {n}: expected user, item, rating, timestamp")
                continue
            user, item, rating, ts = parts[:4]
            obj = {"event_id": f"ml-{user}-{item}-{ts}", "type": "rate", "user_id": user, "item_id": item,
                   "value": rating, "ts": _num(ts)}
            yield _safe(obj, f"line {n}")


def read_csv(path: Path) -> Iterator[tuple[str, str, dict] | InvalidEvent]:
    """CSV with header ``user_id,item_id,timestamp[,type][,value][,event_id]``."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"user_id", "item_id"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidEvent(f"{path}: header lacks {', '.join(sorted(missing))}")
        for n, row in enumerate(reader, 2):
            ts = row.get("timestamp") or None
            obj = {
                "event_id": row.get("event_id") or f"csv-{row['user_id']}-{row['item_id']}-{ts}-{row.get('type') or 'view'}",
                "type": row.get("type") or "view",
                "user_id": row["user_id"],
                "item_id": row["item_id"],
                "ts": _num(ts) if ts else None,
                "value": row.get("value") or None,
            }
            yield _safe(obj, f"line {n}")


def read_jsonl(path: Path) -> Iterator[tuple[str, str, dict] | InvalidEvent]:
    """One DESIGN-shaped event per line."""
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield InvalidEvent(f"line {n}: malformed JSON: {exc}")
                continue
            if not isinstance(obj, dict):
                yield InvalidEvent(f"line {n}: expected a JSON object")
                continue
            yield _safe(obj, f"line {n}")


def _safe(obj: dict, where: str) -> tuple[str, str, dict] | InvalidEvent:
    try:
        return _event(obj, where)
    except InvalidEvent as exc:
        return exc


def _num(ts: str | None) -> float | str | None:
    """Epoch seconds stay numbers; anything else is passed on for ISO parsing."""
    if ts is None:
        return None
    try:
        return float(ts)
    except ValueError:
        return ts
