"""``streamrec replay``: copy the ``interactions`` topic into the local snapshot.

Reads every partition without a consumer group (nothing is committed on the broker: the
snapshot's manifest holds the offsets), from the stored offsets by default, from the
earliest retained record with ``reset=True``, or from the first record appended at or after
``since`` (log time, the broker's record timestamp, as ``kafka-consumer-groups
--to-datetime`` means it). It stops at the end offsets seen when it started, so one replay
is one bounded, incremental step. Records that fail validation are skipped and counted by
reason; they never stop a replay.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import topics
from schemas.errors import BrokerUnavailable, InvalidEvent
from schemas.events import parse_event
from schemas.settings import Settings
from trainer.data.snapshot import Snapshot

log = logging.getLogger(__name__)

PART_ROWS = 100_000  # records per Parquet part (bounds memory on a long replay)


@dataclass
class ReplayResult:
    topic: str
    read: int = 0
    appended: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)
    snapshot_rows: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        skipped = sum(self.skipped.values())
        why = ", ".join(f"{n} {r}" for r, n in self.skipped.items())
        return (
            f"replayed {self.read} records from {self.topic}: {self.appended} appended, {skipped} skipped"
            + (f" ({why})" if why else "")
            + f"; snapshot holds {self.snapshot_rows} events; {self.seconds:.1f} s"
        )


def to_record(raw: bytes | None, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One snapshot row from a topic record; ``InvalidEvent`` when it is not an interaction.

    >>> r = to_record(b'{"event_id": "e1", "type": "view", "user_id": "u", "item_id": "i", "ts": 5}', "t", 0, 7)
    >>> (r["user_id"], r["timestamp"], r["offset"])
    ('u', 5.0, 7)
    """
    if raw is None:
        raise InvalidEvent("empty record")
    ev = parse_event(raw)
    return {
        "event_id": ev.event_id,
        "user_id": ev.user_id,
        "item_id": ev.item_id,
        "timestamp": ev.epoch,
        "type": ev.type.value,
        "value": ev.value,
        "strategy": ev.context.strategy,
        "basket_id": ev.context.basket_id,
        "profession": ev.context.profession,
        "topic": topic,
        "partition": partition,
        "offset": offset,
    }


def reason_key(reason: str) -> str:
    """A short, bounded counter key for a validation failure.

    >>> reason_key("user_id: String should match pattern; ts: bad")
    'invalid user_id'
    >>> reason_key("malformed JSON: unexpected character")
    'malformed JSON'
    """
    head = reason.split(":", 1)[0].strip()
    if head in {"malformed JSON", "empty record"} or head.startswith("expected"):
        return head[:60]
    return f"invalid {head}"[:60]


def replay(
    settings: Settings,
    since: datetime | None = None,
    reset: bool = False,
    progress: bool = False,
    topic_name: str = topics.INTERACTIONS,
) -> ReplayResult:
    """Run one replay step (blocking)."""
    return asyncio.run(replay_async(settings, since=since, reset=reset, progress=progress, topic_name=topic_name))


async def replay_async(
    settings: Settings,
    since: datetime | None = None,
    reset: bool = False,
    progress: bool = False,
    topic_name: str = topics.INTERACTIONS,
) -> ReplayResult:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    if not settings.kafka_bootstrap:
        raise BrokerUnavailable("no broker configured (STREAMREC_KAFKA_BOOTSTRAP); replay needs one")
    topic = settings.topic(topic_name)
    snap = Snapshot(settings.snapshot_path())
    if reset and snap.path.exists():
        log.warning("replay --reset: removing the snapshot at %s", snap.path)
        shutil.rmtree(snap.path)
    result = ReplayResult(topic=topic)
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
    )
    try:
        await consumer.start()
        await consumer.topics()  # fetch metadata
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise BrokerUnavailable(f"topic {topic} does not exist on {settings.kafka_bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        stored = snap.offsets(topic)
        start = {tp: max(begin[tp], stored.get(tp.partition, 0)) for tp in tps}
        since_ms = int(since.timestamp() * 1000) if since is not None else None
        if since is not None:
            found = await _offsets_since(consumer, tps, since)
            start = {tp: max(start[tp], found.get(tp, end[tp])) for tp in tps}
        gone = {tp.partition: begin[tp] - stored[tp.partition] for tp in tps
                if tp.partition in stored and begin[tp] > stored[tp.partition]}
        if gone:
            log.warning("records no longer retained on the broker were never replayed: %s", gone)
        for tp in tps:
            consumer.seek(tp, start[tp])
        todo = {tp for tp in tps if start[tp] < end[tp]}
        total = sum(end[tp] - start[tp] for tp in todo)
        log.info("replay %s: %d records to read from %s", topic, total, {tp.partition: start[tp] for tp in tps})
        position = {tp.partition: start[tp] for tp in tps}
        buffer: list[dict[str, Any]] = []
        skipped: dict[str, int] = {}

        def flush() -> None:
            name = snap.append(buffer, topic, dict(position), skipped)
            result.appended += len(buffer)
            if name:
                result.parts.append(name)
            for r, n in skipped.items():
                result.skipped[r] = result.skipped.get(r, 0) + n
            buffer.clear()
            skipped.clear()

        with _progress(progress, total, f"replay {topic}") as advance:
            idle_since = time.monotonic()
            while todo:
                batches = await consumer.getmany(*todo, timeout_ms=500, max_records=5000)
                got = 0
                for tp, records in batches.items():
                    for rec in records:
                        if rec.offset >= end[tp]:
                            continue
                        got += 1
                        position[tp.partition] = rec.offset + 1
                        if since_ms is not None and rec.timestamp is not None and 0 <= rec.timestamp < since_ms:
                            continue  # before --since (brokers that ignore the time lookup land here)
                        try:
                            buffer.append(to_record(rec.value, topic, tp.partition, rec.offset))
                        except InvalidEvent as exc:
                            key = reason_key(exc.reason)
                            skipped[key] = skipped.get(key, 0) + 1
                    if position[tp.partition] >= end[tp]:
                        todo.discard(tp)
                # the position also moves over gaps (compaction, transaction markers)
                for tp in list(todo):
                    pos = await consumer.position(tp)
                    position[tp.partition] = max(position[tp.partition], pos)
                    if pos >= end[tp]:
                        todo.discard(tp)
                result.read += got
                advance(got)
                if got:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > max(settings.replay_idle_s, 1.0) * 5:
                    log.warning("replay: no records for a while; stopping early at %s", position)
                    break
                if len(buffer) >= PART_ROWS:
                    flush()
        flush()
        result.offsets = dict(position)
    except KafkaError as exc:
        raise BrokerUnavailable(f"replay from {settings.kafka_bootstrap} failed: {exc}") from exc
    finally:
        await consumer.stop()
    result.snapshot_rows = snap.rows
    result.seconds = time.monotonic() - started
    log.info("%s", result.describe())
    return result


async def _offsets_since(consumer, tps, since: datetime) -> dict:
    """First offset at or after ``since`` per partition (the end offset where there is none)."""
    ms = int(since.timestamp() * 1000)
    found = await consumer.offsets_for_times({tp: ms for tp in tps})
    end = await consumer.end_offsets(tps)
    return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in tps}


class _progress:
    """A rich progress bar when asked for, a no-op otherwise; yields ``advance(n)``."""

    def __init__(self, enabled: bool, total: int, label: str):
        self.enabled, self.total, self.label = enabled, total, label
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False
