"""Kafka TLS / SASL settings and rediss:// URLs reach every client streamrec builds.

Checked from the source, so a client added later without them fails here: every aiokafka or
confluent-kafka client and the Faust app take their options from ``schemas/kafka_security.py``,
and every Redis client is built from ``STREAMREC_REDIS_URL`` (where ``rediss://`` means TLS)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("streams", "trainer", "inference", "infra")
# the embedded stack's own readiness probes talk to the loopback broker and Redis it started
EXEMPT = {"infra/stack.py"}
KAFKA = re.compile(r"\b(AIOKafkaProducer|AIOKafkaConsumer|AIOKafkaAdminClient)\(|\b(Producer|AdminClient)\(\{|\bfaust\.App\(")


def _calls(pattern: re.Pattern) -> list[tuple[str, str]]:
    """(file, the call's text up to its closing parenthesis) for each match."""
    out = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            if rel in EXEMPT:
                continue
            text = path.read_text()
            for m in pattern.finditer(text):
                depth, i = 0, text.index("(", m.start())
                while i < len(text):
                    depth += {"(": 1, ")": -1}.get(text[i], 0)
                    if depth == 0:
                        break
                    i += 1
                out.append((rel, text[m.start():i + 1]))
    return out


def test_every_kafka_client_takes_the_security_options():
    calls = _calls(KAFKA)
    assert len(calls) >= 10
    bare = [f"{f}: {c[:80]}" for f, c in calls
            if not re.search(r"aiokafka_options\(|confluent_options\(|broker_credentials=", c)]
    assert not bare, "Kafka clients built without the TLS/SASL settings:\n" + "\n".join(bare)


def test_every_redis_client_is_built_from_the_configured_url():
    calls = _calls(re.compile(r"\bRedis\.from_url\("))
    assert calls
    assert all("redis_url" in c for _, c in calls), [f for f, c in calls if "redis_url" not in c]


def test_faust_gets_sasl_and_tls_credentials():
    import faust

    from streams.app import faust_credentials

    assert faust_credentials(Settings()) is None
    sasl = faust_credentials(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512",
                                      kafka_sasl_username="svc", kafka_sasl_password="pw"))
    assert isinstance(sasl, faust.SASLCredentials) and sasl.username == "svc" and sasl.password == "pw"
    tls = faust_credentials(Settings(kafka_security_protocol="SSL"))
    assert isinstance(tls, faust.SSLCredentials)


def test_a_rediss_url_means_tls():
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url("rediss://:pw@cache.example:6380/0")
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"


def test_the_password_is_never_shown():
    s = Settings(kafka_sasl_password="hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in s.model_dump_json()
    with pytest.raises(ValueError):
        Settings(kafka_security_protocol="SASL_SSSL")
