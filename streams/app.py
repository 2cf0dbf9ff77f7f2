"""The Faust app: topics, then agents. Each agent is a short loop over batches that calls the
plain functions of ``streams.batch`` / ``streams.processor`` / ``streams.state``.

Topics are consumed as raw bytes and validated with the ``schemas/`` models by us, not by
Faust's codecs: a record that fails must reach ``interactions.dlq`` with its reason and its
original text, and a codec error inside Faust would skip or crash instead.

The interactions topic, the one with the volume, is not a Faust agent: the service of
``streams.consumer`` reads it in whole batches from aiokafka inside this worker (Faust's
per-event machinery was most of the worker's CPU at 2,000 events/s; see docs/streams.md).

Acknowledgement: agents take batches with ``noack_take`` and ack every event only after the
batch's Redis writes (and dead letters) succeeded, so Faust commits an offset only then; the
interactions consumer commits a batch's offsets only after its script call, the same way. A crash
in between replays the batch; the per-partition offset watermark, written atomically with the
effects, makes the replay count nothing twice.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
from typing import Awaitable, Callable

import faust

from schemas import topics
from schemas.catalog import CatalogItem, ModelUpdate, UserProfile
from schemas.errors import StoreUnavailable
from schemas.events import ID_PATTERN
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options
from streams import metrics
from streams.batch import DeadLetter, Record, decode_models
from streams.consumer import InteractionsConsumer
from streams.forget import forget_user
from streams.lag import LagTracker
from streams.processor import ConfigWatcher, InteractionProcessor
from streams.state import StreamState, make_client

log = logging.getLogger(__name__)
USER_ID = re.compile(ID_PATTERN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_url(bootstrap: str) -> str:
    """``host1:9092,host2:9092`` → Faust's ``kafka://host1:9092;kafka://host2:9092``.

    >>> broker_url("a:1,b:2")
    'kafka://a:1;kafka://b:2'
    """
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


def to_records(events: list) -> list[Record]:
    return [
        Record(e.message.value, e.message.topic, e.message.partition, e.message.offset, e.message.timestamp)
        for e in events
    ]


def tombstone_user(message) -> str | None:  # noqa: ANN001 - a Faust message
    """The user a ``users`` record forgets: a tombstone (no value) keyed by a valid user id.

    >>> from types import SimpleNamespace as M
    >>> tombstone_user(M(value=None, key=b"u42")), tombstone_user(M(value=b"{}", key=b"u42"))
    ('u42', None)
    >>> tombstone_user(M(value=None, key=b"not an id!")) is None
    True
    """
    if message.value is not None or not message.key:
        return None
    user = message.key.decode("utf-8", errors="replace")
    return user if USER_ID.match(user) else None


def shorten_fetch_wait(max_wait_ms: int) -> None:
    """Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Some brokers (the embedded
    Tansu among them) hold a fetch for that whole time even when records arrive, which adds up to
    1.5 s to every event once the worker has caught up; a short wait keeps events visible in
    milliseconds and costs an idle worker a few more fetch requests."""
    from faust.transport.drivers import aiokafka as driver

    cls = driver.AIOKafkaConsumerThread
    original = getattr(cls, "_streamrec_original_create", cls._create_worker_consumer)

    def create(self, transport):  # noqa: ANN001, ANN202
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms  # read when the consumer starts its fetcher
        return consumer

    cls._streamrec_original_create = original
    cls._create_worker_consumer = create


def faust_credentials(settings: Settings):  # noqa: ANN201 - faust's credentials, or None (PLAINTEXT)
    """Kafka TLS / SASL for Faust's own clients (schemas/kafka_security.py)."""
    opts = aiokafka_options(settings)
    if not opts:
        return None
    if "sasl_mechanism" in opts:
        return faust.SASLCredentials(username=opts["sasl_plain_username"], password=opts["sasl_plain_password"],
                                     ssl_context=opts.get("ssl_context"), mechanism=opts["sasl_mechanism"])
    return faust.SSLCredentials(opts["ssl_context"])


