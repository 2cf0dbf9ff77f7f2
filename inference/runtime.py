"""The lifecycle of one API process: the clients, caches and serving run it holds, the
background tasks (invalidations, popularity snapshot, Redis probe, model updates, counters,
impressions) and reloads. What a request does lives in the services it builds — home
(``inference.home``), similar items (``inference.similar``), basket (``inference.basket.service``) —
which the routes get as dependencies (``inference.deps``).
"""
from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any, Awaitable, Callable

import orjson
import redis.asyncio as aioredis

from inference import control
from inference.bandit import BanditChooser
from inference.basket.service import BasketService
from inference.broker import Broker
from inference.cache import LocalCache, listen_invalidations
from inference.home import HomeService
from inference.metrics import ApiMetrics
from inference.models import ModelRegistry
from inference.retrieval import ItemCatalog, PopularitySnapshot
from inference.security import KeyRing
from inference.similar import SimilarService
from inference.store import RedisStore
from schemas import topics
from schemas.catalog import ModelUpdate
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.metrics = ApiMetrics()
        self.store = RedisStore(settings)
        self.keys = self.store.keys
        self.api_keys = KeyRing(settings.api_keys)  # producer keys (inference/security.py)
        self.broker = Broker(settings, self.metrics)
        self.models = ModelRegistry(settings)
        self.local = LocalCache(settings.local_cache_max, ttl_s=settings.cache_ttl_s)
        self.catalog = ItemCatalog()
        self.snapshot = PopularitySnapshot()
        self.bandit = BanditChooser(self.store, settings.bandit_policy, settings.bandit_epsilon)
        # the services the routes call (inference/deps.py)
        self.home = HomeService(settings, self.store, self.broker, self.models, self.local, self.catalog,
                                self.snapshot, self.bandit, self.metrics)
        self.similar = SimilarService(self.store, self.models, self.catalog, settings.max_k)
        self.basket = BasketService(settings, self.store, self.models)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        # called (as tasks) after the serving run changed: the search service reloads its index,
        # which `streamrec train` builds with the run
        self.model_listeners: list[Callable[[], Awaitable[Any]]] = []

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
        spawn(control.listen(self._pubsub_client, self.keys.control_channel, self.apply_change, self._stop),
              "control")
        spawn(self.snapshot.run(self.store, self.settings.snapshot_refresh_s, self._stop), "snapshot")
        spawn(self._probe_redis(), "redis-probe")
        spawn(self._watch_model_updates(), "model-updates")
        spawn(self.home.run_served_counts(self._stop), "served-counts")
        if self.settings.emit_impressions:
            spawn(self.broker.run_impressions(self._stop), "impressions")

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.home.flush_served_counts()
        await self.broker.close()
        await self.store.close()

    async def apply_change(self, change: dict[str, Any]) -> None:
        """A change another API process made (``inference.control``)."""
        if "basket_profile" in change:
            from inference.basket.profiles import set_active

            set_active(str(change["basket_profile"]))
            log.info("basket profile %s (changed on another API process)", change["basket_profile"])
        if "reload" in change:
            await self.reload(change["reload"], announce=False)

    async def tell_others(self, change: dict[str, Any]) -> bool:
        return await control.publish(self.store, self.keys.control_channel, change)

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
                                        auto_offset_reset="latest", request_timeout_ms=10000,
                                        **aiokafka_options(self.settings))
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
            self._tasks = [t for t in self._tasks if not t.done()]
            for listener in self.model_listeners:
                self._tasks.append(asyncio.create_task(_logged(listener), name="model-listener"))
            if announce and serving is not None:
                await self.broker.announce_model_update(ModelUpdate(
                    run_id=serving.run_id, run_dir=str(serving.run.path), models=list(serving.models)))
        return {"run_id": serving.run_id if serving else None, "changed": serving is not before}


async def _logged(listener: Callable[[], Awaitable[Any]]) -> None:
    try:
        await listener()
    except Exception as exc:  # noqa: BLE001 - a listener's failure must not touch serving
        log.error("after a model change: %s", exc)
