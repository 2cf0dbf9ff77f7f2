"""Basket and catalog files → records for the broker (formats ``baskets``, ``basket-lines``,
``catalog``; see README, section *basket*).

- ``baskets``: one basket per line, comma-separated item names. Names become ids with
  ``slugify`` (``whole milk`` → ``whole_milk``); each new item is first announced on
  ``catalog`` with its name as title and a derived category (the name's last word), then
  each line becomes ``purchase`` events of basket ``b{line}`` (user ``b{line}``: the file
  names no customer).
- ``basket-lines``: CSV ``basket_id,item_id[,user_id][,segment][,timestamp]``, other
  columns ignored; one ``purchase`` per row, ``context.basket_id`` and ``context.profession``
  set, user = ``user_id`` or else the basket id.
- ``catalog``: CSV ``item_id,title[,category][,private_label]`` → ``CatalogItem`` records.

Event ids derive from the row, so importing a file twice counts nothing twice. A bad row
becomes an ``InvalidEvent`` with its line number (reported, skipped); the file goes on.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from schemas import topics
from schemas.catalog import CatalogItem
from schemas.errors import InvalidEvent
from schemas.events import describe, parse_event
from trainer.data.baskets import derive_category, parse_ts, slugify

Record = tuple[str, str, dict]
TRUE = {"1", "true", "yes", "y", "t"}
FALSE = {"0", "false", "no", "n", "f", ""}


def _purchase(basket: str, user: str, item: str, where: str, segment: str | None = None,
              ts: float | None = None) -> Record | InvalidEvent:
    obj = {"event_id": f"bk-{basket}-{item}", "type": "purchase", "user_id": user, "item_id": item, "ts": ts,
           "context": {"basket_id": basket, "profession": segment or None}}
    try:
        ev = parse_event(obj)
    except InvalidEvent as exc:
        return InvalidEvent(f"{where}: {exc.reason}")
    return topics.INTERACTIONS, ev.user_id, ev.model_dump(mode="json")


def _catalog(obj: dict, where: str) -> Record | InvalidEvent:
    try:
        item = CatalogItem.model_validate(obj)
    except ValidationError as exc:
        return InvalidEvent(f"{where}: {describe(exc)}")
    return topics.CATALOG, item.item_id, item.model_dump(mode="json")


def read_baskets(path: Path) -> Iterator[Record | InvalidEvent]:
    known: set[str] = set()
    with open(path, newline="", encoding="utf-8") as fh:
        for n, row in enumerate(csv.reader(fh), start=1):
            names: dict[str, str] = {}
            for raw in row:
                slug = slugify(raw)
                if raw.strip() and slug:
                    names.setdefault(slug, raw.strip())
                elif raw.strip():
                    yield InvalidEvent(f"line {n}: item name {raw!r} has no usable characters")
            basket = f"b{n}"
            for item, name in names.items():
                if item not in known:
                    known.add(item)
                    yield _catalog({"item_id": item, "title": name, "category": derive_category(name)}, f"line {n}")
                yield _purchase(basket, basket, item, f"line {n}")


def _dict_rows(path: Path, required: set[str]) -> Iterator[tuple[int, dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = {(c or "").strip() for c in (reader.fieldnames or [])}
        missing = required - cols
        if missing:
            raise InvalidEvent(f"{path}: header lacks {', '.join(sorted(missing))} (has {', '.join(sorted(cols))})")
        for n, row in enumerate(reader, start=2):
            yield n, {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}


def read_basket_lines(path: Path) -> Iterator[Record | InvalidEvent]:
    for n, row in _dict_rows(path, {"basket_id", "item_id"}):
        basket, item = row.get("basket_id", ""), row.get("item_id", "")
        if not basket or not item:
            yield InvalidEvent(f"line {n}: basket_id and item_id are required")
            continue
        try:
            ts = parse_ts(row.get("timestamp"))
        except ValueError:
            yield InvalidEvent(f"line {n}: timestamp {row.get('timestamp')!r} is neither epoch seconds nor ISO 8601")
            continue
        yield _purchase(basket, row.get("user_id") or basket, item, f"line {n}", row.get("segment"), ts)


def read_catalog(path: Path) -> Iterator[Record | InvalidEvent]:
    for n, row in _dict_rows(path, {"item_id", "title"}):
        pl = row.get("private_label", "").lower()
        if pl not in TRUE | FALSE:
            yield InvalidEvent(f"line {n}: private_label must be 1/0/true/false, got {row.get('private_label')!r}")
            continue
        obj = {"item_id": row.get("item_id", ""), "title": row.get("title", ""),
               "category": row.get("category") or None, "private_label": pl in TRUE}
        yield _catalog(obj, f"line {n}")
