"""The Kafka boundary of the API: producing events and impressions, checking the broker.

aiokafka errors become ``BrokerUnavailable`` here. The producer is started lazily and
restarted after a failure, so an API started before the broker (or across a broker
restart) recovers by itself. Impressions are queued by the request and sent by a
background task in batches; a request never waits on the broker for them, and under
overload the queue sheds (counted in the metrics) instead of growing. Impressions are
built as ``schemas.events.Interaction`` events in that background flush, off the request path.

A run change made here (``POST /admin/reload``) is announced on ``model-updates`` for the
stream worker, the only writer of the cache version (``announce_model_update``).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Iterable, Iterator, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from schemas import topics
from schemas.errors import BrokerUnavailable
from schemas.catalog import ModelUpdate
from schemas.events import EventContext, EventType, Interaction
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options, confluent_options

log = logging.getLogger(__name__)


def impression_events(request_id: str, user_id: str, strategy: str, items: Iterable[str], ts: datetime,
                      propensities: Sequence[float] | None = None, experiment: bool = False) -> list[Interaction]:
    """The impression events of one served list, one per position (validated schema events).
    Each carries ``context.propensity``, the probability the serving policy put the item at that
    position: 1 for a deterministic list (``propensities`` None), else the given value. A list of
    an experiment's arm (``experiment``) has the label ``{experiment}.{arm}`` as its strategy (the
    stream counts the arm's feedback under it) and names both in ``context.experiment`` / ``arm``.

    >>> [(e.context.position, e.context.propensity) for e in impression_events("r", "u", "p", ["a", "b"],
    ...  datetime.now(timezone.utc), (1.0, 0.25))]
    [(0, 1.0), (1, 0.25)]
    >>> c = impression_events("r", "u", "home-test.treatment", ["a"], datetime.now(timezone.utc), experiment=True)[0].context
    >>> c.strategy, c.experiment, c.arm
    ('home-test.treatment', 'home-test', 'treatment')
    """
    name, _, arm = strategy.partition(".") if experiment else ("", "", "")
    items = list(items)
    probs = propensities if propensities is not None else (1.0,) * len(items)
    if len(probs) != len(items):
        raise ValueError(f"{len(items)} items but {len(probs)} propensities")
    return [
        Interaction(event_id=f"{request_id}-{pos}", type=EventType.impression, user_id=user_id, item_id=item, ts=ts,
                    context=EventContext(request_id=request_id, strategy=strategy, position=pos, propensity=p,
                                         experiment=name or None, arm=arm or None))
        for pos, (item, p) in enumerate(zip(items, probs))
    ]


class Broker:
    def __init__(self, settings: Settings, metrics=None):
        self.settings = settings
        self.metrics = metrics
        self.topic = settings.topic(topics.INTERACTIONS)
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._health: tuple[float, bool] = (0.0, False)
        self._impressions: collections.deque = collections.deque()
        self._impressions_paused_until = 0.0
        self._rdkafka = None  # confluent_kafka.Producer for impressions, made on first use
        self.flush_every_s = 0.05  # small, frequent batches: a big burst would stall the event loop
        self.max_pending = max(1, int(settings.impression_max_lists_per_s * self.flush_every_s))
        self._pending_update: ModelUpdate | None = None  # a model update the broker has not taken yet
        self._announcer: asyncio.Task | None = None
        self.announce_retry_s = 2.0

    async def _ensure(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        if not self.settings.kafka_bootstrap:
            raise BrokerUnavailable("no broker configured (STREAMREC_KAFKA_BOOTSTRAP)")
        async with self._lock:
            if self._producer is None:
                p = AIOKafkaProducer(
                    bootstrap_servers=self.settings.kafka_bootstrap, linger_ms=5,
                    request_timeout_ms=int(self.settings.broker_timeout_s * 1000),
                    metadata_max_age_ms=30000, **aiokafka_options(self.settings),
                )
                try:
                    await asyncio.wait_for(p.start(), timeout=self.settings.broker_timeout_s)
                except (KafkaError, OSError, asyncio.TimeoutError) as exc:
                    await self._stop(p)
                    raise BrokerUnavailable(f"broker at {self.settings.kafka_bootstrap} unreachable: {exc}") from exc
                self._producer = p
        return self._producer

    @staticmethod
    async def _stop(p: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(p.stop(), timeout=2)
        except Exception:  # noqa: BLE001 - stopping a producer whose broker is gone
            pass

    async def _reset(self) -> None:
        p, self._producer = self._producer, None
        if p is not None:
            await self._stop(p)

    async def send_events(self, events: list[Interaction]) -> int:
        """Produce validated events (key = user id) and wait for the broker's acks."""
        p = await self._ensure()
        try:
            futs = [await p.send(self.topic, e.to_json(), key=e.user_id.encode()) for e in events]
            await asyncio.wait_for(asyncio.gather(*futs), timeout=self.settings.broker_timeout_s)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            self._health = (time.monotonic(), False)
            await self._reset()
            raise BrokerUnavailable(f"broker did not take the events: {type(exc).__name__} {exc}") from exc
        return len(events)

    async def healthy(self, max_age_s: float = 1.5) -> bool:
        """Whether the broker answers a metadata request; cached for ``max_age_s``."""
        at, ok = self._health
        if time.monotonic() - at < max_age_s:
            return ok
        try:
            p = await self._ensure()
            await asyncio.wait_for(p.client.fetch_all_metadata(), timeout=self.settings.broker_timeout_s)
            ok = True
        except (BrokerUnavailable, KafkaError, OSError, asyncio.TimeoutError):
            ok = False
            await self._reset()
        self._health = (time.monotonic(), ok)
        return ok

    # --- model updates ------------------------------------------------------------------
    async def announce_model_update(self, update: ModelUpdate) -> bool:
        """Publish ``update`` on ``model-updates``: the stream worker, the only writer of the
        cache version, then invalidates every cached list (and every API process reloads).

        Broker down: the update is kept (the newest only) and retried every
        ``announce_retry_s`` in the background until the broker takes it; False until then.
        """
        if not self.settings.kafka_bootstrap:
            log.warning("model update %s not announced: no broker configured (no worker invalidates the "
                        "cached lists either)", update.run_id)
            return False
        self._pending_update = update
        try:
            await self._send_pending_update()
            return True
        except BrokerUnavailable as exc:
            log.warning("model update %s not announced yet (retried every %.0f s): %s", update.run_id,
                        self.announce_retry_s, exc)
            if self._announcer is None or self._announcer.done():
                self._announcer = asyncio.get_running_loop().create_task(self._retry_announce(), name="announce")
            return False

    async def _send_pending_update(self) -> None:
        update = self._pending_update
        if update is None:
            return
        p = await self._ensure()
        try:
            # one key for every update, as the trainer's promotions: one partition, in order
            await asyncio.wait_for(p.send_and_wait(self.settings.topic(topics.MODEL_UPDATES),
                                                   update.model_dump_json().encode(), key=b"run_current"),
                                   timeout=self.settings.broker_timeout_s)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            await self._reset()
            raise BrokerUnavailable(f"model-updates not written: {type(exc).__name__} {exc}") from exc
        if self._pending_update is update:
            self._pending_update = None

    async def _retry_announce(self) -> None:
        while self._pending_update is not None:
            await asyncio.sleep(self.announce_retry_s)
            try:
                await self._send_pending_update()
            except BrokerUnavailable:
                continue
            log.info("model update announced after the broker came back")

    # --- impressions ------------------------------------------------------------------
    def queue_impressions(self, request_id: str, user_id: str, strategy: str, items: tuple[str, ...],
                          propensities: tuple[float, ...] | None = None, choice_probability: float | None = None,
                          experiment: bool = False) -> None:
        """Called on the request path: O(1), never waits, sheds when the queue is full.
        ``propensities``: per position, as ``CachedList.propensities`` (None: all 1);
        ``choice_probability``: the chance the list's policy was chosen for this request (a
        bandit's arm), a factor of every position's propensity (applied in the flush);
        ``experiment``: ``strategy`` is an experiment arm's label (``impression_events``)."""
        if len(self._impressions) >= self.max_pending:
            if self.metrics is not None:
                self.metrics.impressions.labels("dropped").inc(len(items))
            return
        self._impressions.append((request_id, user_id, strategy, items, propensities, choice_probability, experiment))

    async def flush_impressions(self) -> int:
        """Hand what is queued to the impression producer; returns the number of events."""
        if not self._impressions:
            return 0
        batch = list(self._impressions)
        self._impressions.clear()
        ts = datetime.now(timezone.utc)
        if self._rdkafka is not None or self._make_rdkafka():
            return self._produce_rdkafka(batch, ts)
        return await self._produce_aiokafka(batch, ts)

    # librdkafka (confluent-kafka) takes a record in about a microsecond and batches and sends
    # from its own C threads: impressions then cost the event loop almost nothing. aiokafka,
    # pure Python, is the fallback when confluent-kafka is not installed.
    def _make_rdkafka(self) -> bool:
        if not self.settings.kafka_bootstrap:
            return False
        try:
            from confluent_kafka import Producer
        except ImportError:
            return False
        self._rdkafka = Producer({
            "bootstrap.servers": self.settings.kafka_bootstrap, "linger.ms": 50,
            "message.timeout.ms": 10_000, "queue.buffering.max.messages": 100_000,
            "logger": logging.getLogger("inference.impressions"),  # not raw stderr
            **confluent_options(self.settings),
        })
        return True

    def _delivered(self, err, _msg) -> None:
        if self.metrics is not None:
            self.metrics.impressions.labels("failed" if err is not None else "sent").inc()

    def _records(self, batch: list, ts: datetime) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every impression of the batch; a list whose events do not validate
        (an id outside the schema's pattern) is counted as failed, never sent."""
        for rid, user, strategy, items, propensities, chosen, experiment in batch:
            if chosen is not None:  # a bandit's list: its arm's chance times each position's
                propensities = tuple(chosen * p for p in (propensities or (1.0,) * len(items)))
            try:
                events = impression_events(rid, user, strategy, items, ts, propensities, experiment)
            except (ValidationError, ValueError) as exc:
                log.debug("impressions of %s not sent: %s", rid, exc)
                if self.metrics is not None:
                    self.metrics.impressions.labels("failed").inc(len(items))
                continue
            key = user.encode()
            for e in events:
                yield key, e.to_json()

    def _produce_rdkafka(self, batch: list, ts: datetime) -> int:
        p = self._rdkafka
        n = 0
        for key, raw in self._records(batch, ts):
            try:
                p.produce(self.topic, raw, key=key, on_delivery=self._delivered)
                n += 1
            except BufferError:  # the broker has been away long enough to fill the queue
                if self.metrics is not None:
                    self.metrics.impressions.labels("failed").inc()
        p.poll(0)  # delivery reports
        return n

    async def _produce_aiokafka(self, batch: list, ts: datetime) -> int:
        if time.monotonic() < self._impressions_paused_until:  # broker down: shed, retry later
            if self.metrics is not None:
                self.metrics.impressions.labels("failed").inc(sum(len(b[3]) for b in batch))
            return 0
        n = 0
        try:
            p = await self._ensure()
            futs = []
            for key, raw in self._records(batch, ts):
                futs.append(await p.send(self.topic, raw, key=key))
                n += 1
                if n % 20 == 0:
                    await asyncio.sleep(0)  # let requests run between chunks
            await asyncio.wait_for(asyncio.gather(*futs), timeout=self.settings.broker_timeout_s * 2)
        except (BrokerUnavailable, KafkaError, OSError, asyncio.TimeoutError) as exc:
            lost = sum(len(b[3]) for b in batch)
            log.warning("%d impressions not delivered: %s", lost, exc)
            self._impressions_paused_until = time.monotonic() + 2.0
            if self.metrics is not None:
                self.metrics.impressions.labels("failed").inc(lost)
            await self._reset()
            return 0
        if self.metrics is not None:
            self.metrics.impressions.labels("sent").inc(n)
        return n

    async def run_impressions(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.flush_every_s)
            except asyncio.TimeoutError:
                pass
            await self.flush_impressions()

    async def close(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            await asyncio.gather(self._announcer, return_exceptions=True)
            self._announcer = None
        if self._pending_update is not None:
            log.warning("model update %s never announced (broker away): cached lists of the old run stay valid "
                        "until their TTL, the users' next events or the next model update", self._pending_update.run_id)
        await self.flush_impressions()
        if self._rdkafka is not None:
            p, self._rdkafka = self._rdkafka, None
            await asyncio.to_thread(p.flush, 3)
            del p  # the last reference: librdkafka's threads stop with it
        await self._reset()


def new_request_id() -> str:
    return "r-" + uuid.uuid4().hex
