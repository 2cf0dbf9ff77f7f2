"""Dataset filters applied to an event frame before it becomes an ``Interactions``.

Pure functions of a frame: the order is the usual one (keep the ``max_items`` most popular
items, then drop rare items and light users), repeated until the minimums hold together,
because dropping users can push an item under its minimum and the other way round.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Filters:
    min_user_interactions: int = 1
    min_item_interactions: int = 1
    max_items: int | None = None

    @classmethod
    def from_settings(cls, settings) -> "Filters":
        return cls(settings.min_user_interactions, settings.min_item_interactions, settings.max_items)

    @property
    def active(self) -> bool:
        return self.min_user_interactions > 1 or self.min_item_interactions > 1 or self.max_items is not None


def apply_filters(events: pd.DataFrame, filters: Filters, max_rounds: int = 10) -> pd.DataFrame:
    """Events that survive ``filters``; counts are of events (a repeat counts again).

    >>> ev = pd.DataFrame({"user_id": list("aaabbc"), "item_id": list("xyzxyx")})
    >>> apply_filters(ev, Filters(min_user_interactions=2)).user_id.unique().tolist()
    ['a', 'b']
    >>> sorted(apply_filters(ev, Filters(max_items=2)).item_id.unique().tolist())
    ['x', 'y']
    >>> apply_filters(ev, Filters(min_user_interactions=2, min_item_interactions=3)).item_id.unique().tolist()
    []
    """
    out = events
    if filters.max_items is not None:
        counts = out["item_id"].value_counts(sort=False)
        # most popular first; ties broken by id so the choice is reproducible
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        keep = {item for item, _ in ranked[: filters.max_items]}
        out = out[out["item_id"].isin(keep)]
    for _ in range(max_rounds):
        before = len(out)
        if filters.min_item_interactions > 1:
            n = out.groupby("item_id")["item_id"].transform("size")
            out = out[n >= filters.min_item_interactions]
        if filters.min_user_interactions > 1:
            n = out.groupby("user_id")["user_id"].transform("size")
            out = out[n >= filters.min_user_interactions]
        if len(out) == before:
            break
    return out.reset_index(drop=True)
