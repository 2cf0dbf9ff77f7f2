"""Bounded state of the interactions script on a real redis-server (docs/streams.md, "Bounded
state"): replays caught by the per-partition offset watermark, re-sent events by the event_id
window, legacy per-event markers honoured on the upgrade, per-user keys expiring, and events of
a forgotten user dropped. The rows come from ``decode_interactions`` and go through
``StreamState`` exactly as the worker sends them."""
from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from schemas import topics
from schemas.keys import Keys
from schemas.settings import Settings
from streams.batch import Record, decode_interactions
from streams.config import StreamConfig
from streams.processor import positions
from streams.state import ApplyResult, StreamState
from tests.integration.support import event

pytestmark = pytest.mark.integration


@pytest.fixture
def s(services) -> Settings:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    return Settings(redis_url=services.redis_url, redis_prefix=f"bs{tag}:", topic_prefix=f"bs{tag}.",
                    event_id_window_s=3600, user_state_ttl_s=1000)


def records(events: list[dict], partition: int = 0, first_offset: int = 0) -> list[Record]:
    return [Record(json.dumps(e).encode(), "interactions", partition, first_offset + j) for j, e in enumerate(events)]


def apply(s: Settings, recs: list[Record], now: float | None = None, with_positions: bool = True) -> ApplyResult:
    cfg = StreamConfig.from_settings(s)
    decoded = decode_interactions(recs, cfg.strengths)
    assert not decoded.dead

    async def go() -> ApplyResult:
        client = aioredis.Redis.from_url(s.redis_url)
        try:
            return await StreamState(client, s).apply_interactions(
                decoded.rows, cfg, now, positions=positions(decoded.sources) if with_positions else None)
        finally:
            await client.aclose()

    return asyncio.run(go())


def popsum(r: redis.Redis, k: Keys) -> float:
    return sum(v for _, v in r.zrange(k.pop_global, 0, -1, withscores=True))


