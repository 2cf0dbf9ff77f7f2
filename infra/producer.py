"""Send records to the broker in bulk, with a progress bar and a report of what was refused."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Iterable

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.errors import BrokerUnavailable, InvalidEvent
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options


@dataclass
class ImportReport:
    sent: int = 0
    rejected: list[str] = field(default_factory=list)
    by_topic: dict[str, int] = field(default_factory=dict)


async def produce_records(
    settings: Settings,
    records: Iterable[tuple[str, str, dict] | InvalidEvent],
    total: int | None = None,
    progress: bool = True,
    description: str = "producing",
) -> ImportReport:
    """Produce ``(topic, key, value)`` records; ``InvalidEvent`` items are counted as rejected."""
    report = ImportReport()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=10, max_batch_size=256 * 1024,
                                acks=1, request_timeout_ms=30000, **aiokafka_options(settings))
    try:
        await producer.start()
    except KafkaError as exc:
        raise BrokerUnavailable(f"broker at {settings.kafka_bootstrap} unreachable: {exc}") from exc
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   disable=not progress, transient=False)
    pending: list[asyncio.Future] = []
    try:
        with bar:
            task = bar.add_task(description, total=total)
            for rec in records:
                if isinstance(rec, InvalidEvent):
                    report.rejected.append(rec.reason)
                    continue
                topic, key, value = rec
                pending.append(await producer.send(settings.topic(topic), orjson.dumps(value), key=key.encode()))
                report.sent += 1
                report.by_topic[topic] = report.by_topic.get(topic, 0) + 1
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending.clear()
                    bar.update(task, completed=report.sent)
            await asyncio.gather(*pending)
            bar.update(task, completed=report.sent)
    except KafkaError as exc:
        raise BrokerUnavailable(f"producing to {settings.kafka_bootstrap} failed: {exc}") from exc
    finally:
        await producer.stop()
    return report
