"""What a request allows: seen items, include/exclude lists, the user's level.

A candidate list is ``[(item_id, score), ...]``, best first (``ranking.types.Scored``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ranking.types import Scored


@dataclass(frozen=True)
class Filters:
    """What a request allows. ``include``/``exclude`` hold item ids and ``category:NAME`` entries."""

    exclude_seen: bool = True
    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    category_cap: int | None = None

    @classmethod
    def parse_list(cls, raw: str | None) -> frozenset[str]:
        """Comma-separated ids.

        >>> sorted(Filters.parse_list("i1, category:tools,,i2"))
        ['category:tools', 'i1', 'i2']
        """
        return frozenset(p.strip() for p in (raw or "").split(",") if p.strip())


@dataclass
class ItemInfo:
    title: str | None = None
    category: str | None = None
    level: int | None = None


def allowed(item: str, info: ItemInfo | None, filters: Filters, seen: set[str], user_level: int | None) -> bool:
    """Whether one candidate passes the filters.

    >>> f = Filters(exclude=frozenset({"category:adult"}))
    >>> allowed("i1", ItemInfo(category="adult"), f, set(), None)
    False
    >>> allowed("i2", ItemInfo(level=3), Filters(), set(), user_level=2)
    False
    >>> allowed("i3", None, Filters(), {"i3"}, None)
    False
    >>> allowed("i3", None, Filters(exclude_seen=False), {"i3"}, None)
    True
    """
    if filters.exclude_seen and item in seen:
        return False
    category = info.category if info else None
    if item in filters.exclude or (category is not None and f"category:{category}" in filters.exclude):
        return False
    if filters.include and item not in filters.include and (
        category is None or f"category:{category}" not in filters.include
    ):
        return False
    if user_level is not None and info is not None and info.level is not None and info.level > user_level:
        return False
    return True


def apply_filters(cands: Scored, infos: Mapping[str, ItemInfo], filters: Filters, seen: set[str],
                  user_level: int | None) -> Scored:
    """Candidates that pass, first occurrence of each item kept.

    >>> apply_filters([("a", 3.0), ("b", 2.0), ("a", 1.0)], {}, Filters(), {"b"}, None)
    [('a', 3.0)]
    """
    out, done = [], set()
    for item, score in cands:
        if item in done:
            continue
        done.add(item)
        if allowed(item, infos.get(item), filters, seen, user_level):
            out.append((item, score))
    return out