def test_a_replayed_batch_counts_nothing_twice_and_no_key_per_event_is_kept(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    evs = [event("view", f"u{j % 7}", f"i{j % 5}") for j in range(50)]
    first = apply(s, records(evs[:30]))
    assert (first.new, first.duplicates) == (30, 0)
    # the consumer fetched from offset 20 again (a crash before its commit): 10 replayed, 20 new
    again = apply(s, records(evs[20:], first_offset=20))
    assert (again.new, again.duplicates) == (20, 10)
    assert popsum(r, k) == 50
    mark = r.hgetall(k.watermark(s.topic(topics.INTERACTIONS)))
    assert set(mark) == {b"0", b"0:fp"} and mark[b"0"] == b"49"  # the offset, and its record's fingerprint
    # bounded: no per-event marker, one window set of ids
    assert not list(r.scan_iter(f"{s.redis_prefix}dedupe:*"))
    assert len(list(r.scan_iter(f"{s.redis_prefix}eids:*"))) == 1


def test_an_event_sent_twice_counts_once_within_the_window_and_partitions_are_independent(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    e = event("click", "u1", "i1")
    now = time.time()
    assert apply(s, records([e], partition=0, first_offset=0), now).new == 1
    # the same event again, as a new record (another offset, another partition): the window catches it
    assert apply(s, records([e], partition=1, first_offset=0), now + 10).duplicates == 1
    # partition 1's watermark is its own: its offset 1 is new
    assert apply(s, records([event("click", "u2", "i1")], partition=1, first_offset=1), now + 11).new == 1
    assert r.zscore(k.pop_global, "i1") == 2 * s.event_strengths["click"]
    # two window buckets later the id is forgotten: the window is short by design
    later = now + 2 * s.event_id_window_s + 1
    assert apply(s, records([e], partition=2, first_offset=0), later).new == 1


def test_impressions_stay_out_of_the_event_id_window_and_their_replays_are_caught_by_the_watermark(
        s: Settings) -> None:
    r = redis.Redis.from_url(s.redis_url)
    imps = [event("impression", f"u{j}", "i1", strategy="hybrid") for j in range(5)]
    assert apply(s, records(imps)).new == 5
    # the bulk of the traffic costs no window entry: the API derives their ids, clients never re-send them
    assert not list(r.scan_iter(f"{s.redis_prefix}eids:*"))
    # a replay of the same records is still counted once
    again = apply(s, records(imps))
    assert (again.new, again.duplicates) == (0, 5)


def test_legacy_dedupe_markers_are_honoured_on_a_partitions_first_batch(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    evs = [event("view", "u1", f"i{j}") for j in range(4)]
    # an old worker applied the first two and left its markers (sr:dedupe:{event_id})
    for e in evs[:2]:
        r.set(k.dedupe(e["event_id"]), "1", ex=3600)
    got = apply(s, records(evs))
    assert (got.new, got.duplicates) == (2, 2)


def test_per_user_keys_carry_the_inactivity_ttl(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    now = time.time()
    apply(s, records([event("impression", "u1", "i1", now, strategy="hybrid"),
                      event("view", "u1", "i1", now + 1), event("click", "u1", "i2", now + 2)]), now)
    for key in (k.seen("u1"), k.recent("u1"), k.user_counts("u1"), k.user_stats("u1")):
        assert 0 < r.ttl(key) <= s.user_state_ttl_s, key
    # the session lives in a bucket of one gap, which expires after two
    bucket = k.sessions_bucket(int(now // s.session_gap_s))
    assert 0 < r.ttl(bucket) <= 2 * s.session_gap_s + 60
    assert r.hget(bucket, "u1").startswith(b"i2|")
    # renewed once a day, and on creation: a key created later the same day gets the TTL too
    r.persist(k.seen("u1"))
    apply(s, records([event("click", "u2", "i3", now + 3, strategy="hybrid")], first_offset=3), now + 3)
    assert r.ttl(k.user_stats("u2")) > 0 and r.ttl(k.seen("u2")) > 0
    apply(s, records([event("view", "u1", "i4", now + 4)], first_offset=4), now + 4)
    assert r.ttl(k.seen("u1")) == -1  # same day, key not new: no EXPIRE spent on it
    apply(s, records([event("view", "u1", "i5", now + 86400)], first_offset=5), now + 86400)
    assert 0 < r.ttl(k.seen("u1")) <= s.user_state_ttl_s  # the next day's first batch renews it


def test_events_of_a_forgotten_user_dated_before_the_forget_are_dropped(s: Settings) -> None:
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    now = time.time()
    r.set(k.forgotten(Keys.user_digest("gone")), str(now), ex=3600)
    r.set(k.forgotten_any, "1", ex=3600)
    got = apply(s, records([event("view", "gone", "i1", now - 5), event("view", "kept", "i1", now - 5),
                            event("view", "gone", "i2", now + 5)]), now + 6)
    assert (got.new, got.forgotten) == (2, 1)
    assert r.smembers(k.seen("gone")) == {b"i2"}  # a new event after the forget starts afresh
    assert r.zscore(k.pop_global, "i1") == 1


def test_a_restarted_log_below_the_watermark_resets_it_instead_of_dropping_new_events(services, tmp_path) -> None:  # noqa: ANN001
    # Redis kept a watermark from an older log of the topic (a recreated topic, or an in-memory
    # broker restarted while Redis kept its state); the new log starts again at offset 0
    from tests.integration.support import Worker, produce_events, stream_settings, wait_until

    s = stream_settings(services, tmp_path)
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    r.hset(k.watermark(s.topic(topics.INTERACTIONS)), mapping={str(p): 1_000_000 for p in range(s.topic_partitions)})
    w = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        produce_events(s, [event("view", f"ru{j}", "ri") for j in range(40)])
        wait_until(lambda: r.zscore(k.pop_global, "ri") == 40, 60)
        assert "the log restarted" in (tmp_path / "worker.log").read_text()
    finally:
        w.stop()


def test_a_restarted_log_already_past_the_old_watermark_is_told_apart_by_the_records_fingerprint(services, tmp_path) -> None:  # noqa: ANN001
    # the new log already holds more records than the old watermark when the worker looks (the
    # broker came back and producers caught up first): the offset alone cannot tell, the
    # fingerprint of the record at the watermark can
    from tests.integration.support import Worker, produce_events, stream_settings, wait_until

    s = stream_settings(services, tmp_path)
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    r.hset(k.watermark(s.topic(topics.INTERACTIONS)),
           mapping={f: v for p in range(s.topic_partitions) for f, v in ((str(p), 2), (f"{p}:fp", 12345))})
    produce_events(s, [event("view", f"fu{j}", "fi") for j in range(60)])  # ~15 a partition, past offset 2
    w = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        wait_until(lambda: r.zscore(k.pop_global, "fi") == 60, 60)
        assert "the log restarted" in (tmp_path / "worker.log").read_text()
    finally:
        w.stop()
