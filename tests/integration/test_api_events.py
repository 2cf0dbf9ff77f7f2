"""POST /api/v1/events, impressions, served-list stats, and the broker going away and coming back."""
import asyncio
import uuid

import pytest

from tests.integration.support import api_client
from infra.stack import broker_binary, broker_ready, free_port, spawn, stop_process
from schemas.keys import Keys
from tests.integration.support import consume

pytestmark = pytest.mark.integration
K = Keys("sr:")


async def test_events_are_validated_and_produced(settings):
    one = {"type": "click", "user_id": "u1", "item_id": "i1", "context": {"request_id": "r-1"}}
    many = [{"type": "view", "user_id": "u2", "item_id": f"i{j}", "ts": 1700000000 + j} for j in range(3)]
    async with api_client(settings.model_copy(update={"emit_impressions": False})) as (app, c):
        assert (await c.post("/api/v1/events", json=one)).json() == {"accepted": 1}
        got = await c.post("/api/v1/events", json=many)
        assert got.status_code == 202 and got.json() == {"accepted": 3}
        for body, words in [({"type": "teleport", "user_id": "u", "item_id": "i"}, "type"),
                            ([{"type": "view", "user_id": "u", "item_id": "i"}, {"type": "rate", "user_id": "u", "item_id": "i"}],
                             "event 1: "),
                            ({"type": "view", "user_id": "bad id", "item_id": "i"}, "user_id"),
                            ("[not json", "not valid JSON")]:
            kw = {"content": body} if isinstance(body, str) else {"json": body}
            bad = await c.post("/api/v1/events", **kw)
            assert bad.status_code == 422 and words in bad.json()["detail"], bad.json()
    events = await consume(settings, want=4)
    assert sorted(e["user_id"] for e in events) == ["u1", "u2", "u2", "u2"]  # nothing of the rejected bodies
    assert next(e for e in events if e["type"] == "click")["context"]["request_id"] == "r-1"


async def test_served_lists_emit_impressions_and_count(settings, redis_client):
    redis_client.zadd(K.pop_global, {"a": 3, "b": 2, "c": 1})
    async with api_client(settings) as (app, c):
        body = (await c.get("/api/v1/recommendations/home", params={"user_id": "imp", "k": 3})).json()
        await asyncio.sleep(0.8)  # impressions and counters are flushed in the background
        stats = (await c.get("/api/v1/stats/user/imp")).json()
        glob = (await c.get("/api/v1/stats/global")).json()
    events = await consume(settings, want=3)
    assert [(e["type"], e["item_id"], e["context"]["position"]) for e in events] == [
        ("impression", "a", 0), ("impression", "b", 1), ("impression", "c", 2)]
    assert {e["context"]["request_id"] for e in events} == {body["request_id"]}
    assert {e["context"]["strategy"] for e in events} == {"popularity"}
    assert stats["lists_served"] == 1 and stats["by_strategy"]["popularity"]["lists"] == 1
    assert glob["strategy_distribution"] == {"popularity": 1.0}


async def test_stats_read_the_agents_counters(settings, redis_client):
    from inference.stats import days_back

    day = days_back(1)[0]
    redis_client.hset(K.user_stats("s1"), mapping={f"{day}:hybrid:impressions": 10, f"{day}:hybrid:clicks": 2})
    redis_client.hset(K.stats_day(day), mapping={"hybrid:impressions": 40, "hybrid:clicks": 4, "type:view": 7})
    redis_client.sadd(K.seen("s1"), "a", "b", "c")
    for item, cat in (("a", "tools"), ("b", "tools"), ("c", "books")):
        redis_client.hset(K.item(item), mapping={"category": cat})
    redis_client.zadd(K.pop_global, {"a": 5})
    async with api_client(settings) as (app, c):
        user = (await c.get("/api/v1/stats/user/s1")).json()
        glob = (await c.get("/api/v1/stats/global", params={"days": 2})).json()
    assert user["clicks"] == 2 and user["impressions"] == 10 and user["ctr"] == 0.2
    assert user["top_categories"][0] == {"category": "tools", "count": 2}
    assert glob["ctr_by_strategy"] == {"hybrid": 0.1}
    assert glob["daily"][0] == {"day": day, "events": {"view": 7}, "total": 7}
    assert glob["popular_items"] == [{"item_id": "a", "score": 5.0}]


async def test_broker_down_gives_503_then_recovers(settings, tmp_path):
    port = free_port()
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}", "broker_timeout_s": 1.0,
                                       "emit_impressions": False})
    ev = {"event_id": uuid.uuid4().hex, "type": "view", "user_id": "u", "item_id": "i"}
    async with api_client(down) as (app, c):
        got = await c.post("/api/v1/events", json=ev)
        assert got.status_code == 503 and int(got.headers["Retry-After"]) > 0
        health = await c.get("/healthz")
        assert health.status_code == 503 and health.json()["broker"] is False and health.json()["redis"] is True
        url = f"tcp://127.0.0.1:{port}"
        proc = spawn([broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                      "--storage-engine", "memory://tansu/"], tmp_path / "broker.log")
        try:
            await broker_ready(f"127.0.0.1:{port}")
            for _ in range(40):
                got = await c.post("/api/v1/events", json=ev)
                if got.status_code == 202:
                    break
                await asyncio.sleep(0.25)
            assert got.status_code == 202
            for _ in range(20):
                health = await c.get("/healthz")
                if health.status_code == 200:
                    break
                await asyncio.sleep(0.25)
            assert health.status_code == 200
        finally:
            stop_process(proc)
