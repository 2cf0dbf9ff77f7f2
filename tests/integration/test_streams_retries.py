"""A batch that fails for a reason other than Redis being unavailable: retried a bounded number of
times, then its failing record goes to the DLQ with the reason and the offsets move on; the
worker stays alive. Real broker, real Redis, the real worker process; the failure is injected
by the test-only hook ``STREAMREC_FAULT_POISON_MARKER`` (a record containing the marker makes
the batch's preparation raise, as a decoder bug would)."""
from __future__ import annotations

import pytest
import redis

from schemas.keys import Keys
from tests.integration.support import Worker, event, produce_events, read_dlq, stream_settings, wait_until

pytestmark = pytest.mark.integration

MARKER = "POISON-7f3a"


class FaultyWorker(Worker):
    FIELDS = Worker.FIELDS + ("fault_poison_marker", "batch_max_attempts", "batch_retry_delay_s")


def popsum(r: redis.Redis, k: Keys) -> float:
    return sum(v for _, v in r.zrange(k.pop_global, 0, -1, withscores=True))


def test_a_poison_record_reaches_the_dlq_after_bounded_retries_and_later_offsets_move_on(services, tmp_path) -> None:  # noqa: ANN001
    s = stream_settings(services, tmp_path, fault_poison_marker=MARKER, batch_max_attempts=3,
                        batch_retry_delay_s=0.2, topic_partitions=1)
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    w = FaultyWorker(s, tmp_path / "worker.log").start().ready()
    try:
        before = [event("view", f"pu{j % 9}", f"pi{j % 4}") for j in range(200)]
        poison = event("view", "pu1", MARKER)
        after = [event("view", f"pu{j % 9}", f"pi{j % 4}") for j in range(300)]
        produce_events(s, before + [poison] + after)
        # every good event before and after the poison is applied, once
        wait_until(lambda: popsum(r, k) >= 500, 60)
        dead = read_dlq(s, 1, timeout=30)
        assert len(dead) == 1
        assert MARKER in dead[0]["raw"]
        assert "batch failed 3 times" in dead[0]["reason"] and "PoisonInjected" in dead[0]["reason"]
        # later records are not held behind it
        more = [event("view", "pu2", "pi-late") for _ in range(20)]
        produce_events(s, more)
        wait_until(lambda: r.zscore(k.pop_global, "pi-late") == 20, 30)
        assert popsum(r, k) == 520
        assert r.zscore(k.pop_global, MARKER) is None
        assert w.alive
        log = (tmp_path / "worker.log").read_text()
        assert "attempt 1 of 3" in log and "attempt 2 of 3" in log
    finally:
        w.stop()


def test_after_the_poison_is_dead_lettered_a_restarted_worker_does_not_meet_it_again(services, tmp_path) -> None:  # noqa: ANN001
    s = stream_settings(services, tmp_path, fault_poison_marker=MARKER, batch_max_attempts=2,
                        batch_retry_delay_s=0.1, topic_partitions=1)
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    w = FaultyWorker(s, tmp_path / "w1.log").start().ready()
    try:
        produce_events(s, [event("view", "qu", MARKER), event("view", "qu", "qi")])
        wait_until(lambda: r.zscore(k.pop_global, "qi") == 1, 60)
        assert len(read_dlq(s, 1, timeout=30)) == 1
    finally:
        w.stop()  # a clean stop commits
    w2 = FaultyWorker(s, tmp_path / "w2.log").start().ready()
    try:
        produce_events(s, [event("view", "qu", "qj")])
        wait_until(lambda: r.zscore(k.pop_global, "qj") == 1, 60)
        assert len(read_dlq(s, 2, timeout=3)) == 1  # the poison was not met (nor dead-lettered) again
        assert "attempt 1 of" not in (tmp_path / "w2.log").read_text()
    finally:
        w2.stop()
