"""Candidate retrieval: the user's real-time state from Redis, and ANN candidates from FAISS.

``fetch_home`` reads the cached list, or else everything a home list needs, from Redis in
one round trip (a Lua script). When Redis is unreachable it raises ``StoreUnavailable`` and the caller falls back
to ``degraded_context`` (the in-process popularity snapshot and the run's training data).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

import numpy as np
import orjson

from ranking.filters import ItemInfo
from ranking.signals import UserSignals
from inference.cluster_reads import home_reads
from inference.store import RedisStore
from schemas.errors import StoreUnavailable
from schemas.keys import RecsId

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
class UserContext(UserSignals):
    """The user's signals as read from Redis, plus the cache namespace they were read in."""

    cache_version: int = 0


# One round trip for a whole cache miss: the cached list if there is one, else everything a
# home list reads (inference/lua/home.lua). Every key and key template it gets is built by
# ``Keys``; ``HomeArgs`` is its ARGV, field for field in the order the script documents.
HOME_LUA = resources.files("inference").joinpath("lua/home.lua").read_text()


class HomeArgs(NamedTuple):
    """ARGV of ``home.lua`` (a tuple: passed as it is, no copy on the miss path)."""

    n: int
    recent_n: int
    pairs_of: int
    pairs_n: int
    trend_n: int
    full: int  # 1/0
    want_cached: int  # 1/0
    recs0: str
    recs_a: str
    recs_b: str
    seg_a: str
    seg_b: str
    pairs_a: str
    pairs_b: str
    pending_idx: str = ""  # on a miss, mark a pending computation first (inference/lua/home.lua)
    pending: str = ""
    pending_ttl: int = 0


def _flat_pairs(rows) -> Scored:
    rows = rows or []
    return [(_s(rows[i]), float(rows[i + 1])) for i in range(0, len(rows) - 1, 2)]


async def fetch_home(store: RedisStore, user: str, n: int, full: bool = True, recs: tuple[str, int] | None = None,
                     recent_n: int = 10, pairs_of: int = 5, pairs_n: int = 20, trend_n: int = 50,
                     pending: tuple[str, int] | None = None) -> tuple[int, bytes | None, UserContext | None]:
    """(cache version, cached body or None, context or None) in one round trip.

    ``recs`` = (strategy part, k) asks for the cached list first; when it exists the
    context is not read at all. ``pending`` = (member, TTL): on a miss, the member is added to the
    user's recs index before the state is read (the list's store checks it: docs/freshness.md).
    """
    k = store.keys
    (seg_a, seg_b), (pairs_a, pairs_b) = k.home_templates
    if recs:
        recs0, (recs_a, recs_b) = k.recs_versioned(RecsId(user, recs[0], recs[1]))
    else:
        recs0 = recs_a = recs_b = ""
    args = HomeArgs(n=n, recent_n=recent_n, pairs_of=pairs_of, pairs_n=pairs_n, trend_n=trend_n,
                    full=1 if full else 0, want_cached=1 if recs else 0, recs0=recs0, recs_a=recs_a, recs_b=recs_b,
                    seg_a=seg_a, seg_b=seg_b, pairs_a=pairs_a, pairs_b=pairs_b,
                    **({"pending_idx": k.recs_index(user), "pending": pending[0], "pending_ttl": pending[1]}
                       if pending else {}))
    if store.cluster:  # the same reads, as pipelines: the keys live in several hash slots
        res = await store.call(lambda c: home_reads(c, k.home_script(user), args))
    else:
        script = store.script(HOME_LUA)
        res = await store.call(lambda c: script(keys=k.home_script(user), args=args, client=c))
    version = _int(res[0]) or 0
    if res[1] is not None and res[1] is not False:
        return version, res[1], None
    prof = res[2]
    segment = next((_s(v) for v in prof[:2] if v), None)
    ctx = UserContext(
        user_id=user, cache_version=version, segment=segment, level=_int(prof[2]),
        seen={_s(x) for x in res[3] or ()}, pop_global=_flat_pairs(res[4]), pop_segment=_flat_pairs(res[5]),
        recent=list(dict.fromkeys(_recent_item(x) for x in res[6] or ())), trending=_flat_pairs(res[7]),
        pairs={_s(src): _flat_pairs(rows) for src, rows in res[8] or ()},
    )
    return version, None, ctx


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
