"""The interactions batch on a real three-master Redis Cluster (docs/redis-cluster.md): keys carry
hash tags, a batch is applied per slot group then per target slot, exactly once — a replayed
batch counts nothing twice, and a batch whose second step was cut short (the worker died between
the steps) is finished from the outboxes, not counted again. The rows come from
``decode_interactions`` and go through ``StreamState`` as the worker sends them."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from redis.cluster import RedisCluster

from schemas.keys import Keys, key_slot
from schemas.settings import Settings
from streams.batch import Record, decode_interactions
from streams.config import StreamConfig
from streams.processor import positions
from streams.state import ApplyResult, StreamState, make_client
from tests.integration.support import event

pytestmark = pytest.mark.integration


@pytest.fixture
def s(redis_cluster_url: str) -> Settings:
    tag = uuid.uuid4().hex[:8]
    return Settings(redis_url=redis_cluster_url, redis_cluster=True, redis_prefix=f"cs{tag}:",
                    topic_prefix=f"cs{tag}.")


def records(events: list[dict], partition: int = 0, first_offset: int = 0) -> list[Record]:
    return [Record(json.dumps(e).encode(), "interactions", partition, first_offset + j) for j, e in enumerate(events)]


def apply(s: Settings, recs: list[Record], cut_after_groups: bool = False) -> ApplyResult:
    cfg = StreamConfig.from_settings(s)
    decoded = decode_interactions(recs, cfg.strengths)

    async def go() -> ApplyResult:
        client = make_client(s)
        state = StreamState(client, s)
        if cut_after_groups:  # the worker dies after the slot groups committed, before the targets
            async def dies(*_a: object) -> None:
                raise RuntimeError("killed between the steps")
            state.cluster._drain = dies  # type: ignore[method-assign]
        try:
            return await state.apply_interactions(decoded.rows, cfg, time.time(), positions=positions(decoded.sources))
        finally:
            await client.aclose()

    return asyncio.run(go())


def popsum(r: RedisCluster, k: Keys) -> float:
    return sum(v for _, v in r.zrange(k.pop_global, 0, -1, withscores=True))


def stream(n: int) -> list[dict]:
    """Sessions of 12 users over 9 items (co-occurrences across slots), a few in a segment's basket."""
    return [event("purchase" if j % 5 == 0 else "view", f"u{j % 12}", f"i{(j * 7) % 9}", ts=time.time() - 100 + j,
                  basket_id=f"b{j % 12}") for j in range(n)]


def test_a_batch_spread_over_slots_counts_once_and_keys_carry_hash_tags(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), RedisCluster.from_url(s.redis_url)
    evs = stream(120)
    first = apply(s, records(evs[:80]))
    assert (first.new, first.duplicates) == (80, 0)
    again = apply(s, records(evs[60:], first_offset=60))  # fetched again from offset 60
    assert (again.new, again.duplicates) == (40, 20)
    views = sum(1 for e in evs if e["type"] == "view")
    assert popsum(r, k) == views * 1 + (len(evs) - views) * 4
    assert k.seen("u3") == f"{s.redis_prefix}seen:{{u3}}" and r.scard(k.seen("u3")) > 0
    assert key_slot(k.seen("u3")) == key_slot(k.recent("u3"))
    # co-occurrences landed in the items' slots, reverse lists too
    assert r.zcard(k.pairs("i0")) > 0 and r.zcard(k.pairs_rev("i0")) > 0
    assert int(r.get(k.new_events)) == 120
    # nothing left in flight
    assert not r.smembers(k.pending_outboxes(0))
    r.close()


def test_a_batch_cut_between_the_steps_is_finished_not_counted_twice(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), RedisCluster.from_url(s.redis_url)
    evs = stream(60)
    with pytest.raises(RuntimeError):
        apply(s, records(evs[:40]), cut_after_groups=True)
    assert popsum(r, k) == 0  # the users' keys are written, the aggregates wait in the outboxes
    assert r.smembers(k.pending_outboxes(0))
    # the worker restarts and fetches from offset 0 again
    again = apply(s, records(evs))
    assert (again.new, again.duplicates) == (20, 40)
    views = sum(1 for e in evs if e["type"] == "view")
    assert popsum(r, k) == views + (len(evs) - views) * 4
    assert int(r.get(k.new_events)) == 60
    assert not r.smembers(k.pending_outboxes(0))
    r.close()


def test_the_cluster_holds_what_a_single_node_holds_for_the_same_stream(s: Settings, services) -> None:  # noqa: ANN001
    single = Settings(redis_url=services.redis_url, redis_prefix=s.redis_prefix.replace("cs", "ss"),
                      topic_prefix=s.topic_prefix)
    now = time.time()
    evs = stream(90)
    for j in range(30):  # served lists, their clicks, ratings with comments: bandit, day and feedback counters
        u, i = f"u{j % 12}", f"i{j % 9}"
        evs.append(event("impression", u, i, ts=now - 50 + j, strategy="hybrid", position=1))
        if j % 3 == 0:
            evs.append(event("click", u, i, ts=now - 49 + j, strategy="hybrid"))
        if j % 4 == 0:
            evs.append(event("rate", u, i, ts=now - 48 + j, value=5, comment=f"fine {j}"))
    for first, last in ((0, 70), (70, len(evs))):
        assert apply(s, records(evs[first:last], first_offset=first)) == \
            apply(single, records(evs[first:last], first_offset=first))
    kc, ks = Keys(s.redis_prefix), Keys(single.redis_prefix)
    rc, rs = RedisCluster.from_url(s.redis_url), __import__("redis").Redis.from_url(services.redis_url)
    assert dict(rc.zrange(kc.pop_global, 0, -1, withscores=True)) == dict(rs.zrange(ks.pop_global, 0, -1, withscores=True))
    # trending: the same scores up to the factor of the two epochs (each store took its own "now")
    got, want = dict(rc.zrange(kc.pop_trend, 0, -1, withscores=True)), dict(rs.zrange(ks.pop_trend, 0, -1, withscores=True))
    factor = got[b"i0"] / want[b"i0"]
    assert got.keys() == want.keys() and all(abs(got[m] - want[m] * factor) < 1e-9 * got[m] for m in want)
    for i in range(9):
        for build in ("pairs", "pairs_rev"):
            assert rc.zrange(getattr(kc, build)(f"i{i}"), 0, -1, withscores=True) == \
                rs.zrange(getattr(ks, build)(f"i{i}"), 0, -1, withscores=True)
    assert rc.hgetall(kc.bandit(s.bandit_policy)) == rs.hgetall(ks.bandit(single.bandit_policy))
    day = time.strftime("%Y-%m-%d", time.gmtime(now))
    assert rc.hgetall(kc.stats_day(day)) == rs.hgetall(ks.stats_day(day))
    assert sorted(rc.lrange(kc.comments, 0, -1)) == sorted(rs.lrange(ks.comments, 0, -1))
    for u in range(12):
        assert rc.smembers(kc.seen(f"u{u}")) == rs.smembers(ks.seen(f"u{u}"))
        assert rc.hgetall(kc.user_stats(f"u{u}")) == rs.hgetall(ks.user_stats(f"u{u}"))
    rc.close()
