"""Candidate retrieval: the user's real-time state from Redis, and ANN candidates from FAISS.

``fetch_context`` reads everything a home list needs from Redis in two pipelined round
trips. When Redis is unreachable it raises ``StoreUnavailable`` and the caller falls back
to ``degraded_context`` (the in-process popularity snapshot and the run's training data).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import orjson

from inference.ranking import ItemInfo
from inference.store import RedisStore
from schemas.errors import StoreUnavailable

log = logging.getLogger(__name__)

Scored = list[tuple[str, float]]


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _int(v) -> int | None:
    try:
        return None if v in (None, b"", "") else int(float(_s(v)))
    except ValueError:
        return None


def _recent_item(raw) -> str:
    """Recent-list entries are item ids, or JSON objects with an ``item_id``.

    >>> _recent_item(b'i7'), _recent_item(b'{"item_id": "i9", "type": "view"}')
    ('i7', 'i9')
    """
    s = _s(raw)
    if s.startswith("{"):
        try:
            return str(orjson.loads(s).get("item_id", s))
        except orjson.JSONDecodeError:
            return s
    return s


def _pairs(rows) -> Scored:
    return [(_s(m), float(s)) for m, s in rows or ()]


@dataclass
class UserContext:
    user_id: str
    segment: str | None = None
    level: int | None = None
    seen: set[str] = field(default_factory=set)
    recent: list[str] = field(default_factory=list)
    pop_global: Scored = field(default_factory=list)
    pop_segment: Scored = field(default_factory=list)
    trending: Scored = field(default_factory=list)
    pairs: dict[str, Scored] = field(default_factory=dict)  # recent item -> co-occurring items
    cache_version: int = 0
    degraded: bool = False

    @property
    def popularity(self) -> Scored:
        """Segment popularity first where the user has a segment, then global."""
        if not self.pop_segment:
            return self.pop_global
        have = {i for i, _ in self.pop_segment}
        return self.pop_segment + [(i, s) for i, s in self.pop_global if i not in have]


async def fetch_context(store: RedisStore, user: str, n: int, recent_n: int = 10, pairs_of: int = 5,
                        pairs_n: int = 20, full: bool = True) -> UserContext:
    """The user's state and the popularity lists, in two round trips (one when not ``full``)."""
    k = store.keys

    def first(pipe) -> None:
        pipe.get(k.cache_version)
        pipe.hgetall(k.user_profile(user))
        pipe.smembers(k.seen(user))
        pipe.zrevrange(k.pop_global, 0, n - 1, withscores=True)
        if full:
            pipe.lrange(k.recent(user), 0, recent_n - 1)
            pipe.zrevrange(k.pop_trend, 0, 49, withscores=True)

    res = await store.pipeline(first)
    profile = {_s(a): _s(b) for a, b in (res[1] or {}).items()}
    ctx = UserContext(
        user_id=user, cache_version=_int(res[0]) or 0,
        segment=profile.get("segment") or profile.get("profession") or None,
        level=_int(profile.get("level")),
        seen={_s(x) for x in res[2] or ()},
        pop_global=_pairs(res[3]),
    )
    if full:
        seen_order: list[str] = []
        for raw in res[4] or ():
            it = _recent_item(raw)
            if it not in seen_order:
                seen_order.append(it)
        ctx.recent = seen_order
        ctx.trending = _pairs(res[5])
    sources = ctx.recent[:pairs_of] if full else []
    if ctx.segment or sources:
        def second(pipe) -> None:
            if ctx.segment:
                pipe.zrevrange(k.pop_seg(ctx.segment), 0, n - 1, withscores=True)
            for it in sources:
                pipe.zrevrange(k.pairs(it), 0, pairs_n - 1, withscores=True)

        res2 = await store.pipeline(second)
        if ctx.segment:
            ctx.pop_segment = _pairs(res2.pop(0))
        for it, rows in zip(sources, res2):
            ctx.pairs[it] = _pairs(rows)
    return ctx


class PopularitySnapshot:
    """Global popularity kept in-process, refreshed from Redis every few seconds.

    Only the degraded path reads it: a healthy request always reads Redis, so popularity
    served normally is as fresh as the stream agents keep it.
    """

    def __init__(self, n: int = 1000):
        self.n = n
        self.items: Scored = []
        self.at = 0.0

    async def refresh(self, store: RedisStore) -> None:
        rows = await store.call(lambda c: c.zrevrange(store.keys.pop_global, 0, self.n - 1, withscores=True))
        self.items = _pairs(rows)
        self.at = time.time()

    def seed_from_run(self, item_ids: list[str], popularity: np.ndarray) -> None:
        """Before Redis ever answered: the serving run's training popularity."""
        if self.items:
            return
        order = np.argsort(-popularity)[: self.n]
        self.items = [(item_ids[i], float(popularity[i])) for i in order if popularity[i] > 0]

    async def run(self, store: RedisStore, every_s: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh(store)
            except StoreUnavailable:
                pass
            except Exception:  # noqa: BLE001 - a refresh failure never stops the loop
                log.exception("popularity snapshot refresh failed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            except asyncio.TimeoutError:
                pass


class ItemCatalog:
    """Item title/category/level from the ``Keys.item`` hashes, cached in-process for ``ttl_s``."""

    def __init__(self, ttl_s: float = 30.0, max_items: int = 200_000):
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: dict[str, tuple[float, ItemInfo]] = {}

    def known(self, items) -> dict[str, ItemInfo]:
        now = time.monotonic()
        out = {}
        for it in items:
            got = self._items.get(it)
            if got is not None and got[0] > now:
                out[it] = got[1]
        return out

    async def lookup(self, store: RedisStore | None, items: list[str]) -> dict[str, ItemInfo]:
        out = self.known(items)
        missing = [it for it in dict.fromkeys(items) if it not in out]
        if missing and store is not None and store.available:
            try:
                rows = await store.pipeline(
                    lambda pipe: [pipe.hmget(store.keys.item(it), "title", "category", "level") for it in missing]
                )
            except StoreUnavailable:
                return out
            expires = time.monotonic() + self.ttl_s
            if len(self._items) > self.max_items:
                self._items.clear()
            for it, (title, category, level) in zip(missing, rows):
                info = ItemInfo(title=_s(title) if title else None, category=_s(category) if category else None,
                                level=_int(level))
                self._items[it] = (expires, info)
                out[it] = info
        return out


def ann_search(index, query: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` (positions, scores) of one query vector in a FAISS inner-product index."""
    q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    n = min(n, int(index.ntotal))
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    scores, pos = index.search(q, n)
    keep = pos[0] >= 0
    return pos[0][keep], scores[0][keep]
