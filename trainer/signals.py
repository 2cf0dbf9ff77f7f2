"""Users' signals built offline from a training split, the way the worker would have written them.

``OfflineSignals(data).user(u)`` is the offline twin of what the API reads from Redis for a
home list: the user's seen items, their recent items (newest first), global popularity
(summed event strengths, dislikes excluded, as ``sr:pop:global``), the popularity of the
user's segment, and the user's segment and level. Trending and co-occurrence pairs are not
rebuilt: with whole-catalogue scoring they only change the reasons given, never the items.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ranking.signals import UserSignals
from ranking.types import Scored
from trainer.data.interactions import Interactions

#: Event types that add no popularity in the worker either.
NO_POPULARITY = ("impression", "dislike")


class OfflineSignals:
    def __init__(self, data: Interactions, top_n: int = 1000, recent_n: int = 10):
        self.data = data
        self.recent_n = recent_n
        ev = data.events
        positive = ev[~ev["type"].isin(NO_POPULARITY)] if "type" in ev else ev
        pop = positive.groupby("item_id", sort=False)["strength"].sum()
        self.pop_global = _ranked(pop[pop > 0], top_n)
        self.segment_of: dict[str, str] = {}
        self.level_of: dict[str, int] = {}
        meta = data.user_meta
        if meta is not None and len(meta):
            meta = meta[~meta.index.duplicated(keep="last")]
            for col in ("profession", "segment"):  # the worker reads segment, then profession
                if col in meta:
                    for user, seg in meta[col].dropna().astype(str).items():
                        if seg:
                            self.segment_of[str(user)] = seg
            if "level" in meta:
                for user, lvl in pd.to_numeric(meta["level"], errors="coerce").dropna().items():
                    self.level_of[str(user)] = int(lvl)
        self.pop_segment: dict[str, Scored] = {}
        if self.segment_of:
            seg = positive["user_id"].map(self.segment_of)
            for name, frame in positive[seg.notna()].groupby(seg[seg.notna()], sort=False):
                s = frame.groupby("item_id", sort=False)["strength"].sum()
                self.pop_segment[str(name)] = _ranked(s[s > 0], top_n)
        order = ev.sort_values("timestamp", ascending=False, kind="stable") if "timestamp" in ev else ev
        self.recent_of = order.groupby("user_id", sort=False)["item_id"].agg(lambda s: list(dict.fromkeys(s))[:recent_n])

    def user(self, user: str) -> UserSignals:
        data = self.data
        u = data.user_index.get(user)
        seen = set() if u is None else {str(data.item_ids[i]) for i in data.matrix[u].indices}
        segment = self.segment_of.get(user)
        return UserSignals(
            user_id=user, segment=segment, level=self.level_of.get(user), seen=seen,
            recent=list(self.recent_of.get(user, [])), pop_global=self.pop_global,
            pop_segment=self.pop_segment.get(segment, []) if segment else [],
        )


def _ranked(pop: pd.Series, n: int) -> Scored:
    """Best first; ties by item id, as a Redis ZREVRANGE orders equal scores (reverse lexicographic).

    >>> _ranked(pd.Series({"a": 1.0, "b": 3.0, "c": 1.0}), 10)
    [('b', 3.0), ('c', 1.0), ('a', 1.0)]
    """
    frame = pd.DataFrame({"item": pop.index.astype(str), "score": pop.to_numpy(dtype=np.float64)})
    frame = frame.sort_values(["score", "item"], ascending=[False, False], kind="stable").head(n)
    return list(zip(frame["item"].tolist(), frame["score"].astype(float).tolist()))
