"""``streamrec replay``: copy the ``interactions`` topic (and ``catalog`` / ``users``, the
metadata the feature-aware models read) into the local snapshot.

Reads every partition without a consumer group (nothing is committed on the broker: the
snapshot's manifest holds the offsets), from the stored offsets by default, from the
earliest retained record with ``reset=True``, or from the first record appended at or after
``since`` (log time, the broker's record timestamp, as ``kafka-consumer-groups
--to-datetime`` means it). It stops at the end offsets seen when it started, so one replay
is one bounded, incremental step. Records that fail validation are skipped and counted by
reason; they never stop a replay.

A restarted log. Stored offsets only grow, so a broker whose log of a topic started again
at 0 (the embedded broker keeps its log in memory, so every restart does this; so does a
deleted and recreated topic) would have its new records skipped silently. Before reading,
each topic is checked: a partition whose end offset is below the stored offset, a stored
partition the topic no longer has, or a topic id (``confluent_kafka`` describe, where the
broker reports one) other than the stored one, means the log restarted. That topic is then
replayed from its start, with a warning in the log and ``ReplayResult.restarted`` (printed
by ``describe``). The restarted log is the new truth for that topic: the snapshot rows
replayed from the old log are dropped, in the same manifest replace that commits the first
records of the new one (so a replay stopped half-way changes nothing). An operator who
wants to keep them (a broker restarted empty, the old history still wanted for training)
passes ``keep_restarted=True``: the old rows stay and the new log's records are appended
(an event re-sent with the same ``event_id`` still counts once).

Forgotten users. A tombstone on ``users`` (key = user id, no value: ``DELETE /api/v1/users/{id}``,
``streamrec forget``) removes the user from the snapshot: every interaction of the user dated at
or before the tombstone's time, and the user's metadata rows, leave their parts (rewritten, in
one manifest replace per snapshot), so the next training run holds no trace of the user. The
snapshot keeps only the SHA-1 of the id and the forget time (``forgotten`` in its manifest), so
that the user's events replayed later (a lagging partition) are dropped too; events dated after
the forget are a new life of that id and are kept.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from schemas import topics
from schemas.errors import BrokerUnavailable, InvalidEvent
from schemas.keys import Keys
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options, confluent_options
from trainer.data.rows import flatten
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
    #: topic → why its log counts as restarted (replayed from its start this time)
    restarted: dict[str, str] = field(default_factory=dict)
    dropped_rows: dict[str, int] = field(default_factory=dict)  # topic → old snapshot rows dropped
    #: users whose tombstone this replay read → the tombstone's time (epoch seconds)
    forgotten: dict[str, float] = field(default_factory=dict)
    forgotten_rows: int = 0  # snapshot rows dropped as a forgotten user's

    @property
    def changed(self) -> bool:
        """New interactions appended, or a log restarted (the snapshot changed)."""
        return self.appended > 0 or bool(self.restarted)

    def describe(self) -> str:
        skipped = sum(self.skipped.values())
        why = ", ".join(f"{n} {r}" for r, n in self.skipped.items())
        return (
            f"replayed {self.read} records from {self.topic}: {self.appended} appended, {skipped} skipped"
            + (f" ({why})" if why else "")
            + f"; snapshot holds {self.snapshot_rows} events"
            + "".join(f"; {n} {kind} records" for kind, n in self.meta.items() if n)
            + "".join(f"; log restarted: {t} ({r}), replayed from its start, "
                      + (f"{self.dropped_rows[t]} old rows dropped" if t in self.dropped_rows else "old rows kept")
                      for t, r in self.restarted.items())
            + (f"; {len(self.forgotten)} users forgotten, {self.forgotten_rows} of their rows dropped"
               if self.forgotten or self.forgotten_rows else "")
            + f"; {self.seconds:.1f} s"
        )

    def merge_meta(self, kind: str, part: "ReplayResult") -> None:
        self.meta[kind] = part.appended
        for reason, n in part.skipped.items():
            key = f"{kind}: {reason}"
            self.skipped[key] = self.skipped.get(key, 0) + n
        self.restarted.update(part.restarted)
        self.dropped_rows.update(part.dropped_rows)
        self.forgotten.update(part.forgotten)


def convert(name: str, raw: bytes | None, topic: str, partition: int, offset: int) -> dict[str, Any]:
    """One snapshot row from a record of topic ``name`` (unprefixed; ``topic`` is the prefixed
    name stored in the row): validated by the topic's model, flattened as ``rows`` derives it;
    ``InvalidEvent`` when it is not a valid record.

    >>> r = convert("interactions", b'{"event_id": "e1", "type": "view", "user_id": "u", "item_id": "i", "ts": 5}', "t", 0, 7)
    >>> (r["user_id"], r["timestamp"], r["offset"])
    ('u', 5.0, 7)
    >>> convert("catalog", b'{"item_id": "i1", "title": "Drill", "level": 2}', "c", 0, 3)["level"]
    2.0
    """
    row = flatten(name, topics.parse_record(name, raw))
    row.update(topic=topic, partition=partition, offset=offset)
    return row


#: the topics a replay copies, each into the snapshot kind of the same name
STREAMS = (topics.INTERACTIONS, topics.CATALOG, topics.USERS)


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
    keep_restarted: bool = False,
) -> ReplayResult:
    """Run one replay step (blocking): ``interactions``, then ``catalog`` and ``users``
    (item and user metadata for the feature-aware models) unless ``metadata=False``.
    ``keep_restarted``: keep the snapshot rows of a topic whose log restarted (module doc)."""
    return asyncio.run(replay_async(settings, since=since, reset=reset, progress=progress, metadata=metadata,
                                    keep_restarted=keep_restarted))


async def replay_async(
    settings: Settings,
    since: datetime | None = None,
    reset: bool = False,
    progress: bool = False,
    metadata: bool = True,
    keep_restarted: bool = False,
) -> ReplayResult:
    if not settings.kafka_bootstrap:
        raise BrokerUnavailable("no broker configured (STREAMREC_KAFKA_BOOTSTRAP); replay needs one")
    snap = Snapshot(settings.snapshot_path())
    if reset and snap.path.exists():
        log.warning("replay --reset: removing the snapshot at %s", snap.path)
        shutil.rmtree(snap.path)
    result = await replay_topic(settings, topics.INTERACTIONS, since=since, progress=progress,
                                keep_restarted=keep_restarted)
    if metadata:
        for name in STREAMS[1:]:
            # metadata is small and always wanted whole: --since does not apply to it
            part = await replay_topic(settings, name, progress=False, required=False, keep_restarted=keep_restarted)
            result.merge_meta(name, part)
    if result.forgotten:
        result.forgotten_rows = forget_in_snapshot(snap, result.forgotten)
    log.info("%s", result.describe())
    return result


async def replay_topic(
    settings: Settings,
    topic_name: str,
    since: datetime | None = None,
    progress: bool = False,
    required: bool = True,
    keep_restarted: bool = False,
) -> ReplayResult:
    """Replay one topic (an unprefixed name of ``STREAMS``) into the snapshot kind of that name."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    topic = settings.topic(topic_name)
    root = Snapshot(settings.snapshot_path())
    snap = root if topic_name == topics.INTERACTIONS else root.meta(topic_name)
    result = ReplayResult(topic=topic)
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        **aiokafka_options(settings),
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
        topic_id = await asyncio.to_thread(broker_topic_id, settings, topic)
        ends = {tp.partition: end[tp] for tp in tps}
        for tp in tps:  # an end below what was read: a restarted log, or a broker that understates it
            last = stored.get(tp.partition, 0) - 1
            if 0 <= ends[tp.partition] <= last and await _serves(consumer, tp, last):
                ends[tp.partition] = last + 1
        why = restarted_log(stored, ends, snap.topic_id(topic), topic_id)
        restart = False
        if why:
            # the broker's log of this topic started again: what the snapshot stored belongs to
            # the old log, so read the new one from its start (module doc: the old rows go,
            # unless keep_restarted)
            result.restarted[topic] = why
            log.warning("replay %s: the log restarted (%s); replaying it from the start, %s", topic, why,
                        "keeping the old snapshot rows" if keep_restarted else "the old snapshot rows are dropped")
            stored = {}
            if keep_restarted:
                snap.reset_offsets(topic, {}, topic_id)
            else:
                restart = True
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
        # every partition is read until an empty fetch, even one whose reported end is not past
        # the start: Tansu reports the base offset of its last batch as the end
        todo = set(tps)
        total = sum(max(0, end[tp] - start[tp]) for tp in todo)
        log.info("replay %s: %d records to read from %s", topic, total, {tp.partition: start[tp] for tp in tps})
        position = {tp.partition: start[tp] for tp in tps}
        buffer: list[dict[str, Any]] = []
        skipped: dict[str, int] = {}
        forgotten = forgotten_users(root) if topic_name == topics.INTERACTIONS else {}

        def flush() -> None:
            nonlocal restart
            if restart:
                result.dropped_rows[topic] = sum(snap._part_rows(p) for p in snap.parts_of(topic))
            name = snap.append(buffer, topic, dict(position), skipped, restart=restart, topic_id=topic_id)
            restart = False  # the old rows went with the first commit
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
                        got += 1
                        position[tp.partition] = rec.offset + 1
                        if since_ms is not None and rec.timestamp is not None and 0 <= rec.timestamp < since_ms:
                            continue  # before --since (brokers that ignore the time lookup land here)
                        if topic_name == topics.USERS and rec.value is None and rec.key:
                            # a tombstone: forget the user (module doc)
                            result.forgotten[rec.key.decode("utf-8", errors="replace")] = (rec.timestamp or 0) / 1000
                            continue
                        try:
                            row = convert(topic_name, rec.value, topic, tp.partition, rec.offset)
                        except InvalidEvent as exc:
                            key = reason_key(exc.reason)
                            skipped[key] = skipped.get(key, 0) + 1
                            continue
                        if forgotten and _is_forgotten(forgotten, row):
                            skipped["forgotten user"] = skipped.get("forgotten user", 0) + 1
                            continue
                        buffer.append(row)
                # A partition is done after an empty fetch at or past its end offset, not when a
                # record reaches it: some brokers (Tansu) report the base offset of the last batch
                # as the end, so records past ``end`` are read too. The consumer's position also
                # moves over gaps (compaction, transaction markers); it is read only after an empty
                # fetch, as it runs ahead of what getmany has handed out while records are buffered.
                if not got:
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


