"""Redis frozen (SIGSTOP) or stopped: home lists still answered, degraded, and recovery after.

These tests stop the session's real Redis and always bring it back, so later tests work.
"""
import asyncio
import os
import signal

import httpx
import pytest

from tests.integration.support import api_client, train_tiny_run
from schemas.keys import Keys

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"
K = Keys("sr:")


@pytest.fixture
def embedded(services):
    if services.embedded is None:
        pytest.skip("needs the embedded stack (its redis-server process) to stop Redis")
    return services.embedded


async def _wait_ok(c, user):
    for _ in range(60):
        body = (await c.get(HOME, params={"user_id": user, "k": 3})).json()
        if not body["degraded"]:
            return body
        await asyncio.sleep(0.25)
    raise AssertionError("still degraded after Redis came back")


async def test_redis_frozen_then_thawed(settings, redis_client, embedded):
    redis_client.zadd(K.pop_global, {"a": 3, "b": 2, "c": 1})
    s = settings.model_copy(update={"redis_timeout_s": 0.3, "snapshot_refresh_s": 0.2, "emit_impressions": False})
    pid = embedded.procs["redis"].pid
    async with api_client(s) as (app, c):
        await asyncio.sleep(0.5)  # the snapshot has been read
        os.kill(pid, signal.SIGSTOP)
        try:
            # the client gives up after 2 s: an answer at all means it came within 2 s
            got = await c.get(HOME, params={"user_id": "frozen", "k": 3}, timeout=httpx.Timeout(2.0))
            again = await c.get(HOME, params={"user_id": "frozen2", "k": 3}, timeout=httpx.Timeout(2.0))
            health = await c.get("/healthz", timeout=httpx.Timeout(2.0))
        finally:
            os.kill(pid, signal.SIGCONT)
        body = got.json()
        assert got.status_code == 200 and body["degraded"] is True
        assert [i["item_id"] for i in body["items"]] == ["a", "b", "c"]  # from the in-process snapshot
        assert again.status_code == 200 and again.json()["degraded"] is True
        assert health.status_code == 503
        ok = await _wait_ok(c, "thawed")
        assert [i["item_id"] for i in ok["items"]] == ["a", "b", "c"]
        assert (await c.get("/healthz")).status_code == 200


async def test_redis_stopped_uses_models_then_recovers(settings, redis_client, embedded, tmp_path):
    art = tmp_path / "art"
    await asyncio.to_thread(train_tiny_run, art, ("ease",))
    redis_client.zadd(K.pop_global, {"i1": 3, "i2": 2})
    s = settings.model_copy(update={"artifact_dir": art, "emit_impressions": False})
    async with api_client(s) as (app, c):
        embedded.procs["redis"].terminate()
        embedded.procs["redis"].wait(10)
        try:
            pop = await c.get(HOME, params={"user_id": "u4", "k": 5}, timeout=httpx.Timeout(2.0))
            model = await c.get(HOME, params={"user_id": "u4", "k": 5, "strategy": "ease"}, timeout=httpx.Timeout(2.0))
            sim = await c.get("/api/v1/stats/global", timeout=httpx.Timeout(2.0))
        finally:
            embedded.start_redis()
        assert pop.status_code == 200 and pop.json()["degraded"] is True and len(pop.json()["items"]) == 5
        body = model.json()
        assert model.status_code == 200 and body["degraded"] is True and len(body["items"]) == 5
        trained_seen = app.state.runtime.models.current.trained_seen("u4")
        assert trained_seen and not trained_seen & {i["item_id"] for i in body["items"]}
        assert sim.status_code == 503 and "Retry-After" in sim.headers
        redis_client.zadd(K.pop_global, {"fresh": 99})
        ok = await _wait_ok(c, "after")
        assert ok["items"][0]["item_id"] == "fresh"
