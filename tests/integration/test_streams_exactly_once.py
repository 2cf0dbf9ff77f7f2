"""Exactly-once effects under at-least-once delivery, and a worker that never stops on bad input."""
from __future__ import annotations

import json
import random

import pytest
import redis

from schemas.keys import Keys
from streams.batch import utc_day
from tests.integration.support import (
    Worker, event, produce, produce_events, read_dlq, stream_settings, sync_redis, wait_until,
)

pytestmark = pytest.mark.integration


def popsum(r: redis.Redis, k: Keys) -> float:
    return sum(s for _, s in r.zrange(k.pop_global, 0, -1, withscores=True))


@pytest.mark.parametrize("store", ["single", "cluster"])
def test_sigkill_mid_stream_then_restart_counts_every_event_exactly_once(services, tmp_path, request, store) -> None:  # noqa: ANN001
    # small batches so that the kill lands between many committed and uncommitted ones
    # cluster: a three-master Redis Cluster, the batch applied per slot group then per target slot
    on = {"redis_url": request.getfixturevalue("redis_cluster_url"), "redis_cluster": True} if store == "cluster" else {}
    s = stream_settings(services, tmp_path, batch_size=200, **on)
    k = Keys(s.redis_prefix)
    r = sync_redis(s)
    n = 12_000
    events = [event("view", f"xu-{j % 700}", f"xi-{j % 300}") for j in range(n)]
    # feedback mixed in (docs/feedback.md): its per-arm counters must be exact too
    feedback = []
    for j in range(1_200):
        user, item = f"xu-{j % 700}", f"xi-{j % 300}"
        kind = j % 4
        if kind == 0:
            feedback.append(event("rate", user, item, value=1 + j % 5, strategy="fb", comment=f"c{j}",
                                  aspects={"quality": 1 + j % 5}))
        elif kind == 1:
            feedback.append(event("dwell", user, item, strategy="fb", dwell_ms=500 + j))
        elif kind == 2:
            feedback.append(event("like", user, item, strategy="fb"))
        else:
            feedback.append(event("convert", user, item, strategy="fb"))
    events = [e for pair in zip(events[: len(feedback)], feedback) for e in pair] + events[len(feedback):]
    nf = len(feedback)
    # one replayed duplicate from the producer side too: same event_id, counted once
    events.append(dict(events[0]))
    w = Worker(s, tmp_path / "worker1.log").start().ready()
    produce_events(s, events[: n // 2])
    wait_until(lambda: popsum(r, k) > 0, 60, every=0.01)
    w.kill()  # SIGKILL: no clean shutdown, no last commit
    killed_at = popsum(r, k)
    produce_events(s, events[n // 2:])
    w2 = Worker(s, tmp_path / "worker2.log").start()
    try:
        wait_until(lambda: popsum(r, k) >= n, 120)
        # let any replay finish: the sum must stay exactly n
        wait_until(lambda: int(r.get(k.new_events) or 0) >= n, 30)
        wait_until(lambda: sum(int(v) for u in range(700) for v in r.hvals(k.user_counts(f"xu-{u}"))) >= n + nf, 30)
        assert popsum(r, k) == n + sum(s.event_strengths[e["type"]] for e in feedback)
        # nothing counted twice anywhere in the script (dwell is not an interaction: no new_events)
        assert int(r.get(k.new_events)) == n + nf - nf // 4
        counts = sum(int(v) for u in range(700) for v in r.hvals(k.user_counts(f"xu-{u}")))
        assert counts == n + nf
        days = {utc_day(int(e["ts"] // 86400)) for e in events}
        st = {}
        for d in days:
            for f, v in r.hgetall(k.stats_day(d)).items():
                st[f.decode()] = st.get(f.decode(), 0) + float(v)
        rates = [e for e in feedback if e["type"] == "rate"]
        assert st["fb:rating_count"] == len(rates) and st["fb:rating_sum"] == sum(e["value"] for e in rates)
        assert st["fb:aspect.quality.sum"] == sum(e["context"]["aspects"]["quality"] for e in rates)
        assert st["fb:comments"] == len(rates) == r.llen(k.comments)
        dwells = [e["context"]["dwell_ms"] for e in feedback if e["type"] == "dwell"]
        assert (st["fb:dwell_count"], st["fb:dwell_sum_ms"]) == (len(dwells), sum(dwells))
        assert st["fb:likes"] == nf // 4 and st["fb:conversions"] == nf // 4
        positive = {(e["user_id"], e["item_id"], utc_day(int(e["ts"] // 86400))) for e in feedback
                    if e["type"] in ("like", "convert") or (e["type"] == "rate" and e["value"] >= 4)}
        assert st["fb:positive"] == len(positive)
        assert 0 < killed_at <= n
        assert w2.alive
    finally:
        w2.stop()


def _garbage(rng: random.Random, j: int) -> bytes:
    good = event("view", f"gu-{j % 50}", f"gi-{j % 20}")
    kind = rng.randrange(8)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 60))                      # binary noise
    if kind == 1:
        return json.dumps(good).encode()[: rng.randrange(1, 40)]       # truncated JSON
    if kind == 2:
        good.pop(rng.choice(["type", "user_id", "item_id"]))           # a missing field
    elif kind == 3:
        good["type"] = rng.choice(["teleport", "", "VIEW", 3, None])   # an unknown type
    elif kind == 4:
        good["type"], good["value"] = "rate", rng.choice([0, 6, -1, "five", None])  # a bad rating
    elif kind == 5:
        good["user_id"] = rng.choice(["", "a b", "x" * 200, 42, None])  # a bad id
    elif kind == 6:
        good["ts"] = rng.choice(["yesterday", [1], {"t": 1}])           # a bad timestamp
    else:
        return json.dumps(rng.choice([[1, 2], "text", 3.5, None])).encode()  # not an object
    return json.dumps(good).encode()


def test_ten_thousand_malformed_records_all_reach_the_dlq_and_the_worker_keeps_going(services, tmp_path) -> None:  # noqa: ANN001
    s = stream_settings(services, tmp_path)
    k = Keys(s.redis_prefix)
    r = redis.Redis.from_url(s.redis_url)
    rng = random.Random(7)
    bad = [_garbage(rng, j) for j in range(10_000)]
    good = [event("view", f"ok-{j}", "ok-item") for j in range(100)]
    w = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        produce(s, "interactions", bad)
        produce_events(s, good)
        wait_until(lambda: r.zscore(k.pop_global, "ok-item") == 100, 120)
        dead = read_dlq(s, len(bad), timeout=60)
        assert len(dead) == len(bad)
        assert all(d["reason"] for d in dead)
        assert sorted(d["raw"].encode() for d in dead if "\ufffd" not in d["raw"]) == \
            sorted(b for b in bad if "\ufffd" not in b.decode("utf-8", errors="replace"))
        assert w.alive
    finally:
        w.stop()