def build_app(settings: Settings) -> faust.App:
    shorten_fetch_wait(settings.worker_fetch_max_wait_ms)
    app = faust.App(
        settings.worker_id,
        broker=broker_url(settings.kafka_bootstrap or "127.0.0.1:9092"),
        store="memory://",
        autodiscover=False,
        datadir=str(settings.data_dir / "faust" / settings.worker_id),
        # Faust binds its web server even when disabled: give it a free loopback port
        web_enabled=False,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=settings.worker_web_port or free_port(),
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        # the broker holds a join for about half the session timeout (30 s with Faust's default 60 s);
        # a short session also lets a SIGKILLed worker's partitions move on quickly
        broker_session_timeout=2 * settings.rebalance_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.rebalance_timeout_s / 3),
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        broker_max_poll_records=10_000,
        stream_buffer_maxsize=max(10_000, 4 * settings.batch_size),
        stream_wait_empty=False,
        broker_credentials=faust_credentials(settings),
    )

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(settings.topic(name), value_type=bytes, value_serializer="raw",
                         key_type=bytes, key_serializer="raw", partitions=settings.topic_partitions)

    catalog_topic = raw_topic(topics.CATALOG)
    users_topic = raw_topic(topics.USERS)
    model_updates_topic = raw_topic(topics.MODEL_UPDATES)
    dlq_topic = raw_topic(topics.INTERACTIONS_DLQ)

    shared: dict[str, object] = {}

    def state() -> StreamState:
        # created lazily, inside the worker's event loop
        if "state" not in shared:
            shared["state"] = StreamState(make_client(settings), settings)
        return shared["state"]  # type: ignore[return-value]

    async def send_dead(dead: list[DeadLetter]) -> None:
        pending = [await dlq_topic.send(key=d.topic.encode(), value=d.to_json()) for d in dead]
        await asyncio.gather(*pending)  # delivered before the batch is acknowledged

    def processor() -> InteractionProcessor:
        if "processor" not in shared:
            shared["processor"] = InteractionProcessor(
                state(), ConfigWatcher(state(), settings), send_dead, stopping=lambda: app.should_stop,
                poison_marker=settings.fault_poison_marker,
            )
        return shared["processor"]  # type: ignore[return-value]

    async def acked(stream: faust.StreamT, events: list) -> None:
        for event in events:
            await stream.ack(event)

    async def retry_store(call: Callable[[], Awaitable[object]]) -> None:
        delay = 0.1
        while True:
            try:
                await call()
                return
            except StoreUnavailable as exc:
                metrics.REDIS_ERRORS.inc()
                if app.should_stop:
                    raise asyncio.CancelledError("worker stopping") from exc
                log.warning("redis unavailable, retrying in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def apply_upserts(events: list, model: type, write: Callable) -> None:
        good, dead = decode_models(to_records(events), model)
        if good:
            await retry_store(lambda: write(good))
        if dead:
            await send_dead(dead)
            for d in dead:
                metrics.DLQ.labels(d.topic).inc()

    async def upserts(stream: faust.StreamT, model: type, write: Callable) -> None:
        async for events in stream.noack_take(500, within=0.1):
            await apply_upserts(events, model, write)
            await acked(stream, events)

    worker_name = f"{socket.gethostname()}:{os.getpid()}"

    async def report_lag(lag: LagTracker) -> None:
        try:
            await state().report_lag(worker_name, lag.snapshot(consumer.policy.rate))
        except StoreUnavailable as exc:  # visibility only: never worth stopping for
            log.debug("lag not reported: %s", exc)

    # interactions: batches straight from aiokafka, not a Faust agent (see streams/consumer.py)
    consumer = InteractionsConsumer(settings, processor, on_lag=report_lag)
    app.service(consumer)

    @app.agent(catalog_topic)
    async def catalog(stream: faust.StreamT) -> None:
        await upserts(stream, CatalogItem, lambda items: state().upsert_items(items))

    @app.agent(users_topic)
    async def users(stream: faust.StreamT) -> None:
        # a tombstone (key = user id, no value) forgets the user (streams/forget.py); profiles
        # and tombstones are applied in log order, so a profile sent after a forget counts
        async for events in stream.noack_take(500, within=0.1):
            run: list = []
            for event in events + [None]:
                user = tombstone_user(event.message) if event is not None else None
                if event is not None and user is None:
                    run.append(event)
                    continue
                if run:
                    await apply_upserts(run, UserProfile, lambda profiles: state().upsert_users(profiles))
                    run = []
                if user is not None:
                    await retry_store(lambda: forget_user(state().redis, state().keys, user, settings.forget_guard_s))
                    metrics.USERS_FORGOTTEN.inc()
                    log.info("forgot user %s", user)
            await acked(stream, events)

    @app.agent(model_updates_topic)
    async def model_updates(stream: faust.StreamT) -> None:
        async def invalidate_all(updates: list) -> None:
            version = await state().model_updated()
            log.info("model update %s: cache version now %d", updates[-1].run_id, version)

        await upserts(stream, ModelUpdate, invalidate_all)

    return app
