"""The Redis boundary of the API: one async client with short timeouts and a breaker.

Every Redis call of the API goes through ``RedisStore.call``: redis-py errors become
``StoreUnavailable`` here, and after a failure the store stays *open* (calls fail at once,
without touching the socket) for ``breaker_s``, so a frozen Redis costs one timeout per
breaker period, not one per call. A background probe closes the breaker again.
"""
from __future__ import annotations

import asyncio
import logging
import time
from importlib import resources
from typing import Any, Awaitable, Callable, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from schemas.errors import StoreUnavailable
from schemas.keys import Keys
from schemas.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
#: stores a computed home list unless the user's lists were invalidated since its state was read
STORE_LIST_LUA = resources.files("inference").joinpath("lua/store_list.lua").read_text()


def make_client(settings: Settings, **overrides: Any) -> aioredis.Redis:
    """The API side's Redis client: a ``RedisCluster`` when ``Settings.redis_cluster`` is on (the
    URL names any one node; docs/redis-cluster.md), else a plain client. Every API client comes from here."""
    if not settings.redis_url:
        raise StoreUnavailable("no Redis configured (STREAMREC_REDIS_URL)")
    options: dict[str, Any] = dict(
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        max_connections=1024,  # a burst of misses must not look like an outage (which trips the breaker)
    )
    options.update(overrides)
    if settings.redis_cluster:
        return aioredis.RedisCluster.from_url(settings.redis_url, **options)
    return aioredis.Redis.from_url(settings.redis_url, health_check_interval=0, retry_on_timeout=False, **options)


def make_sync_client(settings: Settings, **options: Any):  # noqa: ANN201 - redis.Redis or redis.RedisCluster
    """A synchronous client for the API's thread-bound work (the experiment store), same switch."""
    import redis

    if settings.redis_cluster:
        return redis.RedisCluster.from_url(settings.redis_url or "", **options)
    return redis.Redis.from_url(settings.redis_url or "", **options)


class RedisStore:
    def __init__(self, settings: Settings, breaker_s: float = 1.0):
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self.client = make_client(settings)
        self.cluster = settings.redis_cluster  # multi-slot reads go as pipelines (inference/cluster_reads.py)
        self.breaker_s = breaker_s
        self._open_until = 0.0
        self.last_error: str | None = None
        self._scripts: dict[str, object] = {}

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._open_until

    def trip(self, why: str) -> None:
        if self.available:
            log.warning("redis unavailable: %s", why)
        self.last_error = why
        self._open_until = time.monotonic() + self.breaker_s

    async def call(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run ``fn(client)``; map every Redis failure to ``StoreUnavailable``."""
        if not self.available:
            raise StoreUnavailable(f"redis unavailable: {self.last_error}")
        try:
            # the socket timeout bounds each read; this bounds a whole pipeline too
            return await asyncio.wait_for(fn(self.client), timeout=self.settings.redis_timeout_s * 2)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.trip(f"{type(exc).__name__}: {exc}")
            raise StoreUnavailable(f"redis unavailable: {exc}") from exc

    async def pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """One round trip: ``build(pipe)`` queues commands, the results come back in order."""

        async def run(client: aioredis.Redis) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            build(pipe)
            return await pipe.execute()

        return await self.call(run)

    def script(self, source: str):
        """A registered Lua script (EVALSHA, loaded again by redis-py after a Redis restart)."""
        got = self._scripts.get(source)
        if got is None:
            got = self._scripts[source] = self.client.register_script(source)
        return got

    async def ping(self) -> bool:
        """A real round trip even when the breaker is open (the probe that closes it)."""
        try:
            await asyncio.wait_for(self.client.ping(), timeout=self.settings.redis_timeout_s * 2)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.trip(f"{type(exc).__name__}: {exc}")
            return False
        self._open_until = 0.0
        return True

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except Exception:  # noqa: BLE001 - closing a dead connection pool
            pass
