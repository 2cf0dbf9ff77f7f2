"""File → records for the broker. Each reader yields ``(topic, key, value)`` tuples; one
producer loop sends them, so every format gets the same batching, progress and error report.

Event ids are derived from the row (``ml-196-242-881250949``) so importing a file twice
counts nothing twice: the stream worker is idempotent on ``event_id``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from infra.importers.events import read_csv, read_jsonl, read_movielens

Record = tuple[str, str, dict]
Reader = Callable[[Path], Iterator[Record]]


def _basket_readers() -> dict[str, Reader]:
    try:
        from infra.importers.baskets import read_basket_lines, read_baskets, read_catalog
    except ImportError:  # pragma: no cover - only while the basket formats are absent
        return {}
    return {"baskets": read_baskets, "basket-lines": read_basket_lines, "catalog": read_catalog}


FORMATS: dict[str, Reader] = {
    "movielens": read_movielens,
    "csv": read_csv,
    "jsonl": read_jsonl,
    **_basket_readers(),
}

__all__ = ["FORMATS", "Record", "Reader"]
