"""What the interactions agent does with one batch, independent of Faust:
decode → dead letters out → one atomic Redis script call (retried until it succeeds) → metrics.

The caller acknowledges the batch's offsets only after ``process`` returns, so an offset is
committed only once the batch's Redis writes (and its dead letters) are done.
"""
from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Awaitable, Callable

from schemas.errors import StoreUnavailable
from schemas.settings import Settings
from streams import metrics
from streams.batch import DeadLetter, DecodedBatch, Record, decode_interactions
from streams.config import StreamConfig
from streams.state import ApplyResult, ScriptRejected, StreamState

log = logging.getLogger(__name__)

SendDead = Callable[[list[DeadLetter]], Awaitable[None]]
LAG_SAMPLES = 64  # event-to-Redis lag observations per batch, evenly spread


@dataclass
class Prepared:
    records: list[Record]
    decoded: DecodedBatch
    config: StreamConfig
    started: float


class ConfigWatcher:
    """The current ``StreamConfig``: settings plus the Redis overrides, re-read every few seconds."""

    def __init__(self, state: StreamState, settings: Settings):
        self.state = state
        self.base = StreamConfig.from_settings(settings)
        self.refresh_s = settings.config_refresh_s
        self.current = self.base
        self._read_at = float("-inf")
        self._last_problems: list[str] = []

    async def get(self) -> StreamConfig:
        if time.monotonic() - self._read_at >= self.refresh_s:
            self._read_at = time.monotonic()
            try:
                overrides = await self.state.read_overrides()
            except StoreUnavailable as exc:
                log.warning("cannot read run-time config, keeping the last one: %s", exc)
                return self.current
            self.current, problems = self.base.with_overrides(overrides)
            if problems and problems != self._last_problems:
                log.warning("ignored run-time config fields: %s", "; ".join(problems))
            self._last_problems = problems
        return self.current


class PoisonInjected(RuntimeError):
    """Raised by the test-only fault hook (``Settings.fault_poison_marker``)."""


class InteractionProcessor:
    def __init__(self, state: StreamState, config: ConfigWatcher, send_dead: SendDead,
                 stopping: Callable[[], bool] = lambda: False, poison_marker: str | None = None):
        self.state = state
        self.config = config
        self.send_dead = send_dead
        self.stopping = stopping
        # test-only: a record containing this marker makes preparation raise, like a decoder bug would
        self.poison = poison_marker.encode() if poison_marker else None

    async def process(self, records: list[Record]) -> None:
        """Apply one batch. Returns only when it is fully applied (or the worker is stopping,
        in which case it raises ``asyncio.CancelledError`` so that nothing gets acknowledged)."""
        await self.apply(await self.prepare(records))

    async def prepare(self, records: list[Record]) -> Prepared:
        """The CPU part (validation, rows): the agent overlaps it with the previous batch's
        Redis call, so Python and Redis work on two batches at once."""
        started = time.perf_counter()
        if self.poison is not None and any(r.value and self.poison in r.value for r in records):
            raise PoisonInjected("test fault: a record carries the poison marker")
        cfg = await self.config.get()
        return Prepared(records, decode_interactions(records, cfg.strengths), cfg, started)

    async def apply(self, batch: Prepared) -> None:
        decoded = batch.decoded
        dead = list(decoded.dead)
        if decoded.rows:
            dead += await self._apply(decoded, batch.config)
        if dead:
            await self.send_dead(dead)
            for d in dead:
                metrics.DLQ.labels(d.topic).inc()
        done = time.time()
        for typ, n in decoded.types.items():
            metrics.EVENTS.labels(typ).inc(n)
        records = batch.records
        step = max(1, len(records) // LAG_SAMPLES)  # a sample per batch keeps observing cheap
        observe = metrics.EVENT_TO_REDIS.observe
        for rec in records[::step]:
            if rec.timestamp:
                observe(max(0.0, done - rec.timestamp))
        metrics.BATCH_SIZE.observe(len(records))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - batch.started)

    async def _apply(self, decoded: DecodedBatch, cfg: StreamConfig) -> list[DeadLetter]:
        try:
            result = await self._retrying(decoded.rows, positions(decoded.sources), cfg)
        except ScriptRejected as exc:
            log.error("redis rejected a batch (%s); applying its events one by one", exc)
            return await self._apply_one_by_one(decoded, cfg)
        metrics.DUPLICATES.inc(result.duplicates)
        metrics.FORGOTTEN.inc(result.forgotten)
        metrics.INVALIDATED.inc(result.invalidated_users)
        return []

    async def _retrying(self, rows: list[list], where: list[tuple[int, int]], cfg: StreamConfig) -> ApplyResult:
        """Retry while Redis is unavailable: the batch stays unacknowledged meanwhile."""
        delay = 0.1
        while True:
            try:
                return await self.state.apply_interactions(rows, cfg, positions=where)
            except StoreUnavailable as exc:
                metrics.REDIS_ERRORS.inc()
                if self.stopping():
                    raise asyncio.CancelledError("worker stopping with a batch not applied") from exc
                log.warning("redis unavailable, retrying the batch in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _apply_one_by_one(self, decoded: DecodedBatch, cfg: StreamConfig) -> list[DeadLetter]:
        """Isolate the rows Redis refuses so that one poisoned event cannot stall the stream."""
        dead = []
        for row, source in zip(decoded.rows, decoded.sources):
            try:
                await self._retrying([row], positions([source]), cfg)
            except ScriptRejected as exc:
                dead.append(DeadLetter.of(source, f"redis rejected the event: {exc}"))
        return dead


def positions(records: list[Record]) -> list[tuple[int, int, int]]:
    """(partition, offset, fingerprint) of each record: the rows' places for the script's offset
    watermark, and what tells the record at a watermark from another one at the same offset."""
    return [(r.partition, r.offset, fingerprint(r.value)) for r in records]


def fingerprint(value: bytes | None) -> int:
    """CRC-32 of a record's value (the same record fetched again has the same one).

    >>> fingerprint(b'{"a": 1}') == fingerprint(b'{"a": 1}'), fingerprint(None)
    (True, 0)
    """
    return zlib.crc32(value or b"")
