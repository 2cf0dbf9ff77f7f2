"""More workers, and lag an operator can see: two workers split the interactions partitions and
count every event once, also when one of them is SIGKILLed mid-stream; each worker reports its
lag to Redis and the API's health endpoint and /metrics show it. Real broker, real Redis.
"""
from __future__ import annotations

import asyncio
import json

import pytest
import redis

from schemas.keys import Keys
from tests.integration.support import Worker, api_client, event, produce, produce_events, stream_settings, wait_until

pytestmark = pytest.mark.integration


def popsum(r: redis.Redis, k: Keys) -> float:
    return sum(s for _, s in r.zrange(k.pop_global, 0, -1, withscores=True))


def reports(r: redis.Redis, k: Keys) -> list[dict]:
    return [json.loads(v) for v in r.hgetall(k.worker_lag).values()]


def owned(r: redis.Redis, k: Keys) -> list[list[int]]:
    """The partitions each reporting worker owns now (non-empty reports only)."""
    return sorted(rep["partitions"] for rep in reports(r, k) if rep["partitions"])


def test_two_workers_split_the_partitions_and_survive_a_sigkill_exactly_once(services, tmp_path) -> None:  # noqa: ANN001
    s = stream_settings(services, tmp_path, batch_size=300)
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    a = Worker(s, tmp_path / "a.log").start().ready()
    b = Worker(s, tmp_path / "b.log").start()
    try:
        # both in the group: the four partitions split between two workers, none twice
        wait_until(lambda: len(owned(r, k)) == 2 and sorted(sum(owned(r, k), [])) == [0, 1, 2, 3], 90)
        n = 8000
        events = [event("view", f"su-{j % 500}", f"si-{j % 200}") for j in range(n)]
        produce_events(s, events[: n // 2])
        wait_until(lambda: popsum(r, k) > 0, 60, every=0.01)
        a.kill()  # its partitions move to b, which replays a's uncommitted batches
        produce_events(s, events[n // 2:])
        wait_until(lambda: popsum(r, k) >= n, 120)
        wait_until(lambda: int(r.get(k.new_events) or 0) >= n, 30)
        assert popsum(r, k) == n
        assert int(r.get(k.new_events)) == n
        wait_until(lambda: [0, 1, 2, 3] in owned(r, k), 60)  # b owns everything now
        assert b.alive
    finally:
        b.stop()


def test_worker_lag_shows_in_health_and_metrics(services, tmp_path) -> None:  # noqa: ANN001
    s = stream_settings(services, tmp_path)
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    w = Worker(s, tmp_path / "w.log").start().ready()
    try:
        wait_until(lambda: owned(r, k) == [[0, 1, 2, 3]], 60)
        produce_events(s, [event("view", f"lu-{j}", "li") for j in range(500)])
        wait_until(lambda: r.zscore(k.pop_global, "li") == 500, 60)
        wait_until(lambda: any(rep["applied_at"] for rep in reports(r, k)), 30)
        rep = reports(r, k)[0]
        assert rep["partitions"] == [0, 1, 2, 3] and rep["records_behind"] == 0
        assert rep["event_to_redis_ms"] >= 0 and rep["dlq_records"] == 0
        produce(s, "interactions", [b"not json"])  # one poison record: counted in the report (the dashboard's DLQ rate)
        wait_until(lambda: reports(r, k)[0]["dlq_records"] == 1, 30)

        async def ask() -> tuple[dict, str]:
            async with api_client(s) as (_, c):
                return (await c.get("/healthz")).json(), (await c.get("/metrics")).text

        health, metrics = asyncio.run(ask())
        assert health["stream"]["status"] == "ok" and health["stream"]["workers"] == 1, health
        assert health["stream"]["dlq_records"] == 1, health
        assert "streamrec_stream_records_behind 0.0" in metrics
        assert "streamrec_stream_workers_reporting 1.0" in metrics
    finally:
        w.stop()
