"""Topic administration: create every streamrec topic explicitly, partitioned as configured.

A producer would auto-create a missing topic with the broker's default partition count,
which then disagrees with Faust's tables; so the worker and the launcher create them first.
"""
from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas import topics
from schemas.errors import BrokerUnavailable
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options


async def ensure_topics(settings: Settings, names: tuple[str, ...] = topics.ALL) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000,
                                **aiokafka_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [settings.topic(n) for n in names]
        missing = [
            NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication)
            for name in wanted
            if name not in existing
        ]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
    except KafkaError as exc:
        raise BrokerUnavailable(f"cannot create topics on {settings.kafka_bootstrap}: {exc}") from exc
    finally:
        await admin.close()
