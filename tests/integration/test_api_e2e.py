"""End to end with a real worker process: served lists emit impressions, a click on one is
credited to the bandit arm and the CTR, and the click invalidates the user's cached list."""
import asyncio

import pytest

from tests.integration.support import api_client
from schemas.keys import Keys
from tests.integration.support import Worker, stream_settings

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"


@pytest.fixture
def worker_settings(services, tmp_path, redis_client):
    s = stream_settings(services, tmp_path)
    worker = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        yield s
    finally:
        worker.stop()


async def _until(pred, what, timeout_s=20.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while loop.time() < end:
        got = await pred()
        if got:
            return got
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


async def test_impressions_clicks_bandit_ctr_and_invalidation(worker_settings, redis_client):
    s = worker_settings
    k = Keys(s.redis_prefix)
    redis_client.zadd(k.pop_global, {"a": 5, "b": 4, "c": 3, "d": 2})
    async with api_client(s) as (app, c):
        for _ in range(50):
            if app.state.runtime.local.live:
                break
            await asyncio.sleep(0.05)
        first = (await c.get(HOME, params={"user_id": "e2e", "k": 3})).json()
        assert (await c.get(HOME, params={"user_id": "e2e", "k": 3})).json()["cached"] is True
        pulls = lambda: asyncio.to_thread(redis_client.hget, k.bandit(s.bandit_policy), "popularity:pulls")  # noqa: E731
        await _until(lambda: _at_least(pulls, 6), "impressions to reach the bandit state")
        click = {"type": "click", "user_id": "e2e", "item_id": "a",
                 "context": {"request_id": first["request_id"], "strategy": "popularity", "position": 0}}
        assert (await c.post("/api/v1/events", json=click)).status_code == 202

        async def refreshed():
            body = (await c.get(HOME, params={"user_id": "e2e", "k": 3})).json()
            return body if not body["cached"] else None

        after = await _until(refreshed, "the click to invalidate the cached list")
        assert "a" not in [i["item_id"] for i in after["items"]]  # clicked: now seen
        rewards = lambda: asyncio.to_thread(redis_client.hget, k.bandit(s.bandit_policy), "popularity:rewards")  # noqa: E731
        await _until(lambda: _at_least(rewards, 0.01), "the click to be credited to the arm")
        stats = (await c.get("/api/v1/stats/user/e2e")).json()
        assert stats["clicks"] == 1 and stats["impressions"] >= 6 and stats["ctr"] > 0
        glob = (await c.get("/api/v1/stats/global")).json()
        assert glob["ctr_by_strategy"]["popularity"] > 0


async def _at_least(read, value):
    got = await read()
    return got is not None and float(got) >= value
