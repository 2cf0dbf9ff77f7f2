"""Topic administration: create every streamrec topic explicitly, partitioned as configured.

A producer would auto-create a missing topic with the broker's default partition count,
which then disagrees with Faust's tables; so the worker and the launcher create them first.

``users`` is compacted: the log keeps each user's last record, and a forget is a tombstone
(key = user id, no value) that compaction keeps for ``delete.retention.ms`` (30 days here, longer
than the default 7-day retention of ``interactions``, so a replay from the start still sees the
forget of a user whose events are still in the log). A topic created before this keeps its
settings: ``kafka-configs --alter --entity-type topics --entity-name users --add-config
cleanup.policy=compact,delete.retention.ms=2592000000``.
"""
from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas import topics
from schemas.errors import BrokerUnavailable
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options


#: per-topic settings at creation (unprefixed names)
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    topics.USERS: {"cleanup.policy": "compact", "delete.retention.ms": str(30 * 24 * 3600 * 1000)},
}


async def ensure_topics(settings: Settings, names: tuple[str, ...] = topics.ALL) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000,
                                **aiokafka_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = [settings.topic(n) for n in names]
        missing = [
            NewTopic(name, num_partitions=settings.topic_partitions, replication_factor=settings.topic_replication,
                     topic_configs=TOPIC_CONFIGS.get(name[len(settings.topic_prefix):], {}))
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