def forgotten_users(snap: Snapshot) -> dict[str, float]:
    """SHA-1 of each forgotten user id → the forget's time, as the snapshot's manifest keeps them."""
    return {d: float(t) for d, t in snap.manifest().get("forgotten", {}).items()}


def _is_forgotten(forgotten: dict[str, float], row: dict[str, Any]) -> bool:
    at = forgotten.get(Keys.user_digest(str(row["user_id"])))
    return at is not None and (row.get("timestamp") is None or row["timestamp"] <= at)


def forget_in_snapshot(snap: Snapshot, users: dict[str, float]) -> int:
    """Register the forgotten ``users`` (id → forget time) in the snapshot and drop their rows:
    interactions dated at or before the forget, and every users-metadata row of theirs. Parts
    that lose rows are rewritten under new names, committed in one manifest replace per
    snapshot, then the old files go. Returns the rows dropped.

    >>> import tempfile; from pathlib import Path
    >>> s = Snapshot(Path(tempfile.mkdtemp()))
    >>> rows = [convert("interactions", f'{{"event_id": "e{j}", "type": "view", "user_id": "u{j % 2}", '
    ...                 f'"item_id": "i", "ts": {j}}}'.encode(), "t", 0, j) for j in range(4)]
    >>> _ = s.append(rows, "t", {0: 4})
    >>> forget_in_snapshot(s, {"u1": 100.0}), sorted(s.frame()["user_id"]), s.rows
    (2, ['u0', 'u0'], 2)
    >>> forgotten_users(s) == {Keys.user_digest("u1"): 100.0}
    True
    """
    registry = {Keys.user_digest(u): float(t) for u, t in users.items()}
    dropped = _drop_rows(snap, registry, "timestamp", register=True)
    users_meta = snap.meta(topics.USERS)
    if users_meta.exists():
        dropped += _drop_rows(users_meta, registry, None)
    return dropped


