"""The real-time state the worker keeps in Redis, checked on the real broker and Redis.

One worker process serves the whole module (it has its own topic and Redis key prefixes);
each test uses its own user and item ids.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import redis

from schemas.keys import Keys
from tests.integration.support import (
    Worker, event, produce, produce_events, read_dlq, stream_settings, wait_until,
)

pytestmark = pytest.mark.integration

HALF_LIFE = 100.0
GAP = 60.0
WINDOW = 300.0


@pytest.fixture(scope="module")
def stream(services, tmp_path_factory):  # noqa: ANN001, ANN201
    tmp = tmp_path_factory.mktemp("streams")
    s = stream_settings(services, tmp, pairs_top_n=3, trend_half_life_s=HALF_LIFE, session_gap_s=GAP,
                        bandit_reward_window_s=WINDOW, config_refresh_s=0.2)
    w = Worker(s, tmp / "worker.log").start().ready()
    yield s, w
    w.stop()


@pytest.fixture
def r(stream):  # noqa: ANN001, ANN201
    return redis.Redis.from_url(stream[0].redis_url, decode_responses=True)


def tag() -> str:
    return uuid.uuid4().hex[:6]


def test_popularity_history_counts_segments_and_new_events(stream, r) -> None:  # noqa: ANN001
    s, w = stream
    k, t = Keys(s.redis_prefix), tag()
    produce(s, "users", [json.dumps({"user_id": f"a{t}-0", "segment": "nurse"}).encode()])
    wait_until(lambda: r.hget(k.user_profile(f"a{t}-0"), "segment") == "nurse")
    strengths = s.event_strengths
    events, expected, seen = [], {}, {}
    types = ["view", "click", "download", "enroll", "like", "dislike", "impression"]
    for j in range(600):
        user, item, typ = f"a{t}-{j % 7}", f"ai{t}-{(j * 7) % 11}", types[j % len(types)]
        events.append(event(typ, user, item, **({"profession": "plumber"} if user.endswith("-1") else {})))
        if typ != "impression":
            expected[item] = expected.get(item, 0) + strengths[typ]
            seen.setdefault(user, set()).add(item)
    events.append(event("rate", f"a{t}-0", f"ai{t}-0", value=5))
    expected[f"ai{t}-0"] += strengths["rate"]
    produce_events(s, events)
    interactions = sum(1 for e in events if e["type"] != "impression")

    wait_until(lambda: int(r.get(k.new_events) or 0) >= interactions)
    got = {i: sc for i, sc in r.zrange(k.pop_global, 0, -1, withscores=True) if i.startswith(f"ai{t}")}
    assert got == pytest.approx(expected)
    for user, items in seen.items():
        assert r.smembers(k.seen(user)) == items
    assert int(r.get(k.new_events)) == interactions
    # per-type counts, impressions included; the recent list bounded and newest first
    counts = r.hgetall(k.user_counts(f"a{t}-3"))
    assert sum(map(int, counts.values())) == sum(1 for e in events if e["user_id"] == f"a{t}-3")
    assert 0 < r.llen(k.recent(f"a{t}-3")) <= 2 * s.recent_max
    assert r.lindex(k.recent(f"a{t}-3"), 0) == [e["item_id"] for e in events
                                                 if e["user_id"] == f"a{t}-3" and e["type"] != "impression"][-1]
    # segments: from the users topic (nurse) and from the event context (plumber)
    nurse = dict(r.zrange(k.pop_seg("nurse"), 0, -1, withscores=True))
    plumber = dict(r.zrange(k.pop_seg("plumber"), 0, -1, withscores=True))
    assert sum(nurse.values()) == pytest.approx(sum(strengths[e["type"]] for e in events
                                                    if e["user_id"] == f"a{t}-0"))
    assert sum(plumber.values()) == pytest.approx(sum(strengths[e["type"]] for e in events
                                                      if e["user_id"] == f"a{t}-1"))


def test_dlq_gets_bad_records_with_reasons_and_worker_lives(stream, r) -> None:  # noqa: ANN001
    s, w = stream
    t = tag()
    bad = [b"{not json", json.dumps({"type": "view", "user_id": f"d{t}"}).encode(),
           json.dumps(event("teleport", f"d{t}", "x")).encode(),
           json.dumps({**event("rate", f"d{t}", "x"), "value": 9}).encode()]
    produce(s, "interactions", bad)
    dead = [d for d in read_dlq(s, 100, timeout=10) if f"d{t}" in d["raw"] or d["raw"] == "{not json"]
    reasons = " | ".join(d["reason"] for d in dead)
    assert len(dead) >= 4, reasons
    assert "malformed JSON" in reasons and "Field required" in reasons
    assert "type" in reasons and "between 1 and 5" in reasons
    assert all({"reason", "raw", "topic", "partition", "offset"} <= d.keys() for d in dead)
    assert w.alive


def test_pairs_from_baskets_and_sessions_pruned_to_top_n(stream, r) -> None:  # noqa: ANN001
    s, _ = stream
    k, t = Keys(s.redis_prefix), tag()
    now = time.time()
    a, b, c, d = (f"p{t}-{x}" for x in "abcd")
    produce(s, "users", [json.dumps({"user_id": f"pu{t}-s", "profession": "chef"}).encode()])
    wait_until(lambda: r.hget(k.user_profile(f"pu{t}-s"), "segment") == "chef")
    events = [
        # a session: a then b within the gap, then c after a long pause (no b -> c pair)
        event("view", f"pu{t}-s", a, now), event("click", f"pu{t}-s", b, now + 5),
        event("view", f"pu{t}-s", c, now + 5 + 10 * GAP),
        # a basket of three purchase lines (bought together: both directions)
        event("purchase", f"pu{t}-b", a, now + 100, basket_id=f"bk{t}"),
        event("purchase", f"pu{t}-b", c, now + 3000, basket_id=f"bk{t}"),
        event("purchase", f"pu{t}-b", d, now + 6000, basket_id=f"bk{t}"),
    ]
    produce_events(s, events)
    wait_until(lambda: r.zscore(k.pairs(d), c))
    assert r.zscore(k.pairs(a), b) == 1 and r.zscore(k.pairs_rev(b), a) == 1
    assert r.zscore(k.pairs(b), c) is None  # the gap ended the session
    assert r.zscore(k.pairs(b, "chef"), a) is None and r.zscore(k.pairs(a, "chef"), b) == 1
    for x, y in ((a, c), (c, a), (a, d), (d, a), (c, d), (d, c)):
        assert r.zscore(k.pairs(x), y) == 1, (x, y)
        assert r.zscore(k.pairs_rev(y), x) == 1, (x, y)
    # pruning: item h gets 6 different followers, the list keeps its top 3
    h = f"p{t}-h"
    prune = []
    for j in range(6):
        for rep in range(j + 1):  # follower j follows h j+1 times
            user = f"pp{t}-{j}-{rep}"
            prune += [event("view", user, h, now), event("view", user, f"p{t}-f{j}", now + 1)]
    produce_events(s, prune)
    wait_until(lambda: r.zscore(k.pairs(h), f"p{t}-f5") == 6)
    assert r.zrange(k.pairs(h), 0, -1, desc=True) == [f"p{t}-f5", f"p{t}-f4", f"p{t}-f3"]


def test_trending_decays_and_is_order_independent(stream, r) -> None:  # noqa: ANN001
    s, _ = stream
    k, t = Keys(s.redis_prefix), tag()
    now = time.time()
    # item x: one view now; item y: two views one half-life ago (one of them arriving last, late)
    x, y = f"tx{t}", f"ty{t}"
    produce_events(s, [event("view", f"tu{t}-1", y, now - HALF_LIFE), event("view", f"tu{t}-2", x, now)])
    wait_until(lambda: r.zscore(k.pop_trend, x))
    produce_events(s, [event("view", f"tu{t}-3", y, now - HALF_LIFE)])  # late and out of order
    wait_until(lambda: r.zscore(k.pop_global, y) == 2)
    # 2 views one half-life old weigh exactly 1 view now
    assert r.zscore(k.pop_trend, y) == pytest.approx(r.zscore(k.pop_trend, x), rel=1e-9)
    # and a view two half-lives old weighs a quarter
    z = f"tz{t}"
    produce_events(s, [event("view", f"tu{t}-4", z, now - 2 * HALF_LIFE)])
    wait_until(lambda: r.zscore(k.pop_trend, z))
    assert r.zscore(k.pop_trend, z) == pytest.approx(r.zscore(k.pop_trend, x) / 4, rel=1e-9)


def test_strengths_change_at_run_time(stream, r) -> None:  # noqa: ANN001
    s, _ = stream
    k, t = Keys(s.redis_prefix), tag()
    r.hset(k.config, "strength.view", "7")
    try:
        time.sleep(1.0)  # the worker re-reads the hash every config_refresh_s (0.2 s here)
        produce_events(s, [event("view", f"rt{t}", f"ri{t}")])
        wait_until(lambda: r.zscore(k.pop_global, f"ri{t}"))
        assert r.zscore(k.pop_global, f"ri{t}") == 7
    finally:
        r.hdel(k.config, "strength.view")


def test_bandit_credit_within_window_and_ctr(stream, r) -> None:  # noqa: ANN001
    s, _ = stream
    k, t = Keys(s.redis_prefix), tag()
    now = time.time()
    arm_a, arm_b = f"armA{t}", f"armB{t}"
    rewards = s.bandit_rewards
    events = [
        event("impression", f"bu{t}-1", f"bi{t}-1", now, strategy=arm_a, request_id="r1", position=0),
        event("impression", f"bu{t}-1", f"bi{t}-2", now, strategy=arm_a, request_id="r1", position=1),
        event("impression", f"bu{t}-2", f"bi{t}-1", now, strategy=arm_b, request_id="r2", position=0),
        event("click", f"bu{t}-1", f"bi{t}-1", now + 10),           # credited to A
        event("enroll", f"bu{t}-1", f"bi{t}-1", now + 20),          # upgrades A's credit to enroll
        event("click", f"bu{t}-2", f"bi{t}-1", now + 2 * WINDOW),  # B's impression too old: no credit
        event("click", f"bu{t}-1", f"bi{t}-9", now + 10),           # never impressed: no credit
    ]
    produce_events(s, events)
    wait_until(lambda: int(r.hget(k.user_counts(f"bu{t}-2"), "click") or 0) == 1)
    bandit = r.hgetall(k.bandit(s.bandit_policy))
    assert int(bandit[f"{arm_a}:pulls"]) == 2 and int(bandit[f"{arm_b}:pulls"]) == 1
    assert float(bandit[f"{arm_a}:rewards"]) == pytest.approx(max(rewards["click"], rewards["enroll"]))
    assert f"{arm_b}:rewards" not in bandit
    # impressions never touch popularity or the seen set
    assert r.zscore(k.pop_global, f"bi{t}-2") is None
    assert f"bi{t}-2" not in r.smembers(k.seen(f"bu{t}-1"))
    # CTR counters per strategy and day, globally and per user
    from streams.batch import utc_day

    day = utc_day(int(now // 86400))
    stats = r.hgetall(k.stats_day(day))
    assert int(stats[f"{arm_a}:impressions"]) == 2 and int(stats[f"{arm_a}:clicks"]) == 1
    assert int(stats[f"{arm_b}:impressions"]) == 1
    user = r.hgetall(k.user_stats(f"bu{t}-1"))
    assert int(user[f"{day}:{arm_a}:impressions"]) == 2 and int(user[f"{day}:{arm_a}:clicks"]) == 1


def test_cache_invalidation_and_model_updates(stream, r) -> None:  # noqa: ANN001
    s, _ = stream
    k, t = Keys(s.redis_prefix), tag()
    u1, u2 = f"cu{t}-1", f"cu{t}-2"
    for u in (u1, u2):
        for strategy in ("popularity", "hybrid"):
            key = k.recs(u, strategy, 10)
            r.set(key, "[]")
            r.sadd(k.recs_index(u), key)
    messages: list = []
    sub = r.pubsub()
    sub.subscribe(k.invalidate_channel)
    wait_until(lambda: sub.get_message(timeout=0.1))  # the subscribe confirmation

    def listen() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(messages) < 2:
            m = sub.get_message(timeout=0.2)
            if m and m["type"] == "message":
                messages.append(json.loads(m["data"]))

    th = threading.Thread(target=listen)
    th.start()
    # u1 views (invalidates), u2 only gets an impression (does not)
    produce_events(s, [event("view", u1, f"ci{t}"), event("impression", u2, f"ci{t}", strategy="hybrid")])
    wait_until(lambda: not r.exists(k.recs_index(u1)))
    assert not r.exists(k.recs(u1, "popularity", 10), k.recs(u1, "hybrid", 10))
    assert r.exists(k.recs(u2, "popularity", 10)) and r.exists(k.recs_index(u2))
    # a model update moves every reader to a new cache namespace, no KEYS scan
    before = int(r.get(k.cache_version) or 0)
    produce(s, "model-updates", [json.dumps({"run_id": "run_x", "run_dir": "artifacts/run_x"}).encode()])
    wait_until(lambda: int(r.get(k.cache_version) or 0) == before + 1)
    th.join()
    sub.close()
    assert [u1] in messages and ["*"] in messages
    assert not any(u2 in m for m in messages)


def test_catalog_and_users_topics_fill_the_hashes(stream, r) -> None:  # noqa: ANN001
    s, _ = stream
    k, t = Keys(s.redis_prefix), tag()
    produce(s, "catalog", [json.dumps({"item_id": f"cat{t}", "title": "Pipe wrench", "text": "steel",
                                       "category": "tools", "subcategory": "wrenches", "level": 2,
                                       "private_label": True}).encode(),
                           b'{"title": "no id"}'])
    produce(s, "users", [json.dumps({"user_id": f"usr{t}", "profession": "plumber", "level": 3}).encode()])
    wait_until(lambda: r.exists(k.item(f"cat{t}")) and r.exists(k.user_profile(f"usr{t}")))
    item = r.hgetall(k.item(f"cat{t}"))
    assert (item["title"], item["category"], item["subcategory"], item["level"], item["private_label"]) == \
        ("Pipe wrench", "tools", "wrenches", "2", "1")
    assert r.hgetall(k.user_profile(f"usr{t}"))["segment"] == "plumber"
    dead = read_dlq(s, 100, timeout=5)
    assert any(d["topic"] == s.topic("catalog") and "item_id" in d["reason"] for d in dead)
