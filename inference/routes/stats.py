"""``/api/v1/stats``: served lists, clicks, CTR, categories, daily counts.

The counters are read by ``inference.stats.StatsReader`` (typed values); this module only
shapes them into the responses.
"""
from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Path, Query

from inference.deps import RuntimeDep
from inference.stats import StatsReader, StrategyCounts
from schemas.events import ID_PATTERN

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])


def _counts(c: StrategyCounts) -> dict:
    return {"lists": c.lists, "impressions": c.impressions, "clicks": c.clicks, "ctr": c.ctr}


@router.get("/user/{user_id}")
async def user_stats(rt: RuntimeDep, user_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict:
    got = await StatsReader(rt.store, rt.keys).user(user_id)
    infos = await rt.catalog.lookup(rt.store, got.seen[:500])
    cats = Counter(i.category for i in infos.values() if i.category)
    totals = got.totals
    return {
        "user_id": user_id,
        "lists_served": totals.lists,
        "impressions": totals.impressions,
        "clicks": totals.clicks,
        "ctr": totals.ctr,
        "by_strategy": {s: _counts(c) for s, c in got.by_strategy.items()},
        "events": got.events,
        "items_seen": len(got.seen),
        "top_categories": [{"category": c, "count": n} for c, n in cats.most_common(5)],
    }


@router.get("/global")
async def global_stats(rt: RuntimeDep, days: Annotated[int, Query(ge=1, le=90)] = 7) -> dict:
    got = await StatsReader(rt.store, rt.keys).global_(days)
    lists_total = got.lists_total
    return {
        "days": days,
        "ctr_by_strategy": {s: c.ctr for s, c in got.by_strategy.items()},
        "by_strategy": {s: dict(c.counts) for s, c in got.by_strategy.items()},
        "strategy_distribution": {s: round(c.lists / lists_total, 6) for s, c in got.by_strategy.items()
                                  if lists_total},
        "popular_items": [{"item_id": i, "score": s} for i, s in got.popular],
        "daily": [{"day": d.day, "events": d.events, "total": d.total} for d in got.days],
    }
