"""Everything one API process holds: clients, caches, the serving run, background tasks.

``Runtime.home`` is the whole path of a home list: in-process cache, then (single-flight)
the Redis cache and the user's state in one round trip, ranking, and storing the result
back. Redis failures switch it to the degraded path instead of failing the request.
"""
from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
import redis.asyncio as aioredis

from inference.bandit import BanditChooser
from inference.broker import Broker
from inference.cache import CachedList, LocalCache, listen_invalidations
from inference.metrics import ApiMetrics
from inference.models import ModelRegistry
from inference.retrieval import ItemCatalog, PopularitySnapshot, UserContext, ann_search, fetch_home
from inference.store import RedisStore
from inference.strategies import HomeQuery, rank_home, strategy_names
from schemas import topics
from schemas.catalog import ModelUpdate
from schemas.errors import NotFound, StoreUnavailable
from schemas.keys import RecsId, recs_variant
from schemas.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Served:
    """A list ready to send: the cached form plus whether it came from a cache."""

    entry: CachedList
    cached: bool


def cache_variant(q: HomeQuery) -> str:
    """The part of the cache key beyond user/strategy/k (default requests: the plain key).

    >>> cache_variant(HomeQuery("u", 10, "popularity"))
    ''
    >>> cache_variant(HomeQuery("u", 10, "popularity", explain=True))
    '~x'
    """
    return recs_variant(q.explain, q.filters.exclude_seen)


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = ApiMetrics()
        self.store = RedisStore(settings)
        self.keys = self.store.keys
        self.broker = Broker(settings, self.metrics)
        self.models = ModelRegistry(settings)
        self.local = LocalCache(settings.local_cache_max, ttl_s=settings.cache_ttl_s)
        self.catalog = ItemCatalog()
        self.snapshot = PopularitySnapshot()
        self.bandit = BanditChooser(self.store, settings.bandit_policy, settings.bandit_epsilon)
        self.cache_version = 0
        self.strategies = strategy_names()
        self._served_counts: dict[tuple[str, str], int] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        try:  # the basket profile named by these settings (POST /admin/reload switches it)
            from inference.basket.profiles import ensure_configured

            ensure_configured(self.settings.basket_profiles_file, self.settings.basket_profile)
        except ImportError:
            pass
        except Exception as exc:  # noqa: BLE001 - a bad profile file must not keep the API down
            log.error("basket profiles not configured: %s", exc)
        try:
            await self.models.reload()
        except Exception as exc:  # noqa: BLE001 - a broken run must not keep the API down
            log.error("serving run not loaded: %s", exc)
        self._on_model_change()
        self._stop.clear()
        spawn = lambda coro, name: self._tasks.append(asyncio.create_task(coro, name=name))  # noqa: E731
        spawn(listen_invalidations(self._pubsub_client, self.keys.invalidate_channel, self.local, self._stop),
              "invalidations")
        spawn(self.snapshot.run(self.store, self.settings.snapshot_refresh_s, self._stop), "snapshot")
        spawn(self._probe_redis(), "redis-probe")
        spawn(self._watch_model_updates(), "model-updates")
        spawn(self._run_served_counts(), "served-counts")
        if self.settings.emit_impressions:
            spawn(self.broker.run_impressions(self._stop), "impressions")

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.flush_served_counts()
        await self.broker.close()
        await self.store.close()

    def _pubsub_client(self) -> aioredis.Redis:
        # no read timeout: a subscription waits for messages; liveness is pinged instead
        return aioredis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=self.settings.redis_timeout_s)

    async def _probe_redis(self) -> None:
        """Close the store's breaker as soon as Redis answers again."""
        while not self._stop.is_set():
            if not self.store.available:
                await self.store.ping()
            await asyncio.sleep(0.25)

    async def _watch_model_updates(self) -> None:
        """Reload on each ``model-updates`` record (the trainer's promotions)."""
        from aiokafka import AIOKafkaConsumer

        while not self._stop.is_set():
            consumer = AIOKafkaConsumer(self.settings.topic(topics.MODEL_UPDATES),
                                        bootstrap_servers=self.settings.kafka_bootstrap or "", group_id=None,
                                        auto_offset_reset="latest", request_timeout_ms=10000)
            try:
                await consumer.start()
                async for msg in consumer:
                    try:
                        doc = orjson.loads(msg.value)
                        await self.reload(doc.get("run_dir"), announce=False)  # the worker has it
                    except Exception as exc:  # noqa: BLE001 - one bad record never stops the watcher
                        log.error("model update %r not applied: %s", msg.value[:200], exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker away: retry
                log.debug("model-updates watcher: %s", exc)
            finally:
                try:
                    await asyncio.wait_for(consumer.stop(), timeout=2)
                except Exception:  # noqa: BLE001
                    pass
            await asyncio.sleep(2)

    # --- models -------------------------------------------------------------------------
    def _on_model_change(self) -> None:
        # what is loaded now lives as long as the run: keep it out of the collector's full scans,
        # which would otherwise show up as latency spikes on the request path
        gc.collect()
        gc.freeze()
        serving = self.models.current
        self.metrics.set_model(serving.run_id if serving else None)
        if serving is not None:
            self.snapshot.seed_from_run(serving.item_ids, serving.popularity)

    async def reload(self, run_dir: str | None = None, *, announce: bool = True) -> dict[str, Any]:
        """Load ``run_dir`` (default ``run_current``). A change drops this process's in-process
        lists at once; the shared ones (Redis, other processes) are the stream worker's to
        invalidate, as the only writer of the cache version: the change is announced to it as a
        ``model-updates`` record (``announce``; the watcher of that topic reloads without it: the
        worker has that record already).
        Until the worker applies it — broker down: until the broker takes the retried record —
        Redis still holds lists of the old run under the current version and may serve them.
        """
        before = self.models.current
        serving = await self.models.reload(run_dir)
        if serving is not before:
            self._on_model_change()
            self.local.clear()
            if announce and serving is not None:
                await self.broker.announce_model_update(ModelUpdate(
                    run_id=serving.run_id, run_dir=str(serving.run.path), models=list(serving.models)))
        return {"run_id": serving.run_id if serving else None, "changed": serving is not before}

    # --- home ---------------------------------------------------------------------------
    def local_key(self, q: HomeQuery) -> RecsId:
        """The in-process key (``Keys.recs_key`` of it at a version is the Redis key)."""
        return RecsId(q.user_id, q.strategy, q.k, cache_variant(q))

    def cacheable(self, q: HomeQuery) -> bool:
        f = q.filters
        return not (f.include or f.exclude or f.category_cap is not None)

    async def home(self, q: HomeQuery) -> Served:
        key = self.local_key(q)
        cacheable = self.cacheable(q)
        if cacheable:
            hit = self.local.get(key)
            if hit is not None:
                self.metrics.hit_local.inc()
                return Served(hit, True)
            (entry, cached), leader = await self.local.single_flight(key, lambda: self._miss(q, key, True))
            return Served(entry, cached or not leader)
        entry, _ = await self._miss(q, key, False)
        return Served(entry, False)

    async def _miss(self, q: HomeQuery, key: tuple, cacheable: bool) -> tuple[CachedList, bool]:
        token = self.local.token(q.user_id)
        n = max(self.settings.candidates_n, q.k * 3)
        variant = q.strategy + cache_variant(q)
        try:
            version, raw, ctx = await fetch_home(self.store, q.user_id, n + q.k, full=q.strategy != "popularity",
                                                 recs=(variant, q.k) if cacheable else None)
            self.cache_version = version
            if raw is not None:
                entry = CachedList.from_redis(raw)
                self.local.put(key, entry, token)
                self.metrics.hit_redis.inc()
                return entry, True
        except StoreUnavailable:
            ctx = self.degraded_context(q.user_id)
        self.metrics.miss.inc()
        serving = self.models.current
        payload = await rank_home(q, ctx, serving, self.catalog, None if ctx.degraded else self.store,
                                  self.settings, self.snapshot.items)
        entry = CachedList.from_payload(payload)
        if ctx.degraded:
            self.metrics.degraded.inc()
        elif cacheable and token == self.local.token(q.user_id):
            self.local.put(key, entry, token)
            asyncio.get_running_loop().create_task(self._store_redis(
                q.user_id, self.keys.recs_key(key, ctx.cache_version), entry))
        return entry, False

    async def _store_redis(self, user: str, key: str, entry: CachedList) -> None:
        idx = self.keys.recs_index(user)
        ttl = self.settings.cache_ttl_s
        try:
            await self.store.pipeline(lambda pipe: (pipe.set(key, entry.redis_value, ex=ttl), pipe.sadd(idx, key),
                                                    pipe.expire(idx, ttl)))
        except StoreUnavailable:
            pass

    def degraded_context(self, user: str) -> UserContext:
        serving = self.models.current
        seen = serving.trained_seen(user) if serving is not None else set()
        return UserContext(user_id=user, seen=seen, pop_global=list(self.snapshot.items), degraded=True)

    def served(self, request_id: str, entry: CachedList) -> None:
        """Bookkeeping of one served list: impressions and strategy counts (both flushed in batches)."""
        self.metrics.strategy.labels(entry.strategy).inc()
        key = (entry.user_id, entry.strategy)
        self._served_counts[key] = self._served_counts.get(key, 0) + 1
        if self.settings.emit_impressions and entry.items:
            self.broker.queue_impressions(request_id, entry.user_id, entry.strategy, entry.items)

    async def flush_served_counts(self) -> None:
        """``{strategy}:lists`` counters of the stats hashes, one pipeline for everything served since."""
        counts, self._served_counts = self._served_counts, {}
        if not counts:
            return
        day = datetime.now(timezone.utc).date().isoformat()
        per_strategy: dict[str, int] = {}
        for (_, strategy), n in counts.items():
            per_strategy[strategy] = per_strategy.get(strategy, 0) + n

        def build(pipe) -> None:
            for strategy, n in per_strategy.items():
                pipe.hincrby(self.keys.stats_day(day), f"{strategy}:lists", n)
            for (user, strategy), n in counts.items():
                pipe.hincrby(self.keys.user_stats(user), f"{day}:{strategy}:lists", n)

        try:
            await self.store.pipeline(build)
        except StoreUnavailable:
            pass  # counts of a Redis outage are lost; serving is not

    async def _run_served_counts(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
            await self.flush_served_counts()

    def bandit_arms(self) -> list[str]:
        """Configured arms this process can serve: built-ins always, models when the run has them."""
        serving = self.models.current
        arms = [a for a in self.settings.bandit_arms
                if a in ("popularity", "hybrid") or (serving is not None and a in serving.models)]
        return arms or ["popularity"]

    # --- similar items --------------------------------------------------------------------
    async def similar(self, item: str, k: int) -> dict[str, Any]:
        serving = self.models.current
        name = serving.similarity_model() if serving is not None else None
        if serving is not None and name is not None and item in serving.item_index:
            emb = serving.run.embeddings[name]
            pos, scores = ann_search(serving.run.indexes[name], emb[serving.item_index[item]], k + 1)
            items = [(serving.item_ids[p], float(s)) for p, s in zip(pos, scores) if serving.item_ids[p] != item][:k]
            infos = await self.catalog.lookup(self.store, [item])
            title = (infos.get(item).title if infos.get(item) else None) or item
            return {"item_id": item, "model_version": serving.run_id,
                    "items": [{"item_id": i, "score": round(s, 6), "reason": f"similar to {title}"} for i, s in items]}
        # no embeddings for it: what is bought or viewed together, from the stream state
        try:
            rows = await self.store.call(lambda c: c.zrevrange(self.keys.pairs(item), 0, k - 1, withscores=True))
        except StoreUnavailable:
            rows = []
        if not rows:
            if serving is None or name is None:
                raise NotFound(f"no similar items for {item!r}: it has no co-occurrences yet and no trained run "
                               f"has embeddings (train one with `streamrec train --model two_tower`)")
            raise NotFound(f"unknown item {item!r}: not in run {serving.run_id} and no co-occurrences yet")
        infos = await self.catalog.lookup(self.store, [item])
        title = (infos.get(item).title if infos.get(item) else None) or item
        return {"item_id": item, "model_version": serving.run_id if serving else None,
                "items": [{"item_id": (m.decode() if isinstance(m, bytes) else m), "score": float(s),
                           "reason": f"often bought with {title}"} for m, s in rows]}