def _drop_rows(snap: Snapshot, registry: dict[str, float], ts_column: str | None, register: bool = False) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    snap.path.mkdir(parents=True, exist_ok=True)
    man = snap.manifest()
    if register:
        known = man.setdefault("forgotten", {})
        for d, t in registry.items():
            known[d] = max(t, float(known.get(d, 0)))
    dropped, old = 0, []
    for i, part in enumerate(list(man["parts"])):
        table = pq.read_table(snap.path / part)
        keep = _kept_rows(table, registry, ts_column)
        if keep.all():
            continue
        new = snap._next_part_name(man)
        pq.write_table(table.filter(pa.array(keep)), snap.path / new)
        man["parts"][i] = new
        topics_of = man.setdefault("part_topics", {})
        if part in topics_of:
            topics_of[new] = topics_of.pop(part)
        n = int(len(keep) - keep.sum())
        man["rows"] = int(man["rows"]) - n
        dropped += n
        old.append(part)
    if dropped or register:
        snap._commit(man)
    for part in old:  # no manifest names them any more
        (snap.path / part).unlink(missing_ok=True)
    return dropped


def _kept_rows(table, registry: dict[str, float], ts_column: str | None) -> np.ndarray:
    """Which rows of a part stay: not a forgotten user's, or dated after the forget. Each
    distinct user is hashed once and the rows follow by their codes (no object per row).

    >>> import pyarrow as pa
    >>> t = pa.table({"user_id": ["a", "b", "a", None], "timestamp": [1.0, 1.0, 9.0, 1.0]})
    >>> _kept_rows(t, {Keys.user_digest("a"): 5.0}, "timestamp").tolist()
    [False, True, True, True]
    """
    import pyarrow.compute as pc

    users = pc.dictionary_encode(table.column("user_id").combine_chunks())
    forgot_at = np.array([registry.get(Keys.user_digest(str(u)), np.nan) if u is not None else np.nan
                          for u in users.dictionary.to_pylist()] + [np.nan])
    codes = users.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    at = forgot_at[codes]  # -1 (no user) reads the trailing NaN
    if ts_column is None:
        return np.isnan(at)
    when = table.column(ts_column).to_numpy()
    return ~(~np.isnan(at) & (np.isnan(when) | (when <= at)))


