"""The whole pipeline on a real three-master Redis Cluster (docs/redis-cluster.md): events through
the broker, a worker process (``STREAMREC_REDIS_CLUSTER``), the API answering from the cluster —
served lists emit impressions, a click is credited to the bandit arm and the CTR, invalidates the
user's cached list; similar items come from co-occurrences, baskets from the catalog and pairs;
an experiment is created and listed."""
from __future__ import annotations

import asyncio
import time

import pytest

from schemas.keys import Keys
from tests.integration.support import Worker, api_client, event, produce, produce_events, stream_settings, sync_redis

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"


@pytest.fixture
def cluster_settings(services, tmp_path, redis_cluster_url):  # noqa: ANN001, ANN201
    s = stream_settings(services, tmp_path, redis_url=redis_cluster_url, redis_cluster=True,
                        artifact_dir=tmp_path / "artifacts", admin_key="cluster-key")
    worker = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        yield s
    finally:
        worker.stop()


async def _until(pred, what: str, timeout_s: float = 30.0):  # noqa: ANN001, ANN202
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        got = await pred()
        if got:
            return got
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_events_worker_cluster_api(cluster_settings) -> None:  # noqa: ANN001
    s = cluster_settings
    k, r = Keys(s.redis_prefix), sync_redis(s, decode_responses=True)
    assert k.seen("cu1") == f"{s.redis_prefix}seen:{{cu1}}"
    now = time.time()
    # sessions over six items across many users (slots): popularity, co-occurrences, seen sets
    # (user u's t-th event: item (u + t) % 12, so each user has seen 6 of the 12 items)
    evs = [event("view", f"cu{j % 40}", f"ci{(j % 40 + j // 40) % 12}", ts=now - 300 + j) for j in range(240)]
    await asyncio.to_thread(produce, s, "catalog", [
        f'{{"item_id": "ci{i}", "title": "item {i}", "category": "c{i % 2}"}}'.encode() for i in range(12)])
    await asyncio.to_thread(produce_events, s, evs)
    popsum = lambda: sum(v for _, v in r.zrange(k.pop_global, 0, -1, withscores=True))  # noqa: E731
    await _until(lambda: asyncio.to_thread(lambda: popsum() >= 240), "the worker to count every event")
    assert popsum() == 240 and int(r.get(k.new_events)) == 240
    assert r.zcard(k.pairs("ci0")) > 0

    async with api_client(s) as (app, c):
        for _ in range(100):
            if app.state.runtime.local.live:
                break
            await asyncio.sleep(0.05)
        seen = r.smembers(k.seen("cu1"))
        first = (await c.get(HOME, params={"user_id": "cu1", "k": 3, "strategy": "popularity"})).json()
        assert first["items"] and not seen & {i["item_id"] for i in first["items"]}
        again = (await c.get(HOME, params={"user_id": "cu1", "k": 3, "strategy": "popularity"})).json()
        assert again["cached"] is True
        # the served list's impressions flow back through the broker to the bandit state
        pulls = lambda: asyncio.to_thread(r.hget, k.bandit(s.bandit_policy), "popularity:pulls")  # noqa: E731
        await _until(lambda: _at_least(pulls, 3), "impressions to reach the bandit state")
        click = {"type": "click", "user_id": "cu1", "item_id": first["items"][0]["item_id"],
                 "context": {"request_id": first["request_id"], "strategy": "popularity", "position": 0}}
        assert (await c.post("/api/v1/events", json=click)).status_code == 202

        async def refreshed():  # noqa: ANN202
            body = (await c.get(HOME, params={"user_id": "cu1", "k": 3, "strategy": "popularity"})).json()
            return body if not body["cached"] else None

        after = await _until(refreshed, "the click to invalidate the cached list")
        assert click["item_id"] not in [i["item_id"] for i in after["items"]]
        rewards = lambda: asyncio.to_thread(r.hget, k.bandit(s.bandit_policy), "popularity:rewards")  # noqa: E731
        await _until(lambda: _at_least(rewards, 0.01), "the click to be credited to the arm")
        stats = (await c.get("/api/v1/stats/user/cu1")).json()
        assert stats["clicks"] == 1 and stats["impressions"] >= 3
        assert (await c.get("/api/v1/stats/global")).json()["ctr_by_strategy"]["popularity"] > 0
        similar = await c.get("/api/v1/recommendations/similar/ci0", params={"k": 3})
        assert similar.status_code == 200 and similar.json()["items"]
        basket = await c.post("/api/v1/recommendations/basket", json={"product_ids": ["ci0"], "k": 3})
        assert basket.status_code == 200, basket.text
        assert "ci0" not in [i["item_id"] for i in basket.json()["items"]]
        # an experiment (the experiment store's synchronous client comes from the same switch)
        arms = [{"name": "control", "share": 0.5, "strategy": "popularity"},
                {"name": "treatment", "share": 0.5, "strategy": "popularity", "params": {"fill": False}}]
        made = await c.post("/admin/experiments", json={"name": "cl", "arms": arms}, headers={"X-Admin-Key": "cluster-key"})
        assert made.status_code == 201, made.text
        assert (await c.get("/api/v1/experiments")).json()["running"] == ["cl"]
    r.close()


async def _at_least(read, value: float) -> bool:  # noqa: ANN001
    got = await read()
    return got is not None and float(got) >= value
