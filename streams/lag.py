"""How far behind the worker is: consumer lag (records) and event-to-Redis lag (seconds).

Both go to the worker's ``/metrics`` and, every second, to a Redis hash (``Keys.worker_lag``,
one field per worker) that the API's health endpoint reads: the API and the worker are separate
processes, and an operator looking at ``/healthz`` should see a worker falling behind.

>>> from aiokafka import TopicPartition
>>> t = LagTracker()
>>> tp = TopicPartition("interactions", 0)
>>> t.applied({tp: 100}, [], now=10.0); t.highwater(tp, 250)
>>> t.records_behind
150
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import orjson

from streams import metrics
from streams.batch import Record


@dataclass
class LagTracker:
    done: dict = field(default_factory=dict)  # TopicPartition -> next offset to apply
    high: dict = field(default_factory=dict)  # TopicPartition -> high-water mark
    event_to_redis_s: float = 0.0  # the newest batch: oldest event's broker time to its effects in Redis
    applied_at: float = 0.0  # wall time of the newest applied batch

    def applied(self, offsets: dict, records: list[Record], now: float) -> None:
        self.done.update(offsets)
        stamps = [r.timestamp for r in records if r.timestamp]
        if stamps:
            self.event_to_redis_s = max(0.0, now - min(stamps))
        self.applied_at = now

    def highwater(self, tp: object, high: int) -> None:
        self.high[tp] = high

    def retain(self, assigned: set) -> None:
        """Forget partitions this worker no longer owns (a rebalance moved them)."""
        for tp in set(self.high) - set(assigned):
            del self.high[tp]
            metrics.CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        for tp in set(self.done) - set(assigned):
            del self.done[tp]

    def behind(self, tp: object) -> int | None:
        high, done = self.high.get(tp), self.done.get(tp)
        return None if high is None or done is None else max(0, high - done)

    @property
    def records_behind(self) -> int:
        return sum(b for tp in self.high if (b := self.behind(tp)) is not None)

    def export(self, policy: object = None) -> None:
        """Set the Prometheus gauges."""
        for tp in self.high:
            b = self.behind(tp)
            if b is not None:
                metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(b)
        metrics.EVENT_TO_REDIS_LAG.set(self.event_to_redis_s)
        if policy is not None:
            metrics.ARRIVAL_RATE.set(getattr(policy, "rate", 0.0))
            metrics.BATCH_LIMIT.set(getattr(policy, "max_records", 0))

    def snapshot(self, rate: float, now: float | None = None) -> bytes:
        """The JSON this worker writes to its field of ``Keys.worker_lag``."""
        return orjson.dumps({
            "records_behind": self.records_behind,
            "event_to_redis_ms": round(1000 * self.event_to_redis_s, 1),
            "events_per_s": round(rate, 1),
            "partitions": sorted(tp.partition for tp in self.high),
            "applied_at": self.applied_at,
            "dlq_records": dlq_total(),  # since this worker started: the dashboard's DLQ rate is its difference
            "reported_at": time.time() if now is None else now,
        })


def dlq_total() -> int:
    """Records this process sent to the dead-letter topic (its Prometheus counter, all topics)."""
    return int(sum(s.value for fam in metrics.DLQ.collect() for s in fam.samples if s.name.endswith("_total")))
