"""The interactions topic, consumed in batches straight from aiokafka inside the Faust worker.

Why not a Faust agent: an agent turns every record into a Faust ``Event`` (conductor callback,
stream channel, sensors, per-event acks) and hands records from the consumer thread to the main
loop one at a time. Profiled at a steady 2,000 events/s (docs/streams.md) that per-event machinery
took most of the worker's CPU, more than validation and the Redis script together, and the
worker fell behind. Here one ``getmany`` returns a whole batch per partition, the batch is
decoded and applied in one Redis script call, and its offsets are committed after that: the same
at-least-once delivery as the agent's ``noack_take`` + acks, made exactly-once by the script's
per-partition offset watermark (written with the effects; see docs/streams.md, "Bounded state").
A batch failing for a reason other than Redis is retried ``batch_max_attempts`` times, then
isolated: its records are applied one by one and those that still fail go to the DLQ. Catalog, users and model updates stay Faust agents (a few records).

The consumer has a group of its own (``<worker_id>.interactions``): Faust's group speaks Faust's
assignor protocol, which a plain consumer cannot join. More workers with the same ``worker_id``
split the interactions partitions between them.

Batching adapts (``streams.batching.BatchPolicy``): a batch is whatever arrived while the
previous one was applied, capped from the observed arrival rate, so a light load gets batches
of a few events at once and a heavy one large batches.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

import mode
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from schemas import topics
from schemas.errors import StoreUnavailable
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options
from streams import metrics
from streams.batch import DeadLetter, Record
from streams.batching import BatchPolicy
from streams.lag import LagTracker
from streams.processor import InteractionProcessor, fingerprint

log = logging.getLogger(__name__)

# A commit per batch cost the worker a sixth of its CPU at 2,000 events/s (one broker request per
# few dozen events). Applied batches are committed together at most this often, and always on a
# rebalance and at a clean stop; a crash replays at most this much, which the offset watermark absorbs.
COMMIT_EVERY_S = 0.25


def group_id(settings: Settings) -> str:
    """The consumer group of the interactions consumers of ``settings.worker_id``.

    >>> group_id(Settings(worker_id="w"))
    'w.interactions'
    """
    return f"{settings.worker_id}.interactions"


def to_records(batches: dict[TopicPartition, list]) -> list[Record]:
    """aiokafka records → ``Record`` (timestamps in seconds), partition by partition."""
    out = []
    for msgs in batches.values():
        out += [Record(m.value, m.topic, m.partition, m.offset, m.timestamp / 1000.0) for m in msgs]
    return out


def next_offsets(batches: dict[TopicPartition, list]) -> dict[TopicPartition, int]:
    """The offsets to commit once a batch is applied: one past each partition's last record."""
    return {tp: msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}


class FailureCount:
    """How many times in a row a batch starting at the same offsets failed.

    >>> f, tp = FailureCount(), TopicPartition("t", 0)
    >>> f.failed({tp: [_Msg(5)]}), f.failed({tp: [_Msg(5), _Msg(6)]}), f.failed({tp: [_Msg(7)]})
    (1, 2, 1)
    """

    def __init__(self) -> None:
        self.counts: dict[TopicPartition, tuple[int, int]] = {}  # partition -> (first offset, failures)

    def failed(self, batches: dict[TopicPartition, list]) -> int:
        worst = 0
        for tp, msgs in batches.items():
            first = msgs[0].offset
            at, n = self.counts.get(tp, (first, 0))
            n = n + 1 if at == first else 1
            self.counts[tp] = (first, n)
            worst = max(worst, n)
        return worst

    def clear(self) -> None:
        self.counts.clear()


class _Msg:  # a record as aiokafka hands it, for the doctest
    def __init__(self, offset: int):
        self.offset = offset


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, owner: "InteractionsConsumer"):
        self.owner = owner

    async def on_partitions_revoked(self, revoked) -> None:  # noqa: ANN001
        # let the batch in progress finish and commit before another worker takes its partitions
        # (were it cut short, the other worker would replay it: harmless, the offset watermark holds)
        async with self.owner.busy:
            await self.owner.commit_now()

    async def on_partitions_assigned(self, assigned) -> None:  # noqa: ANN001
        log.info("interactions partitions assigned: %s", sorted(tp.partition for tp in assigned))
        # checked against the offset watermark before their first batch is applied, outside this
        # callback (a slow callback would hold the whole group's rebalance)
        self.owner.unchecked |= set(assigned)


