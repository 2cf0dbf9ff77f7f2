"""Baskets read from files: the shared parser of the basket importers and ``eval-basket``.

Two formats (see README, section *basket*):

- ``baskets``: one basket per line, comma-separated item *names* (the Groceries layout);
- ``basket-lines``: a CSV with header ``basket_id,item_id[,user_id][,segment][,timestamp]``.

Item names become ids with ``slugify`` (ids must match ``schemas.events.ID_PATTERN``) and
get a derived category with ``derive_category`` when the file carries none.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from schemas.errors import BadBasketFile

_NOT_ID = re.compile(r"[^A-Za-z0-9_.:@\-]+")


def slugify(name: str) -> str:
    """An item id from a free-text item name.

    >>> slugify("whole milk"), slugify("rolls/buns"), slugify(" cream cheese ")
    ('whole_milk', 'rolls_buns', 'cream_cheese')
    """
    return _NOT_ID.sub("_", name.strip().lower()).strip("_")[:128]


def derive_category(name: str) -> str:
    """A category for catalogs that have none: the last word of the item name.

    Groceries names put the kind last (``tropical fruit``, ``canned beer``,
    ``other vegetables``), so the last word groups them sensibly.

    >>> derive_category("tropical fruit"), derive_category("rolls/buns"), derive_category("UHT-milk")
    ('fruit', 'rolls/buns', 'uht-milk')
    """
    words = name.strip().lower().split()
    return words[-1] if words else ""


@dataclass
class Basket:
    basket_id: str
    items: list[str]  # item ids, first occurrence order, no duplicates
    user_id: str | None = None
    segment: str | None = None
    ts: float | None = None  # epoch seconds of the basket (its latest line)
    names: dict[str, str] = field(default_factory=dict)  # item id -> original name, when known


def parse_ts(value: str | None) -> float | None:
    """Epoch seconds from epoch or ISO 8601 text; None when empty.

    >>> parse_ts("10"), parse_ts("1970-01-01T00:00:20Z"), parse_ts("")
    (10.0, 20.0, None)
    """
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def iter_basket_file(path: Path) -> Iterator[Basket]:
    """``baskets`` format: line n (1-based, blank lines skipped) becomes basket ``b{n}``."""
    with open(path, newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            names: dict[str, str] = {}
            for raw in row:
                if raw.strip() and slugify(raw):
                    names.setdefault(slugify(raw), raw.strip())
            if names:
                yield Basket(f"b{n}", list(names), names=names)


def iter_basket_lines(path: Path) -> Iterator[Basket]:
    """``basket-lines`` format, grouped by ``basket_id`` (rows of a basket need not be adjacent).

    Item ids are kept as written (they are ids, not names). Raises ``BadBasketFile`` when the
    header lacks ``basket_id`` or ``item_id``; rows with an empty id are skipped.
    """
    baskets: dict[str, Basket] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip() for c in (reader.fieldnames or [])}
        missing = {"basket_id", "item_id"} - cols
        if missing:
            raise BadBasketFile(f"{path}: header needs {sorted(missing)} (got {sorted(cols)})")
        for row in reader:
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
            bid, item = row.get("basket_id", ""), row.get("item_id", "")
            if not bid or not item:
                continue
            b = baskets.get(bid)
            if b is None:
                b = baskets[bid] = Basket(bid, [], user_id=row.get("user_id") or None,
                                          segment=row.get("segment") or None)
            if item not in b.names:
                b.items.append(item)
                b.names[item] = row["item_id"]
            ts = parse_ts(row.get("timestamp"))
            if ts is not None:
                b.ts = ts if b.ts is None else max(b.ts, ts)
    yield from baskets.values()


def read_any(path: Path, fmt: str = "auto") -> list[Basket]:
    """Baskets of a file in either format; ``auto`` picks ``basket-lines`` when the first
    line is a header naming ``basket_id``."""
    path = Path(path)
    if fmt == "auto":
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        fmt = "basket-lines" if "basket_id" in [c.strip() for c in first.split(",")] else "baskets"
    if fmt == "baskets":
        return list(iter_basket_file(path))
    if fmt == "basket-lines":
        return list(iter_basket_lines(path))
    raise ValueError(f"unknown basket file format {fmt!r} (baskets | basket-lines | auto)")
