"""Prometheus metrics of the API, on a registry of its own (several apps can live in one
test process without clashing on the global registry).

Children with fixed labels are bound once (``hit_counter``...) because the cached path
counts every request and ``.labels(...)`` costs a dict lookup and a lock each time.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["ApiMetrics", "CONTENT_TYPE_LATEST"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("streamrec_http_requests_total", "HTTP requests", ["route", "method", "status"], registry=r)
        self.latency = Histogram("streamrec_http_request_seconds", "HTTP latency", ["route"], buckets=_BUCKETS, registry=r)
        self.cache = Counter("streamrec_recs_cache_total", "Recommendation cache lookups", ["result"], registry=r)
        self.degraded = Counter("streamrec_degraded_answers_total", "Answers served without Redis", registry=r)
        self.strategy = Counter("streamrec_strategy_total", "Lists served per strategy", ["strategy"], registry=r)
        self.impressions = Counter("streamrec_impressions_total", "Impression events", ["result"], registry=r)
        self.model_info = Info("streamrec_model", "The serving run", registry=r)
        self.model_loaded = Gauge("streamrec_model_loaded", "1 when a trained run serves", registry=r)
        self.local_cache_size = Gauge("streamrec_local_cache_entries", "In-process cached bodies", registry=r)
        self.alerts_open = Gauge("streamrec_alerts_open", "Open alerts of the monitor, per kind", ["kind"], registry=r)
        # the stream workers' lag as they report it in Redis: one scrape of the API shows both
        self.stream_workers = Gauge("streamrec_stream_workers_reporting", "Stream workers with a fresh lag report",
                                    registry=r)
        self.stream_behind = Gauge("streamrec_stream_records_behind", "Interactions not yet applied, all workers",
                                   registry=r)
        self.stream_e2r = Gauge("streamrec_stream_reported_event_to_redis_lag_seconds",
                                "Worst worker: newest batch's oldest event to its effects in Redis", registry=r)
        # bound children for the hot path
        self.hit_local = self.cache.labels("hit_local")
        self.hit_redis = self.cache.labels("hit_redis")
        self.miss = self.cache.labels("miss")
        self.home_latency = self.latency.labels("/api/v1/recommendations/home")
        self.home_ok = self.requests.labels("/api/v1/recommendations/home", "GET", "200")
        self.model_info.info({"run_id": ""})
        self.model_loaded.set(0)

    def set_model(self, run_id: str | None) -> None:
        self.model_info.info({"run_id": run_id or ""})
        self.model_loaded.set(1 if run_id else 0)

    def set_stream_lag(self, workers: int, records_behind: int, event_to_redis_s: float) -> None:
        self.stream_workers.set(workers)
        self.stream_behind.set(records_behind)
        self.stream_e2r.set(event_to_redis_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def hit_ratio(self) -> float | None:
        """Share of home lookups answered from a cache (local or Redis), None before any."""
        vals = {s.labels["result"]: s.value for m in self.cache.collect() for s in m.samples if s.name.endswith("_total")}
        total = sum(vals.values())
        return None if total == 0 else (vals.get("hit_local", 0) + vals.get("hit_redis", 0)) / total
