"""Single flight across API replicas (inference/cache.py ``ReplicaFlight``): two API instances on one
Redis, concurrent misses of one list on both, one computation; a lock held by a replica that died
delays the others at most ``single_flight_wait_s`` and never fails a request."""
from __future__ import annotations

import asyncio

import pytest

import inference.home
from schemas.keys import Keys
from tests.integration.support import api_client

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"


async def _live(app) -> None:  # noqa: ANN001
    for _ in range(100):
        if app.state.runtime.local.live:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("invalidation subscription never became live")


def counting_rank_home(monkeypatch: pytest.MonkeyPatch, delay_s: float = 0.3) -> list[str]:
    """Count the lists computed by every API instance of this process (and make each take a while,
    so the misses overlap)."""
    calls: list[str] = []
    real = inference.home.rank_home

    async def counted(q, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls.append(q.user_id)
        await asyncio.sleep(delay_s)
        return await real(q, *args, **kwargs)

    monkeypatch.setattr(inference.home, "rank_home", counted)
    return calls


async def test_concurrent_misses_on_two_replicas_compute_once(settings, redis_client, monkeypatch) -> None:  # noqa: ANN001
    k = Keys(settings.redis_prefix)
    redis_client.zadd(k.pop_global, {"a": 10, "b": 9, "c": 8, "d": 1})
    calls = counting_rank_home(monkeypatch)
    async with api_client(settings) as (app1, c1), api_client(settings) as (app2, c2):
        await _live(app1)
        await _live(app2)
        params = {"user_id": "sf1", "k": 3}
        got = await asyncio.gather(*[c.get(HOME, params=params) for _ in range(6) for c in (c1, c2)])
        assert all(r.status_code == 200 for r in got)
        assert len({tuple(i["item_id"] for i in r.json()["items"]) for r in got}) == 1
        assert calls == ["sf1"]  # twelve misses over two replicas, one list computed
        # the other replica answered from the list the first one put in Redis
        assert sum(r.json()["cached"] for r in got) == len(got) - 1
        # a user of its own: each replica's misses collapse in the process, then across the two
        got = await asyncio.gather(c1.get(HOME, params={"user_id": "sf2", "k": 3}),
                                   c2.get(HOME, params={"user_id": "sf2", "k": 3}))
        assert [r.status_code for r in got] == [200, 200] and calls.count("sf2") == 1


async def test_a_lock_left_by_a_dead_replica_delays_but_never_fails(settings, redis_client, monkeypatch) -> None:  # noqa: ANN001
    k = Keys(settings.redis_prefix)
    redis_client.zadd(k.pop_global, {"a": 10, "b": 9})
    calls = counting_rank_home(monkeypatch, delay_s=0.0)
    # a replica took the lock of this list and died before writing it
    redis_client.set(k.recs_lock(k.recs("sf3", "popularity", 2)), "dead-token", px=60_000)
    async with api_client(settings) as (app, c):
        await _live(app)
        r = await c.get(HOME, params={"user_id": "sf3", "k": 2})
    assert r.status_code == 200 and [i["item_id"] for i in r.json()["items"]] == ["a", "b"]
    assert calls == ["sf3"]  # computed after the bounded wait
