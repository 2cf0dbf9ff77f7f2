"""The trainer side's Redis client (scheduler, promotion, alert monitor; the CLI uses it too):
a ``redis.RedisCluster`` when ``Settings.redis_cluster`` is on (the URL names any one node;
docs/redis-cluster.md), else a plain ``redis.Redis``. Every synchronous client outside the API
and the worker comes from here, so cluster mode is one switch.
"""
from __future__ import annotations

from typing import Any

import redis

from schemas.settings import Settings


def sync_client(settings: Settings, **options: Any) -> redis.Redis:
    if settings.redis_cluster:
        return redis.RedisCluster.from_url(settings.redis_url or "", **options)
    return redis.Redis.from_url(settings.redis_url or "", **options)