async def _serves(consumer, tp, offset: int) -> bool:
    """Whether the broker still serves the record at ``offset`` of ``tp``: the log did not restart
    under it, whatever end offset it reports (Tansu reports its last batch's base offset)."""
    consumer.seek(tp, offset)
    batches = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
    return any(r.offset >= offset for recs in batches.values() for r in recs)


def restarted_log(stored: dict[int, int], end: dict[int, int], stored_id: str | None,
                  topic_id: str | None) -> str | None:
    """Why the broker's log of a topic counts as restarted since the snapshot stored
    ``stored`` (next offset per partition) and ``stored_id``; None when it does not.

    >>> restarted_log({0: 10, 1: 4}, {0: 3, 1: 9}, None, None)
    'partition 0 ends at offset 3, below the stored 10'
    >>> restarted_log({0: 10}, {0: 12}, "A", "B")
    'topic id changed (A -> B)'
    >>> restarted_log({0: 5, 2: 1}, {0: 5, 1: 0}, None, None)
    'partition 2 is gone'
    >>> restarted_log({0: 10}, {0: 12}, "A", "A") is None and restarted_log({}, {0: 3}, None, "A") is None
    True
    """
    if stored_id and topic_id and stored_id != topic_id:
        return f"topic id changed ({stored_id} -> {topic_id})"
    for p, offset in sorted(stored.items()):
        if p not in end:
            if offset > 0:
                return f"partition {p} is gone"
        elif end[p] < offset:
            return f"partition {p} ends at offset {end[p]}, below the stored {offset}"
    return None


_NO_ID = {"", "AAAAAAAAAAAAAAAAAAAAAA", "00000000-0000-0000-0000-000000000000"}


def broker_topic_id(settings: Settings, topic: str, timeout_s: float = 5.0) -> str | None:
    """The broker's id of ``topic`` (Kafka 2.8+ metadata, Tansu), through ``confluent_kafka``
    (aiokafka's metadata does not carry it); None where the client or the broker has none.
    Blocking: run it in a thread."""
    try:
        from confluent_kafka import TopicCollection
        from confluent_kafka.admin import AdminClient
    except ImportError:
        return None
    try:
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "socket.timeout.ms": int(timeout_s * 1000),
                             "log_level": 0, "logger": logging.getLogger("streamrec.replay.librdkafka"),
                             **confluent_options(settings)})
        futures = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout_s)
        desc = futures[topic].result(timeout=timeout_s + 1)
    except Exception as exc:  # noqa: BLE001 - an unsupported request or a missing topic: no id
        log.debug("no topic id for %s: %s", topic, exc)
        return None
    tid = str(getattr(desc, "topic_id", "") or "")
    return None if tid in _NO_ID else tid


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
