"""``/api/v1/stats``: served lists, clicks, CTR, categories, daily counts.

Counters are kept by the stream agents (``Keys.stats_day(day)``: ``{strategy}:impressions``,
``{strategy}:clicks``, ``type:{type}``; ``Keys.user_stats(user)``: ``{day}:{strategy}:...``)
and by the API itself (``{strategy}:lists`` in the same hashes, flushed in batches).
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, Path, Query

from inference.deps import RuntimeDep
from schemas.events import ID_PATTERN

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def days_back(n: int) -> list[str]:
    today = datetime.now(timezone.utc).date()
    return [(today - timedelta(days=d)).isoformat() for d in range(n)]


def ctr(clicks: float, impressions: float) -> float | None:
    """Clicks per impression, None without impressions.

    >>> ctr(1, 4), ctr(3, 0)
    (0.25, None)
    """
    return round(clicks / impressions, 6) if impressions else None


@router.get("/user/{user_id}")
async def user_stats(rt: RuntimeDep, user_id: Annotated[str, Path(pattern=ID_PATTERN)]) -> dict:
    keys = rt.keys
    raw, seen, counts = await rt.store.pipeline(lambda p: (
        p.hgetall(keys.user_stats(user_id)), p.smembers(keys.seen(user_id)), p.hgetall(keys.user_counts(user_id))))
    per: dict[str, Counter] = {}
    for field, val in (raw or {}).items():
        parts = _s(field).split(":")
        if len(parts) < 3:
            continue
        strategy, what = ":".join(parts[1:-1]), parts[-1]
        per.setdefault(strategy, Counter())[what] += int(float(val))
    totals = sum(per.values(), Counter())
    items = [_s(i) for i in seen or ()]
    infos = await rt.catalog.lookup(rt.store, items[:500])
    cats = Counter(i.category for i in infos.values() if i.category)
    return {
        "user_id": user_id,
        "lists_served": totals["lists"],
        "impressions": totals["impressions"],
        "clicks": totals["clicks"],
        "ctr": ctr(totals["clicks"], totals["impressions"]),
        "by_strategy": {s: {"lists": c["lists"], "impressions": c["impressions"], "clicks": c["clicks"],
                            "ctr": ctr(c["clicks"], c["impressions"])} for s, c in sorted(per.items())},
        "events": {_s(k): int(float(v)) for k, v in (counts or {}).items()},
        "items_seen": len(items),
        "top_categories": [{"category": c, "count": n} for c, n in cats.most_common(5)],
    }


@router.get("/global")
async def global_stats(rt: RuntimeDep, days: Annotated[int, Query(ge=1, le=90)] = 7) -> dict:
    keys = rt.keys
    day_list = days_back(days)
    res = await rt.store.pipeline(lambda p: (
        [p.hgetall(keys.stats_day(d)) for d in day_list], p.zrevrange(keys.pop_global, 0, 9, withscores=True)))
    *per_day, popular = res
    by_strategy: dict[str, Counter] = {}
    daily = []
    for day, raw in zip(day_list, per_day):
        types: dict[str, int] = {}
        for field, val in (raw or {}).items():
            f = _s(field)
            n = int(float(val))
            if f.startswith("type:"):
                types[f[5:]] = n
            elif ":" in f:
                strategy, what = f.rsplit(":", 1)
                by_strategy.setdefault(strategy, Counter())[what] += n
        daily.append({"day": day, "events": types, "total": sum(types.values())})
    lists_total = sum(c["lists"] for c in by_strategy.values()) or 0
    return {
        "days": days,
        "ctr_by_strategy": {s: ctr(c["clicks"], c["impressions"]) for s, c in sorted(by_strategy.items())},
        "by_strategy": {s: dict(c) for s, c in sorted(by_strategy.items())},
        "strategy_distribution": {s: round(c["lists"] / lists_total, 6) for s, c in sorted(by_strategy.items())
                                  if lists_total},
        "popular_items": [{"item_id": _s(i), "score": float(s)} for i, s in popular],
        "daily": daily,
    }
