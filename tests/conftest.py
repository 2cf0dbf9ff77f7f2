"""Session fixtures: a real Kafka-protocol broker and a real Redis.

testcontainers (Apache Kafka, Redis) when a Docker engine answers; otherwise the embedded
stack of ``infra/`` (Tansu + redis-server), the same one ``streamrec up`` uses.
"""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import redis

from schemas.settings import Settings


@dataclass
class Services:
    kafka_bootstrap: str
    redis_url: str
    kind: str
    embedded: object | None = None  # the EmbeddedStack, when that is what runs


def _docker_services() -> Iterator[Services] | None:
    try:
        import docker

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - no engine: DockerException and friends
        return None
    from testcontainers.kafka import KafkaContainer
    from testcontainers.redis import RedisContainer

    def gen() -> Iterator[Services]:
        with KafkaContainer().with_kraft() as kafka, RedisContainer() as rds:
            url = f"redis://{rds.get_container_host_ip()}:{rds.get_exposed_port(6379)}/0"
            yield Services(kafka.get_bootstrap_server(), url, "testcontainers")

    return gen()


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    gen = _docker_services()
    if gen is not None:
        yield from gen
        return
    from infra.stack import EmbeddedStack

    with EmbeddedStack(tmp_path_factory.mktemp("stack")) as stack:
        yield Services(stack.kafka_bootstrap, stack.redis_url, "embedded", stack)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real three-master Redis Cluster (redis-server --cluster-enabled yes, infra.stack), any node's URL."""
    from infra.stack import EmbeddedRedisCluster

    with EmbeddedRedisCluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster.redis_url


@pytest.fixture
def settings(services: Services, tmp_path: Path) -> Settings:
    """Settings for one test: its own topic prefix, consumer group and data dir; Redis flushed."""
    tag = uuid.uuid4().hex[:8]
    redis.Redis.from_url(services.redis_url).flushdb()
    s = Settings(
        kafka_bootstrap=services.kafka_bootstrap,
        redis_url=services.redis_url,
        topic_prefix=f"t{tag}.",
        worker_id=f"streamrec-test-{tag}",
        data_dir=tmp_path / "data",
        artifact_dir=tmp_path / "artifacts",
    )
    from streams.admin import ensure_topics

    asyncio.run(ensure_topics(s))
    return s


@pytest.fixture
def redis_client(services: Services) -> redis.Redis:
    return redis.Redis.from_url(services.redis_url, decode_responses=True)
