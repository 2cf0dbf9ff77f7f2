"""POST /api/v1/feedback, GET /api/v1/feedback/stats and /comments, on the real broker and Redis
(and, end to end, a real worker between them)."""
from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from infra.stack import free_port
from schemas.keys import Keys
from streams.batch import utc_day
from tests.integration.support import Worker, api_client, consume, event, produce_events, stream_settings, wait_until

pytestmark = pytest.mark.integration


async def test_feedback_becomes_events_and_bad_input_is_a_422(settings):
    body = {"request_id": "r-9", "user_id": "u1", "item_id": "i1", "rating": 4, "comment": "clear",
            "aspects": {"quality": 5}, "interaction_happened": True}
    async with api_client(settings.model_copy(update={"emit_impressions": False})) as (app, c):
        got = await c.post("/api/v1/feedback", json=body)
        assert got.status_code == 202 and got.json()["accepted"] == 2
        assert [e["type"] for e in got.json()["events"]] == ["rate", "click"]
        got = await c.post("/api/v1/feedback", json={"user_id": "u2", "item_id": "i1", "interaction_happened": False,
                                                     "comment": "not for me"})
        assert got.status_code == 202 and [e["type"] for e in got.json()["events"]] == ["dislike"]
        for bad, words in [({"user_id": "u", "item_id": "i", "rating": 6}, "rating"),
                           ({"user_id": "u", "item_id": "i", "rating": 3, "aspects": {"taste": 2}}, "unknown aspect"),
                           ({"user_id": "u", "item_id": "i", "comment": "hm"}, "nothing to record"),
                           ({"user_id": "u", "item_id": "i", "rating": 3, "comment": "x" * 2001}, "comment"),
                           ({"user_id": "bad id", "item_id": "i", "rating": 3}, "user_id")]:
            got = await c.post("/api/v1/feedback", json=bad)
            assert got.status_code == 422 and words in got.json()["detail"], got.json()
    events = await consume(settings, want=3)
    rate = next(e for e in events if e["type"] == "rate")
    assert rate["value"] == 4 and rate["context"]["comment"] == "clear" and rate["context"]["aspects"] == {"quality": 5}
    assert {e["context"]["request_id"] for e in events if e["user_id"] == "u1"} == {"r-9"}
    assert next(e for e in events if e["type"] == "dislike")["context"]["comment"] == "not for me"


async def test_feedback_with_the_broker_down_is_a_503_with_retry_after(settings):
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}", "broker_timeout_s": 1.0,
                                       "emit_impressions": False})
    async with api_client(down) as (app, c):
        got = await c.post("/api/v1/feedback", json={"user_id": "u", "item_id": "i", "rating": 5})
        assert got.status_code == 503 and int(got.headers["Retry-After"]) > 0


def test_feedback_through_the_worker_shows_in_stats_and_comments(services, tmp_path) -> None:  # noqa: ANN001
    s = stream_settings(services, tmp_path, emit_impressions=False)
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url, decode_responses=True)
    t, now = uuid.uuid4().hex[:6], time.time()
    day = utc_day(int(now // 86400))
    imps = [event("impression", f"u{t}-{j}", f"i{t}", now - 60, strategy="hybrid") for j in range(4)]
    imps += [event("impression", f"u{t}-{j}", f"i{t}", now - 60, strategy="popularity") for j in range(4, 8)]
    posts = [
        {"user_id": f"u{t}-0", "item_id": f"i{t}", "rating": 5, "comment": "spot on", "aspects": {"quality": 5}},
        {"user_id": f"u{t}-1", "item_id": f"i{t}", "rating": 3, "comment": "meh", "aspects": {"quality": 2}},
        {"user_id": f"u{t}-2", "item_id": f"i{t}", "interaction_happened": True},
        {"user_id": f"u{t}-4", "item_id": f"i{t}", "interaction_happened": False, "rating": 1,
         "comment": "wrong level"},
    ]

    async def post() -> None:
        async with api_client(s) as (app, c):
            for p in posts:
                assert (await c.post("/api/v1/feedback", json=p)).status_code == 202

    async def read() -> tuple[dict, ...]:
        async with api_client(s) as (app, c):
            return tuple([(await c.get("/api/v1/feedback/stats", params={"days": 2})).json(),
                          (await c.get("/api/v1/feedback/stats", params={"days": 2, "arm": "hybrid"})).json(),
                          (await c.get("/api/v1/feedback/comments", params={"days": 1})).json(),
                          (await c.get("/api/v1/feedback/comments", params={"max_rating": 2})).json()])

    w = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        produce_events(s, imps)
        wait_until(lambda: r.hget(k.stats_day(day), "popularity:impressions") == "4", 60)
        asyncio.run(post())
        produce_events(s, [event("dwell", f"u{t}-0", f"i{t}", now, dwell_ms=2000),
                           event("dwell", f"u{t}-1", f"i{t}", now, dwell_ms=8000),
                           event("purchase", f"u{t}-5", f"i{t}", now)])
        wait_until(lambda: r.hget(k.stats_day(day), "popularity:conversions") == "1", 60)
        wait_until(lambda: r.hget(k.stats_day(day), "hybrid:dwell_count") == "2", 30)
        wait_until(lambda: r.hget(k.stats_day(day), "popularity:dislikes") == "1", 30)
        stats, only, comments, low = asyncio.run(read())
    finally:
        w.stop()
    h, p = stats["arms"]["hybrid"], stats["arms"]["popularity"]
    assert (h["impressions"], h["clicks"], h["ctr"]) == (4, 1, 0.25)
    assert (h["rating_count"], h["rating_mean"], h["aspects"]) == (2, 4.0, {"quality": {"mean": 3.5, "count": 2}})
    assert h["rating_histogram"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 1}
    assert (h["positive"], h["positive_rate"]) == (2, 0.5)   # the 5 and the click; the 3 is not positive
    assert (h["dwell_count"], h["dwell_mean_ms"], h["dwell_histogram"]["lt3s"], h["dwell_histogram"]["lt10s"]) == \
        (2, 5000.0, 1, 1)
    assert h["dwell_p50_ms"] == 3000.0 and h["comments"] == 2
    assert (p["dislikes"], p["like_ratio"], p["rating_mean"], p["comments"]) == (1, 0.0, 1.0, 1)
    assert (p["conversions"], p["conversion_rate"], p["positive_rate"]) == (1, 0.25, 0.25)
    assert stats["overall"]["impressions"] == 8 and stats["daily"][0]["day"] == day
    assert stats["daily"][0]["arms"]["hybrid"]["rating_count"] == 2
    assert list(only["arms"]) == ["hybrid"]
    assert [c["text"] for c in comments["comments"]] == ["wrong level", "meh", "spot on"]
    assert comments["comments"][2]["arm"] == "hybrid" and comments["comments"][2]["rating"] == 5
    assert [c["text"] for c in low["comments"]] == ["wrong level"]
