"""Data quality before a retrain: is there enough new data, and is it healthy?

``streamrec check-data`` (and the first task of the Airflow DAG) asks the broker, without
consuming anything:

- **volume**: interactions appended since the snapshot's offsets (what the next replay reads);
- **DLQ rate**: records the worker refused since the last check, over all records that
  arrived in the same span (``interactions.dlq`` against ``interactions``);
- **schema**: the newest records of the topic, validated by the same event schema the worker
  uses (a producer writing straight to Kafka can bypass the API's validation).

The DLQ offsets seen are kept in ``<data_dir>/data_quality.json`` so the next check measures
the rate since this one. The embedded broker reports a partition's end as its last batch's
base offset (see ``trainer.replay``), so each end is confirmed by reading past it to an empty
fetch: only that last batch is read, not the log.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from schemas import topics
from schemas.errors import BrokerUnavailable, InvalidEvent
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options
from trainer.data.snapshot import Snapshot

STATE_FILE = "data_quality.json"


@dataclass
class DataQuality:
    new_events: int
    dlq_records: int
    dlq_rate: float
    sampled: int
    invalid: int
    problems: list[str] = field(default_factory=list)
    min_new_events: int = 1

    @property
    def invalid_rate(self) -> float:
        return self.invalid / self.sampled if self.sampled else 0.0

    @property
    def enough_new_data(self) -> bool:
        return self.new_events >= self.min_new_events

    @property
    def healthy(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        return (f"{self.new_events} new events since the snapshot (need {self.min_new_events}); "
                f"DLQ {self.dlq_records} records, rate {self.dlq_rate:.2%} since the last check; "
                f"schema: {self.invalid}/{self.sampled} of the newest records invalid"
                + "".join(f"\nproblem: {p}" for p in self.problems))

    def to_dict(self) -> dict:
        return {**asdict(self), "invalid_rate": self.invalid_rate, "healthy": self.healthy,
                "enough_new_data": self.enough_new_data}


def judge(new_events: int, dlq_records: int, sampled: int, invalid: int, *, min_new_events: int,
          max_dlq_rate: float, max_invalid_rate: float) -> DataQuality:
    """The verdict from the counts (pure, so the thresholds are tested without a broker).

    >>> q = judge(1000, 100, 200, 0, min_new_events=10, max_dlq_rate=0.05, max_invalid_rate=0.01)
    >>> round(q.dlq_rate, 4), q.healthy, q.problems
    (0.0909, False, ['DLQ rate 9.09% is above 5.00%'])
    >>> judge(5, 0, 5, 0, min_new_events=10, max_dlq_rate=0.05, max_invalid_rate=0.01).enough_new_data
    False
    """
    arrived = new_events + dlq_records
    rate = dlq_records / arrived if arrived else 0.0
    q = DataQuality(new_events, dlq_records, rate, sampled, invalid, min_new_events=min_new_events)
    if rate > max_dlq_rate:
        q.problems.append(f"DLQ rate {rate:.2%} is above {max_dlq_rate:.2%}")
    if q.invalid_rate > max_invalid_rate:
        q.problems.append(f"{q.invalid_rate:.2%} of the newest records fail the event schema "
                          f"(above {max_invalid_rate:.2%})")
    return q


def check_data(settings: Settings, *, min_new_events: int = 1, max_dlq_rate: float = 0.05,
               max_invalid_rate: float = 0.01, sample: int = 500, remember: bool = True,
               state_file: str = STATE_FILE) -> DataQuality:
    """Measure and judge; with ``remember`` the DLQ offsets seen are stored (in ``state_file``
    under the data dir: the monitor keeps its own) for the next check."""
    counts = asyncio.run(_measure(settings, sample))
    state_path = Path(settings.data_dir) / state_file
    last = json.loads(state_path.read_text()) if state_path.exists() else {}
    seen = {int(p): o for p, o in last.get("dlq_offsets", {}).items()}
    dlq_new = sum(max(0, end - seen.get(p, 0)) for p, end in counts["dlq_end"].items())
    quality = judge(counts["new_events"], dlq_new, counts["sampled"], counts["invalid"],
                    min_new_events=min_new_events, max_dlq_rate=max_dlq_rate, max_invalid_rate=max_invalid_rate)
    if remember:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_path.write_text(json.dumps({"dlq_offsets": counts["dlq_end"], "last": quality.to_dict()}))
    return quality


async def _measure(settings: Settings, sample: int) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    if not settings.kafka_bootstrap:
        raise BrokerUnavailable("no broker configured (STREAMREC_KAFKA_BOOTSTRAP); check-data needs one")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None, **aiokafka_options(settings),
                                enable_auto_commit=False, request_timeout_ms=15000)
    try:
        await consumer.start()
        await consumer.topics()
        # both topics' partitions before any assignment: an assignment narrows the metadata to it
        interactions, dlq = settings.topic(topics.INTERACTIONS), settings.topic(topics.INTERACTIONS_DLQ)
        tps = {name: [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
               for name in (interactions, dlq)}
        if not tps[interactions]:
            raise BrokerUnavailable(f"topic {interactions} does not exist on {settings.kafka_bootstrap}")
        end = await _true_ends(consumer, tps[interactions])
        stored = Snapshot(settings.snapshot_path()).offsets(interactions)
        new_events = sum(max(0, off - stored.get(p, 0)) for p, off in end.items())
        dlq_end = await _true_ends(consumer, tps[dlq]) if tps[dlq] else {}
        sampled, invalid = await _sample(consumer, interactions, end, sample)
        return {"new_events": new_events, "dlq_end": dlq_end, "sampled": sampled, "invalid": invalid}
    except KafkaError as exc:
        raise BrokerUnavailable(f"broker {settings.kafka_bootstrap}: {exc}") from exc
    finally:
        await consumer.stop()


#: how long ``_true_ends`` reads past the reported ends: under a steady stream every fetch returns
#: records, and an unbounded read would hold the scheduler's loop (its updates and retrains) behind it
TRUE_END_READ_S = 10.0


async def _true_ends(consumer, tps, budget_s: float | None = None) -> dict[int, int]:
    """Each partition's end offset, read past what the broker reports until an empty fetch, or for
    at most ``budget_s`` while records keep arriving (they are new events either way)."""
    reported = await consumer.end_offsets(tps)
    consumer.assign(tps)
    end = {tp.partition: reported[tp] for tp in tps}
    for tp in tps:
        consumer.seek(tp, reported[tp])
    todo = set(tps)
    deadline = time.monotonic() + (TRUE_END_READ_S if budget_s is None else budget_s)
    while todo and time.monotonic() < deadline:
        # generous: the first fetch after an assignment connects to the leader; an empty fetch ends the read
        batch = await consumer.getmany(*todo, timeout_ms=3000)
        for tp in list(todo):
            records = batch.get(tp)
            if not records:
                todo.discard(tp)
            else:
                end[tp.partition] = max(end[tp.partition], records[-1].offset + 1)
    return end


async def _sample(consumer, topic: str, end: dict[int, int], sample: int) -> tuple[int, int]:
    """Validate up to ``sample`` of the newest records, spread over the partitions."""
    from aiokafka import TopicPartition

    if sample <= 0:
        return 0, 0
    tps = [TopicPartition(topic, p) for p in end]
    begin = await consumer.beginning_offsets(tps)
    per_partition = max(1, sample // max(1, len(tps)))
    starts = {tp: max(begin[tp], end[tp.partition] - per_partition) for tp in tps}
    want = {tp: end[tp.partition] - starts[tp] for tp in tps if end[tp.partition] > starts[tp]}
    if not want:
        return 0, 0
    # only partitions with a position: one without would make the fetcher look its offset up
    consumer.assign(list(want))
    for tp in want:
        consumer.seek(tp, starts[tp])
    sampled = invalid = 0
    while want:
        batch = await consumer.getmany(*want, timeout_ms=3000)
        if not batch:
            break  # an understated end: what was there has been read
        for tp, records in batch.items():
            for rec in records[: want.get(tp, 0)]:
                sampled += 1
                try:
                    topics.parse_record(topics.INTERACTIONS, rec.value)
                except InvalidEvent:
                    invalid += 1
            want[tp] = want.get(tp, 0) - len(records)
            if want[tp] <= 0:
                want.pop(tp, None)
    return sampled, invalid
