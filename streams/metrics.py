"""Prometheus metrics of the worker, served on ``Settings.worker_metrics_port``."""
from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

EVENTS = Counter("streamrec_stream_events_total", "Valid interactions consumed, per type", ["type"])
DUPLICATES = Counter("streamrec_stream_duplicates_total", "Interactions skipped as already applied (replays)")
DLQ = Counter("streamrec_stream_dlq_total", "Records sent to the dead-letter topic, per source topic", ["topic"])
BATCH_SIZE = Histogram(
    "streamrec_stream_batch_size", "Records per consumed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
BATCH_SECONDS = Histogram(
    "streamrec_stream_batch_seconds", "Time to process one batch (decode, Redis, DLQ)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENT_TO_REDIS = Histogram(
    "streamrec_stream_event_to_redis_seconds", "Broker timestamp of an event to its effects written in Redis",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CONSUMER_LAG = Gauge("streamrec_stream_consumer_lag", "Records behind the high-water mark", ["topic", "partition"])
EVENT_TO_REDIS_LAG = Gauge(
    "streamrec_stream_event_to_redis_lag_seconds",
    "The newest batch: its oldest event's broker timestamp to its effects written in Redis",
)
ARRIVAL_RATE = Gauge("streamrec_stream_arrival_rate", "Interactions per second consumed (EWMA)")
BATCH_LIMIT = Gauge("streamrec_stream_batch_limit", "Largest batch the adaptive policy takes now")
REDIS_ERRORS = Counter("streamrec_stream_redis_errors_total", "Failed Redis writes (retried)")
BATCH_FAILURES = Counter("streamrec_stream_batch_failures_total",
                         "Interactions batch attempts that failed for a reason other than Redis being unavailable")
FORGOTTEN = Counter("streamrec_stream_forgotten_events_total", "Events of forgotten users dropped (dated before the forget)")
USERS_FORGOTTEN = Counter("streamrec_stream_users_forgotten_total", "Users whose state the worker deleted (tombstones)")
INVALIDATED = Counter("streamrec_stream_invalidated_users_total", "Users whose cached lists were dropped")


def serve(port: int | None, host: str = "127.0.0.1") -> int | None:
    """Start the metrics endpoint; a busy port is logged, never fatal (the worker matters more)."""
    if port is None:
        return None
    try:
        server, _ = start_http_server(port, addr=host)
    except OSError as exc:
        log.warning("metrics port %s:%s unavailable (%s); worker runs without /metrics", host, port, exc)
        return None
    bound = server.server_address[1]
    log.info("worker metrics on http://%s:%s/metrics", host, bound)
    return bound