class InteractionsConsumer(mode.Service):
    """Fetch → decode → one Redis script call → commit, batch after batch."""

    def __init__(self, settings: Settings, processor: Callable[[], InteractionProcessor],
                 on_lag: Callable[[LagTracker], Awaitable[None]] | None = None, **kwargs: object):
        super().__init__(**kwargs)
        self.settings = settings
        self.processor = processor
        self.on_lag = on_lag
        self.policy = BatchPolicy.from_settings(settings)
        self.lag = LagTracker()
        self.busy = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self._commit: asyncio.Future | None = None
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = 0.0
        self._lag_reported = 0.0
        self.failures = FailureCount()
        self.unchecked: set[TopicPartition] = set()  # assigned, not yet checked for a restarted log

    @property
    def topic(self) -> str:
        return self.settings.topic(topics.INTERACTIONS)

    async def on_start(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap, group_id=group_id(s), client_id=f"{s.worker_id}-interactions",
            enable_auto_commit=False, auto_offset_reset="earliest",
            # a fetch the broker holds open delays every event behind it when the load is light
            fetch_max_wait_ms=s.interactions_fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            session_timeout_ms=int(2000 * s.rebalance_timeout_s), rebalance_timeout_ms=int(1000 * s.rebalance_timeout_s),
            heartbeat_interval_ms=int(max(500, 1000 * s.rebalance_timeout_s / 3)),
            **aiokafka_options(s),
        )
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))
        await self.consumer.start()

    async def _check_while_redis_away(self) -> None:
        """The restarted-log check, waiting for Redis like the batch itself does (never skipped)."""
        delay = 0.1
        while True:
            try:
                return await self.check_restarted_logs()
            except StoreUnavailable as exc:
                if self.should_stop:
                    raise asyncio.CancelledError("worker stopping") from exc
                log.warning("redis unavailable, checking the offset watermark again in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def check_restarted_logs(self) -> None:
        """A partition whose log restarted (a recreated topic, or a broker with in-memory storage
        restarted while Redis kept its state) has new records at offsets at or below its
        watermark, which would be taken for replays. The watermark remembers the fingerprint of
        the record it points at: when the broker no longer serves that record at that offset —
        none there, or another one, even if new records already went past the old offset — the
        log restarted, and its watermark is reset. (A watermark without a fingerprint, written by
        an older worker, is judged by the log's end alone.)"""
        assert self.consumer is not None
        assigned = self.unchecked & self.consumer.assignment()
        state = self.processor().state
        marks = await state.watermarks()  # StoreUnavailable: the batch is retried, the check with it
        self.unchecked = set()
        suspects = {tp: marks[tp.partition] for tp in assigned if tp.partition in marks}
        if not suspects:
            return
        ends = await self.consumer.end_offsets(list(suspects))
        suspects = {tp: (mark, fp) for tp, (mark, fp) in suspects.items() if fp is not None or ends[tp] <= mark}
        found = await self._records_at({tp: mark for tp, (mark, _) in suspects.items()}) if suspects else {}
        for tp, (mark, fp) in suspects.items():
            if tp not in found or (fp is not None and fingerprint(found[tp]) != fp):
                log.warning("interactions partition %d no longer holds the record of its watermark (offset %d; "
                            "the log ends at %d): the log restarted; its watermark is reset",
                            tp.partition, mark, ends[tp])
                await state.reset_watermark(tp.partition)

    async def _records_at(self, marks: dict[TopicPartition, int]) -> dict[TopicPartition, bytes | None]:
        """The value of the record at the given offset, for the partitions whose broker serves one."""
        probe = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, group_id=None,
                                 enable_auto_commit=False, **aiokafka_options(self.settings))
        await probe.start()
        found: dict[TopicPartition, bytes | None] = {}
        settled: set[TopicPartition] = set()  # found, or fetched past the offset without it
        try:
            probe.assign(list(marks))
            for tp, mark in marks.items():
                probe.seek(tp, mark)
            deadline = time.monotonic() + 2.0
            while len(settled) < len(marks) and time.monotonic() < deadline:
                got = await probe.getmany(timeout_ms=500, max_records=100)
                for tp, msgs in got.items():
                    for m in msgs:
                        if m.offset == marks[tp]:
                            found[tp] = m.value
                        if m.offset >= marks[tp]:
                            settled.add(tp)
        finally:
            await probe.stop()
        return found

    async def on_stop(self) -> None:
        if self.consumer is None:
            return
        async with self.busy:  # the batch in progress is applied and committed first
            await self.commit_now()
            await self.consumer.stop()

    @mode.Service.task
    async def _consume(self) -> None:
        while not self.should_stop:
            assert self.consumer is not None
            batches = await self.consumer.getmany(timeout_ms=self.policy.poll_ms,
                                                  max_records=self.policy.max_records)
            if not batches:
                self.policy.observe(0, 0.0, time.monotonic())
                self._maybe_commit()
                await self._report_lag()
                continue
            linger = self.policy.linger_s(sum(len(m) for m in batches.values()))
            if linger > 0:  # heavy load and a small batch: let more arrive, fewer script calls
                await asyncio.sleep(linger)
                more = await self.consumer.getmany(timeout_ms=0, max_records=self.policy.max_records)
                for tp, msgs in more.items():
                    batches.setdefault(tp, []).extend(msgs)
            async with self.busy:
                try:
                    if self.unchecked:
                        await self._check_while_redis_away()
                    await self._apply(batches)
                    self.failures.clear()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a bug must not kill the stream (bounded retries)
                    await self._failed(batches, exc)

    async def _failed(self, batches: dict[TopicPartition, list], exc: Exception) -> None:
        """A batch failed for a reason other than Redis being unavailable (that one is retried
        inside the processor for as long as it lasts): fetch it again, up to
        ``batch_max_attempts`` tries; then apply its records one by one and send those that
        still fail to the DLQ with the reason, so the offsets move on and one poison record
        cannot block its partition until a restart."""
        assert self.consumer is not None
        attempt = self.failures.failed(batches)
        metrics.BATCH_FAILURES.inc()
        if attempt < self.settings.batch_max_attempts:
            log.exception("interactions batch not applied (attempt %d of %d); fetching it again in %.1f s",
                          attempt, self.settings.batch_max_attempts, self.settings.batch_retry_delay_s)
        else:
            log.error("interactions batch failed %d times (%s: %s); isolating its records, the failing ones go "
                      "to the DLQ", attempt, type(exc).__name__, exc)
            try:
                await self._isolate(batches, f"batch failed {attempt} times ({type(exc).__name__}: {exc})")
                self.failures.clear()
                return
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - e.g. the DLQ itself unreachable: nothing skipped, try again
                log.exception("could not isolate the failing batch; fetching it again")
        for tp, msgs in batches.items():
            self.consumer.seek(tp, msgs[0].offset)
        await asyncio.sleep(self.settings.batch_retry_delay_s)

    async def _isolate(self, batches: dict[TopicPartition, list], reason: str) -> None:
        """Apply a failing batch record by record; each record that fails on its own goes to the
        DLQ with the batch's failure and its own. Then the batch's offsets are committed."""
        processor = self.processor()
        dead: list[DeadLetter] = []
        for rec in to_records(batches):
            try:
                await processor.apply(await processor.prepare([rec]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - this record is the poison: dead-letter it
                dead.append(DeadLetter.of(rec, f"{reason}; alone: {type(exc).__name__}: {exc}"[:2000]))
        if dead:
            await processor.send_dead(dead)  # delivered before the offsets move on
            for d in dead:
                metrics.DLQ.labels(d.topic).inc()
        offsets = next_offsets(batches)
        self._uncommitted.update(offsets)
        self._maybe_commit()

    async def _apply(self, batches: dict[TopicPartition, list]) -> None:
        records = to_records(batches)
        started = time.monotonic()
        processor = self.processor()
        await processor.apply(await processor.prepare(records))
        self.policy.observe(len(records), time.monotonic() - started, time.monotonic())
        offsets = next_offsets(batches)
        self.lag.applied(offsets, records, time.time())
        # committed in the background, never waited for here: a broker slow to answer a commit
        # must not hold back the next batch. Offsets that pile up meanwhile go in one commit.
        self._uncommitted.update(offsets)
        self._maybe_commit()
        await self._report_lag()

    def _maybe_commit(self) -> None:
        now = time.monotonic()
        if (self._uncommitted and (self._commit is None or self._commit.done())
                and now - self._committed_at >= COMMIT_EVERY_S):
            self._committed_at = now
            self._commit = asyncio.ensure_future(self._commit_pending())

    async def _commit_pending(self) -> None:
        while self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            await self._commit_offsets(offsets)

    async def _commit_offsets(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # a rebalance took the partition: its new owner replays from the last commit, and the
            # offset watermark makes that replay count nothing twice
            log.warning("offsets %s not committed (%s); the batch will be replayed, not recounted", offsets, exc)
        except KafkaError as exc:
            log.warning("offset commit failed (%s); a later commit covers it", exc)

    async def commit_now(self) -> None:
        if self._commit is not None:
            await self._commit
            self._commit = None
        if self._uncommitted:
            await self._commit_pending()

    async def _report_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_reported < 1.0:
            return
        self._lag_reported = now
        assert self.consumer is not None
        self.lag.retain(self.consumer.assignment())
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is not None:
                self.lag.highwater(tp, high)
        self.policy.set_lag(self.lag.records_behind)
        self.lag.export(self.policy)
        if self.on_lag is not None:
            await self.on_lag(self.lag)
