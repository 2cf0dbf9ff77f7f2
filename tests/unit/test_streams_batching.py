"""The adaptive batch policy, the lag tracker and the consumer's offset bookkeeping (pure logic)."""
from __future__ import annotations

from types import SimpleNamespace

import orjson
from aiokafka import TopicPartition

from streams.batching import BatchPolicy
from streams.consumer import next_offsets, to_records
from streams.lag import LagTracker


def steady(policy: BatchPolicy, rate: float, batch: int, busy_s: float, seconds: float = 5.0) -> None:
    t, step = 0.0, batch / rate
    while t < seconds:
        t += step
        policy.observe(batch, busy_s, t)


def test_a_light_load_never_waits_and_takes_what_arrived() -> None:
    p = BatchPolicy(batch_size=5000, budget_s=0.025, within_s=0.02)
    steady(p, rate=50, batch=1, busy_s=0.001)
    assert p.linger_s(1) == 0.0
    assert p.max_records >= p.min_batch


def test_a_worker_near_saturation_lets_small_batches_fill() -> None:
    p = BatchPolicy(batch_size=5000, budget_s=0.025, within_s=0.02)
    steady(p, rate=8000, batch=20, busy_s=0.0022)  # 2.2 ms of work every 2.5 ms
    wait = p.linger_s(20)
    assert 0 < wait <= p.within_s
    assert p.linger_s(int(p.rate * p.within_s)) == 0.0  # a batch already as big as the wait would make


def test_the_batch_is_capped_by_script_time_until_the_worker_falls_behind() -> None:
    p = BatchPolicy(batch_size=5000, budget_s=0.025, within_s=0.02, catchup_budget_s=0.15)
    steady(p, rate=4000, batch=100, busy_s=0.005)  # 50 us per event
    assert p.max_records == 500  # 25 ms of script time
    p.set_lag(10_000)  # 2.5 s of arrivals behind
    assert p.max_records == 3000  # 150 ms of script time: still well within the API's Redis timeout
    p.set_lag(100)
    assert p.max_records == 500


def test_catching_up_on_a_slow_redis_keeps_each_script_under_the_api_timeout() -> None:
    p = BatchPolicy(batch_size=5000, budget_s=0.025, within_s=0.02, catchup_budget_s=0.15)
    steady(p, rate=4000, batch=400, busy_s=0.04)  # 100 us per event: a loaded machine
    p.set_lag(20_000)
    assert p.max_records * p.cost_s <= 0.15 + 1e-9 and p.max_records == 1500
    fast = BatchPolicy(batch_size=5000, budget_s=0.025, within_s=0.02, catchup_budget_s=0.15)
    steady(fast, rate=20_000, batch=2000, busy_s=0.02)  # 10 us per event: the largest batches
    fast.set_lag(50_000)
    assert fast.max_records == 5000


def test_offsets_to_commit_are_one_past_each_partitions_last_record() -> None:
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    msg = lambda tp, off: SimpleNamespace(value=b"{}", topic=tp.topic, partition=tp.partition, offset=off,  # noqa: E731
                                          timestamp=1_000_000)
    batches = {tp0: [msg(tp0, 7), msg(tp0, 8)], tp1: [msg(tp1, 3)]}
    assert next_offsets(batches) == {tp0: 9, tp1: 4}
    recs = to_records(batches)
    assert [(r.partition, r.offset) for r in recs] == [(0, 7), (0, 8), (1, 3)]
    assert recs[0].timestamp == 1000.0  # seconds


def test_lag_is_per_owned_partition_and_forgets_revoked_ones() -> None:
    tp0, tp1 = TopicPartition("t", 0), TopicPartition("t", 1)
    lag = LagTracker()
    lag.applied({tp0: 10, tp1: 5}, [], now=100.0)
    lag.highwater(tp0, 30)
    lag.highwater(tp1, 5)
    assert lag.records_behind == 20
    lag.retain({tp1})
    assert lag.records_behind == 0
    snap = orjson.loads(lag.snapshot(rate=123.0, now=101.0))
    assert snap["partitions"] == [1] and snap["events_per_s"] == 123.0 and snap["reported_at"] == 101.0
