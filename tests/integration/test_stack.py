import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

pytestmark = pytest.mark.integration


def test_redis_answers(redis_client):
    assert redis_client.ping()


def test_broker_round_trip(settings):
    topic = settings.topic("interactions")

    async def go():
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await p.start()
        await p.send_and_wait(topic, b"hello", key=b"u1")
        await p.stop()
        c = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
        await c.start()
        try:
            got = await c.getmany(timeout_ms=5000)
        finally:
            await c.stop()
        return [m.value for msgs in got.values() for m in msgs]

    assert asyncio.run(go()) == [b"hello"]
