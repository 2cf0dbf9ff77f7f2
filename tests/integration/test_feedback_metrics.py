"""Feedback counters of the interactions script (docs/feedback.md), on a real redis-server: the
rows come from ``streams.batch.decode_interactions`` and go through ``StreamState`` as the worker
sends them, so every figure here is what a worker would write."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from schemas.keys import Keys
from schemas.settings import Settings
from streams.batch import Record, decode_interactions, utc_day
from streams.config import StreamConfig
from streams.processor import positions
from streams.state import StreamState
from tests.integration.support import event

pytestmark = pytest.mark.integration

WINDOW = 300.0


def apply(s: Settings, events: list[dict], now: float, first_offset: int = 0) -> tuple[int, int]:
    recs = [Record(json.dumps(e).encode(), "interactions", 0, first_offset + j) for j, e in enumerate(events)]
    cfg = StreamConfig.from_settings(s)
    decoded = decode_interactions(recs, cfg.strengths)
    assert not decoded.dead, [d.reason for d in decoded.dead]

    async def go() -> tuple[int, int]:
        client = aioredis.Redis.from_url(s.redis_url)
        try:
            # the records' positions, as the worker passes them: replays are the watermark's job
            got = await StreamState(client, s).apply_interactions(decoded.rows, cfg, now,
                                                                  positions=positions(decoded.sources))
        finally:
            await client.aclose()
        return got.new, got.duplicates

    return asyncio.run(go())


@pytest.fixture
def s(services) -> Settings:  # noqa: ANN001
    return Settings(redis_url=services.redis_url, redis_prefix=f"fb{uuid.uuid4().hex[:8]}:",
                    bandit_reward_window_s=WINDOW, feedback_comments_max=3)


def test_feedback_counters_per_day_and_arm_exactly_once(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url, decode_responses=True)
    now = time.time()
    day = utc_day(int(now // 86400))
    events = [
        event("impression", "u1", "i1", now, strategy="hybrid"),
        event("impression", "u2", "i1", now, strategy="popularity"),
        event("click", "u1", "i1", now + 1),                                    # hybrid, positive
        event("like", "u1", "i1", now + 2),                                     # hybrid; same user-item: not positive again
        event("rate", "u1", "i1", now + 3, value=5, comment="great course",
              aspects={"quality": 5, "relevance": 4}),                          # hybrid
        event("rate", "u2", "i1", now + 4, value=2, aspects={"quality": 1}),    # popularity, not positive
        event("dislike", "u2", "i1", now + 5),                                  # popularity
        event("dwell", "u1", "i1", now + 6, dwell_ms=2500),                     # hybrid, <3s
        event("dwell", "u2", "i1", now + 7, dwell_ms=45_000),                   # popularity, <60s
        event("dwell", "u3", "i7", now + 8, dwell_ms=90_000, strategy="ncf"),   # ncf, >=60s
        event("purchase", "u2", "i1", now + 60),                                # popularity, in window: conversion
        event("purchase", "u1", "i9", now + 60),                                # never impressed: no conversion
        event("enroll", "u2", "i1", now + 2 * WINDOW + 10),                     # impression too old: none
        event("convert", "u4", "i2", now + 9, strategy="ncf"),                  # explicit conversion
        event("rate", "u4", "i2", now + 10, value=4.5, comment="ok", strategy="ncf"),
    ]
    assert apply(s, events, now) == (len(events), 0)
    assert apply(s, events, now) == (0, len(events))  # a replay counts nothing twice

    st = r.hgetall(k.stats_day(day))
    def n(f: str) -> float:  # noqa: E306
        return float(st.get(f, 0))
    assert (n("hybrid:likes"), n("popularity:dislikes")) == (1, 1)
    assert (n("hybrid:rating_sum"), n("hybrid:rating_count")) == (5, 1)
    assert (n("popularity:rating_sum"), n("popularity:rating_count")) == (2, 1)
    assert (n("ncf:rating_sum"), n("ncf:rating_count")) == (4.5, 1)
    assert (n("hybrid:rating_sq"), n("ncf:rating_sq")) == (25, 20.25)
    # the distribution: whole stars, a 4.5 rounds up
    assert (n("hybrid:rating.5"), n("popularity:rating.2"), n("ncf:rating.5"), n("ncf:rating.4")) == (1, 1, 1, 0)
    assert (n("hybrid:aspect.quality.sum"), n("hybrid:aspect.quality.count")) == (5, 1)
    assert (n("hybrid:aspect.relevance.sum"), n("popularity:aspect.quality.sum")) == (4, 1)
    assert (n("hybrid:dwell_sum_ms"), n("hybrid:dwell_count"), n("hybrid:dwell.lt3s")) == (2500, 1, 1)
    assert (n("popularity:dwell.lt60s"), n("ncf:dwell.ge60s"), n("ncf:dwell_sum_ms")) == (1, 1, 90_000)
    assert (n("popularity:conversions"), n("ncf:conversions"), n("_:conversions")) == (1, 1, 0)
    # positive: hybrid u1/i1 once (click, like, rate 5 the same day); popularity u2/i1 by the purchase;
    # ncf u4/i2 by convert and rate 4.5 -> once
    assert (n("hybrid:positive"), n("popularity:positive"), n("ncf:positive")) == (1, 1, 1)
    assert (n("hybrid:comments"), n("ncf:comments")) == (1, 1)
    assert n("hybrid:clicks") == 1

    comments = [json.loads(c) for c in r.lrange(k.comments, 0, -1)]
    assert [c["text"] for c in comments] == ["ok", "great course"]  # newest first
    assert comments[1] | {"ts": 0} == {"user": "u1", "item": "i1", "arm": "hybrid", "ts": 0, "day": day,
                                       "rating": 5, "type": "rate", "text": "great course"}

    # positive feedback the next batch on the same user-item and day still counts once
    assert apply(s, [event("like", "u1", "i1", now + 20)], now, first_offset=len(events))[0] == 1
    assert float(r.hget(k.stats_day(day), "hybrid:positive")) == 1


def test_comments_list_is_capped(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url, decode_responses=True)
    now = time.time()
    apply(s, [event("rate", "u1", f"i{j}", now + j, value=3, comment=f"c{j}") for j in range(5)], now)
    assert [json.loads(c)["text"] for c in r.lrange(k.comments, 0, -1)] == ["c4", "c3", "c2"]


def test_the_demo_feedback_shows_numbers_per_arm(s: Settings) -> None:
    from infra.demo import generate
    from inference.feedback import ArmFeedback, per_arm

    data = generate(n_items=120, n_users=150, days=10, seed=5)
    for i in range(0, len(data.events), 2000):
        apply(s, data.events[i:i + 2000], time.time())
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    totals: dict[str, ArmFeedback] = {}
    for key in r.scan_iter(f"{s.redis_prefix}stats:*"):
        for arm, got in per_arm(r.hgetall(key)).items():
            totals.setdefault(arm, ArmFeedback()).c.update(got.c)
    hybrid, popularity = totals["hybrid"].metrics(), totals["popularity"].metrics()
    for m in (hybrid, popularity):
        assert m["impressions"] > 0 and 0 < m["ctr"] <= 1 and 0 < m["positive_rate"] <= 1
        assert m["rating_count"] > 0 and 1 <= m["rating_mean"] <= 5 and m["aspects"]["quality"]["count"] > 0
        assert m["dwell_p50_ms"] and m["conversions"] > 0 and m["like_ratio"] is not None
    assert hybrid["rating_mean"] > popularity["rating_mean"]  # the demo's better arm
    assert r.llen(k.comments) > 0


def test_explicit_feedback_is_counted_for_the_scheduler_which_retrains_on_enough(s: Settings) -> None:
    from trainer.scheduler import Scheduler

    now = time.time()
    r = redis.Redis.from_url(s.redis_url, decode_responses=True)
    k = Keys(s.redis_prefix)
    events = [event("like", "fb-u1", f"fb-i{j}", ts=now) for j in range(3)]
    events += [event("rate", "fb-u2", "fb-i0", ts=now, value=2), event("view", "fb-u3", "fb-i1", ts=now)]
    apply(s, events, now)
    apply(s, events, now)  # a replayed batch counts nothing twice
    assert int(r.get(k.new_feedback)) == 4 and int(r.get(k.new_events)) == 5
    sched = Scheduler(s.model_copy(update={"retrain_min_new_feedback": 3}), r)
    assert sched.feedback_due() == "4 new explicit feedbacks (threshold 3)"
    assert Scheduler(s.model_copy(update={"retrain_min_new_feedback": 10}), r).feedback_due() is None
