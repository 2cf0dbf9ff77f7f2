"""Typed reads of the stats hashes behind ``/api/v1/stats``.

Counters are kept by the stream agents (``Keys.stats_day(day)``: ``{strategy}:impressions``,
``{strategy}:clicks``, ``type:{type}``; ``Keys.user_stats(user)``: ``{day}:{strategy}:...``)
and by the API itself (``{strategy}:lists`` in the same hashes, flushed in batches). This
module turns those hashes into values; the route only shapes them into the response.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from inference.store import RedisStore
from schemas.keys import Keys


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def days_back(n: int) -> list[str]:
    """The last ``n`` UTC days, today first (``2026-11-22``)."""
    today = datetime.now(timezone.utc).date()
    return [(today - timedelta(days=d)).isoformat() for d in range(n)]


def ctr(clicks: float, impressions: float) -> float | None:
    """Clicks per impression, None without impressions.

    >>> ctr(1, 4), ctr(3, 0)
    (0.25, None)
    """
    return round(clicks / impressions, 6) if impressions else None


@dataclass
class StrategyCounts:
    """Counters of one strategy: ``lists``, ``impressions``, ``clicks`` (and any other kept)."""

    counts: Counter = field(default_factory=Counter)

    @property
    def lists(self) -> int:
        return self.counts["lists"]

    @property
    def impressions(self) -> int:
        return self.counts["impressions"]

    @property
    def clicks(self) -> int:
        return self.counts["clicks"]

    @property
    def ctr(self) -> float | None:
        return ctr(self.clicks, self.impressions)


@dataclass
class UserStats:
    user_id: str
    by_strategy: dict[str, StrategyCounts]  # sorted by strategy
    events: dict[str, int]  # event type -> count
    seen: list[str]

    @property
    def totals(self) -> StrategyCounts:
        return StrategyCounts(sum((c.counts for c in self.by_strategy.values()), Counter()))


@dataclass
class DayStats:
    day: str
    events: dict[str, int]  # event type -> count

    @property
    def total(self) -> int:
        return sum(self.events.values())


@dataclass
class GlobalStats:
    days: list[DayStats]  # today first
    by_strategy: dict[str, StrategyCounts]  # sorted by strategy
    popular: list[tuple[str, float]]

    @property
    def lists_total(self) -> int:
        return sum(c.lists for c in self.by_strategy.values())


def _sorted(per: dict[str, Counter]) -> dict[str, StrategyCounts]:
    return {s: StrategyCounts(c) for s, c in sorted(per.items())}


def parse_user_counters(raw: dict) -> dict[str, StrategyCounts]:
    """``{day}:{strategy}:{what}`` fields summed over days, per strategy.

    >>> got = parse_user_counters({b"2026-01-01:hybrid:clicks": b"2", "2026-01-02:hybrid:clicks": "1", "bad": "1"})
    >>> got["hybrid"].clicks
    3
    """
    per: dict[str, Counter] = {}
    for f, val in (raw or {}).items():
        parts = _s(f).split(":")
        if len(parts) < 3:
            continue
        strategy, what = ":".join(parts[1:-1]), parts[-1]
        per.setdefault(strategy, Counter())[what] += int(float(val))
    return _sorted(per)


def parse_day(day: str, raw: dict, per: dict[str, Counter]) -> DayStats:
    """One day's hash: ``type:{type}`` counts returned, ``{strategy}:{what}`` added into ``per``."""
    types: dict[str, int] = {}
    for f, val in (raw or {}).items():
        name, n = _s(f), int(float(val))
        if name.startswith("type:"):
            types[name[5:]] = n
        elif ":" in name:
            strategy, what = name.rsplit(":", 1)
            per.setdefault(strategy, Counter())[what] += n
    return DayStats(day, types)


class StatsReader:
    def __init__(self, store: RedisStore, keys: Keys):
        self.store = store
        self.keys = keys

    async def user(self, user_id: str) -> UserStats:
        k = self.keys
        raw, seen, counts = await self.store.pipeline(lambda p: (
            p.hgetall(k.user_stats(user_id)), p.smembers(k.seen(user_id)), p.hgetall(k.user_counts(user_id))))
        return UserStats(user_id=user_id, by_strategy=parse_user_counters(raw),
                         events={_s(t): int(float(v)) for t, v in (counts or {}).items()},
                         seen=[_s(i) for i in seen or ()])

    async def global_(self, days: int, top_n: int = 10) -> GlobalStats:
        k = self.keys
        day_list = days_back(days)
        *per_day, popular = await self.store.pipeline(lambda p: (
            [p.hgetall(k.stats_day(d)) for d in day_list], p.zrevrange(k.pop_global, 0, top_n - 1, withscores=True)))
        per: dict[str, Counter] = {}
        parsed = [parse_day(day, raw, per) for day, raw in zip(day_list, per_day)]
        return GlobalStats(days=parsed, by_strategy=_sorted(per), popular=[(_s(i), float(s)) for i, s in popular])
