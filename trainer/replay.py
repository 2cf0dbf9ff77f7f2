"""``streamrec replay``: copy the ``interactions`` topic (and ``catalog`` / ``users``, the
metadata the feature-aware models read) into the local snapshot.

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

from pydantic import ValidationError

from schemas import topics
from schemas.catalog import CatalogItem, UserProfile
from schemas.errors import BrokerUnavailable, InvalidEvent
from schemas.events import describe, parse_event
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
    meta: dict[str, int] = field(default_factory=dict)  # catalog / users records appended

    def describe(self) -> str:
        skipped = sum(self.skipped.values())
        why = ", ".join(f"{n} {r}" for r, n in self.skipped.items())
        return (
            f"replayed {self.read} records from {self.topic}: {self.appended} appended, {skipped} skipped"
            + (f" ({why})" if why else "")
            + f"; snapshot holds {self.snapshot_rows} events"
            + "".join(f"; {n} {kind} records" for kind, n in self.meta.items() if n)
            + f"; {self.seconds:.1f} s"
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


def catalog_record(raw: bytes | None, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One catalog snapshot row from a ``catalog`` record (an item upsert).

    >>> catalog_record(b'{"item_id": "i1", "title": "Drill", "level": 2}', "c", 0, 3)["level"]
    2.0
    """
    item = _validate(CatalogItem, raw)
    return {"item_id": item.item_id, "title": item.title, "text": item.text, "category": item.category,
            "subcategory": item.subcategory, "level": None if item.level is None else float(item.level),
            "topic": topic, "partition": partition, "offset": offset}


def user_record(raw: bytes | None, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One users snapshot row from a ``users`` record (a profile upsert)."""
    user = _validate(UserProfile, raw)
    return {"user_id": user.user_id, "segment": user.segment, "profession": user.profession,
            "level": None if user.level is None else float(user.level),
            "topic": topic, "partition": partition, "offset": offset}


def _validate(model, raw: bytes | None):
    if raw is None:
        raise InvalidEvent("empty record")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise InvalidEvent("malformed JSON: not a JSON object") from None
        raise InvalidEvent(describe(exc)) from None


#: what each replayed topic becomes: (snapshot kind, record converter)
STREAMS = {
    topics.INTERACTIONS: ("interactions", to_record),
    topics.CATALOG: ("catalog", catalog_record),
    topics.USERS: ("users", user_record),
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
    metadata: bool = True,
) -> ReplayResult:
    """Run one replay step (blocking): ``interactions``, then ``catalog`` and ``users``
    (item and user metadata for the feature-aware models) unless ``metadata=False``."""
    return asyncio.run(replay_async(settings, since=since, reset=reset, progress=progress, metadata=metadata))


async def replay_async(
    settings: Settings,
    since: datetime | None = None,
    reset: bool = False,
    progress: bool = False,
    metadata: bool = True,
) -> ReplayResult:
    if not settings.kafka_bootstrap:
        raise BrokerUnavailable("no broker configured (STREAMREC_KAFKA_BOOTSTRAP); replay needs one")
    snap = Snapshot(settings.snapshot_path())
    if reset and snap.path.exists():
        log.warning("replay --reset: removing the snapshot at %s", snap.path)
        shutil.rmtree(snap.path)
    result = await replay_topic(settings, topics.INTERACTIONS, since=since, progress=progress)
    if metadata:
        for name in (topics.CATALOG, topics.USERS):
            # metadata is small and always wanted whole: --since does not apply to it
            part = await replay_topic(settings, name, progress=False, required=False)
            result.meta[STREAMS[name][0]] = part.appended
            for reason, n in part.skipped.items():
                key = f"{STREAMS[name][0]}: {reason}"
                result.skipped[key] = result.skipped.get(key, 0) + n
    log.info("%s", result.describe())
    return result


async def replay_topic(
    settings: Settings,
    topic_name: str,
    since: datetime | None = None,
    progress: bool = False,
    required: bool = True,
) -> ReplayResult:
    """Replay one topic into its snapshot (``STREAMS`` says which and how)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    kind, convert = STREAMS[topic_name]
    topic = settings.topic(topic_name)
    root = Snapshot(settings.snapshot_path())
    snap = root if kind == "interactions" else root.meta(kind)
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
            if not required:
                log.info("no topic %s: nothing to replay from it", topic)
                return result
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
                            buffer.append(convert(rec.value, topic, tp.partition, rec.offset))
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
    result.snapshot_rows = root.rows
    result.seconds = time.monotonic() - started
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
