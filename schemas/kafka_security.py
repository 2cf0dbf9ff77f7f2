"""Kafka TLS and SASL, from the settings, in the form each client library takes.

Every Kafka client streamrec makes — the worker's consumer, the API's producers and its
model-updates consumer, the trainer's replay, the monitor, the CLI's producer, topic admin —
passes ``aiokafka_options(settings)`` (aiokafka) or ``confluent_options(settings)``
(librdkafka) when it is built, so a secured cluster needs only these settings:

    STREAMREC_KAFKA_SECURITY_PROTOCOL   PLAINTEXT (default) | SSL | SASL_PLAINTEXT | SASL_SSL
    STREAMREC_KAFKA_SASL_MECHANISM      PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    STREAMREC_KAFKA_SASL_USERNAME / STREAMREC_KAFKA_SASL_PASSWORD
    STREAMREC_KAFKA_SSL_CAFILE          the CA bundle that signed the brokers' certificates
    STREAMREC_KAFKA_SSL_CERTFILE / STREAMREC_KAFKA_SSL_KEYFILE   a client certificate (mutual TLS)

>>> from schemas.settings import Settings
>>> aiokafka_options(Settings())
{}
>>> opts = aiokafka_options(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-256",
...                                  kafka_sasl_username="svc", kafka_sasl_password="pw"))
>>> opts["security_protocol"], opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"]
('SASL_PLAINTEXT', 'SCRAM-SHA-256', 'svc', 'pw')
>>> sorted(confluent_options(Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="svc",
...                                   kafka_sasl_password="pw")).items())
[('sasl.mechanism', 'PLAIN'), ('sasl.password', 'pw'), ('sasl.username', 'svc'), ('security.protocol', 'SASL_PLAINTEXT')]
"""
from __future__ import annotations

import ssl
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def _uses_tls(settings) -> bool:  # noqa: ANN001 - schemas.settings.Settings (it imports this module's users)
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def _uses_sasl(settings) -> bool:  # noqa: ANN001
    return settings.kafka_security_protocol.startswith("SASL_")


def ssl_context(settings) -> ssl.SSLContext:  # noqa: ANN001
    """A verifying TLS context: the configured CA (else the system's), and a client certificate if given."""
    ctx = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_ssl_certfile:
        ctx.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    return ctx


def aiokafka_options(settings) -> dict[str, Any]:  # noqa: ANN001
    """Keyword arguments for aiokafka's producer, consumer and admin client (empty for PLAINTEXT)."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if _uses_tls(settings):
        out["ssl_context"] = ssl_context(settings)
    if _uses_sasl(settings):
        out.update(sasl_mechanism=settings.kafka_sasl_mechanism, sasl_plain_username=settings.kafka_sasl_username,
                   sasl_plain_password=settings.kafka_sasl_password.get_secret_value()
                   if settings.kafka_sasl_password else None)
    return out


def confluent_options(settings) -> dict[str, Any]:  # noqa: ANN001
    """librdkafka configuration entries (confluent-kafka) for the same settings."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {}
    out: dict[str, Any] = {"security.protocol": settings.kafka_security_protocol}
    if _uses_tls(settings):
        for key, value in (("ssl.ca.location", settings.kafka_ssl_cafile),
                           ("ssl.certificate.location", settings.kafka_ssl_certfile),
                           ("ssl.key.location", settings.kafka_ssl_keyfile)):
            if value:
                out[key] = value
    if _uses_sasl(settings):
        out.update({"sasl.mechanism": settings.kafka_sasl_mechanism, "sasl.username": settings.kafka_sasl_username,
                    "sasl.password": settings.kafka_sasl_password.get_secret_value()
                    if settings.kafka_sasl_password else None})
    return {k: v for k, v in out.items() if v is not None}
