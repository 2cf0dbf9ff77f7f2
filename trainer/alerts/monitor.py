"""The monitor: gather the figures, judge them, raise and resolve alerts, tell people.

One ``run_once`` compares each arm's CTR over the recent window with its baseline, today's
event volume with the baseline days at this hour, the DLQ rate since the last look, the
workers' lag and the age of the last promotion. A finding whose episode has no open alert
raises one; an open alert whose finding is gone is resolved. Each raised or resolved alert is
written to the ``alerts`` topic (key: its episode), kept in Redis for the API, and POSTed to
``STREAMREC_ALERT_WEBHOOK_URL`` when set. So an alert is raised once per episode, never on
every look, and a recovery closes it.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

from schemas import topics
from schemas.alerts import Alert, AlertKind
from schemas.errors import ServiceUnavailable
from schemas.keys import Keys
from schemas.settings import Settings
from schemas.kafka_security import confluent_options
from trainer.alerts import checks, figures
from trainer.alerts.store import AlertStore

log = logging.getLogger(__name__)
DLQ_STATE = "monitor_dlq.json"


@dataclass
class MonitorResult:
    raised: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    open: list[Alert] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # checks that could not run, and why
    figures: dict = field(default_factory=dict)  # what was measured (kept for /api/v1/monitoring/health)
    canaries: list = field(default_factory=list)  # trainer.canary.StepResult of this look


    def describe(self) -> str:
        lines = [f"raised: {a.kind.value} {a.metric} {a.arm or ''} — {a.message}" for a in self.raised]
        lines += [f"resolved: {a.kind.value} {a.metric} {a.arm or ''}" for a in self.resolved]
        lines += [f"skipped: {s}" for s in self.skipped]
        lines += [f"canary {c.experiment}: {c.done or c.verdict.action} — {c.verdict.reason}" for c in self.canaries]
        lines.append(f"{len(self.open)} alert(s) open")
        return "\n".join(lines)


class Monitor:
    def __init__(self, settings: Settings, redis_client=None, clock=time.time, check_dlq: bool = True):  # noqa: ANN001
        from trainer.redis_client import sync_client

        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self.client = redis_client or sync_client(settings, socket_timeout=5, decode_responses=True)
        self.store = AlertStore(self.client, self.keys)
        self.clock = clock
        self.check_dlq = check_dlq
        self._producer = None

    # --- the figures, judged -----------------------------------------------------------------
    def findings(self, result: MonitorResult) -> list[checks.Finding]:
        s, now = self.settings, self.clock()
        found: list[checks.Finding] = []
        recent, baseline = figures.days(now, s.alert_recent_days, s.alert_baseline_days)
        for arm, (r, b) in sorted(figures.arm_rates(self.client, self.keys, recent, baseline).items()):
            f = checks.rate_drop("ctr", arm, r, b, drop=s.alert_drops.get("ctr", s.alert_drop), alpha=s.alert_alpha,
                                 min_samples=s.alert_min_samples)
            found += [f] if f else []
        # feedback (docs/feedback.md): positive-feedback rate (two-proportion test) and rating mean (Welch)
        for arm, got in sorted(figures.arm_feedback(self.client, self.keys, recent, baseline).items()):
            (rp, bp), (rm, bm) = got["positive_rate"], got["rating_mean"]
            f = checks.rate_drop("positive_rate", arm, rp, bp, drop=s.alert_drops.get("positive_rate", s.alert_drop),
                                 alpha=s.alert_alpha, min_samples=s.alert_min_samples)
            g = checks.mean_drop("rating_mean", arm, rm, bm, drop=s.alert_drops.get("rating_mean", s.alert_drop),
                                 alpha=s.alert_alpha, min_samples=s.alert_min_rating_samples)
            found += [x for x in (f, g) if x]
        today, per_day = figures.event_volume(self.client, self.keys, recent[0], baseline)
        result.figures.update(events_today=today, baseline_events_per_day=round(per_day, 1))
        day_fraction = (now % 86400.0) / 86400.0
        f = checks.volume_drop(today, per_day, day_fraction, drop=s.alert_volume_drop)
        found += [f] if f else []
        behind = figures.records_behind(self.client, self.keys, now)
        result.figures["records_behind"] = behind
        if behind is not None:
            f = checks.above(AlertKind.consumer_lag, "records_behind", behind, s.alert_max_records_behind,
                             "the stream workers are behind")
            found += [f] if f else []
        age = figures.days_since_promotion(s.artifact_dir, now)
        result.figures["days_since_promotion"] = None if age is None else round(age, 3)
        if age is not None:
            f = checks.above(AlertKind.no_promotion, "days_since_promotion", round(age, 2), s.alert_no_promotion_days,
                             "days since the last promotion")
            found += [f] if f else []
        # canaries rolled back in the last day (trainer/canary.py): one alert each, open for that day
        from trainer.canary import rolled_back_recently

        for doc in rolled_back_recently(s, self.client, now):
            failed = doc["canary"]["failed"]
            found.append(checks.Finding(AlertKind.canary_rollback, failed["metric"] or "guardrail", doc["name"],
                                        f"canary {doc['name']} rolled back: {failed['reason']}",
                                        {**failed["figures"], "challenger": doc["canary"]["challenger"],
                                         "champion": doc["canary"]["champion"]}))
        if self.check_dlq and s.kafka_bootstrap:
            from trainer.data_quality import check_data

            try:
                q = check_data(s, sample=0, state_file=DLQ_STATE)
                result.figures.update(dlq_rate=round(q.dlq_rate, 4), dlq_records=q.dlq_records)
                f = checks.above(AlertKind.dlq_spike, "dlq_rate", round(q.dlq_rate, 4), s.alert_dlq_rate,
                                 f"records refused to the DLQ since the last look ({q.dlq_records})")
                found += [f] if f else []
            except ServiceUnavailable as exc:
                result.skipped.append(f"dlq_rate: {exc}")
        return found

    # --- raise, resolve, tell ------------------------------------------------------------------
    def run_once(self) -> MonitorResult:
        result = MonitorResult()
        now = self.clock()
        from trainer.canary import step as canary_step

        try:  # widen, roll back or promote the running canaries first: a rollback's alert goes out in this look
            result.canaries = canary_step(self.settings, self.client, now)
        except Exception as exc:  # noqa: BLE001 - a failed canary step is retried at the next look
            log.error("canary step failed: %s", exc)
            result.skipped.append(f"canaries: {exc}")
        found = {f.episode: f for f in self.findings(result)}
        open_ = self.store.open()
        for episode, finding in found.items():
            if episode not in open_:
                alert = self.store.raise_(finding, now)
                result.raised.append(alert)
                log.warning("alert raised: %s", alert.message)
        for episode, alert in open_.items():
            if episode not in found:
                result.resolved.append(self.store.resolve(alert, now))
                log.info("alert resolved: %s %s %s", alert.kind.value, alert.metric, alert.arm or "")
        for alert in result.raised + result.resolved:
            self._tell(alert)
        self.store.prune(self.settings.alert_keep_resolved_s, now)
        result.open = list(self.store.open().values())
        self.client.set(self.keys.monitor_last, json.dumps({"at": now, **result.figures, "skipped": result.skipped}))
        return result

    def _tell(self, alert: Alert) -> None:
        body = alert.model_dump_json().encode()
        if self.settings.kafka_bootstrap:
            try:
                self._kafka().produce(self.settings.topic(topics.ALERTS), body, key=alert.episode.encode())
                left = self._kafka().flush(5)
                if left:
                    log.warning("alert %s not confirmed by the broker in 5 s", alert.id)
            except Exception as exc:  # noqa: BLE001 - the alert stays in Redis and on the webhook
                log.warning("alert %s not written to the alerts topic: %s", alert.id, exc)
        if self.settings.alert_webhook_url:
            import httpx

            try:
                httpx.post(self.settings.alert_webhook_url, content=body, timeout=5,
                           headers={"content-type": "application/json"}).raise_for_status()
            except httpx.HTTPError as exc:
                log.warning("alert %s not delivered to the webhook: %s", alert.id, exc)

    def _kafka(self):  # noqa: ANN202
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "linger.ms": 0,
                                       **confluent_options(self.settings)})
        return self._producer


def run_forever(settings: Settings, stop, interval_s: float | None = None) -> None:  # noqa: ANN001 - threading.Event
    """``streamrec monitor``: a look every ``monitor_interval_s`` until ``stop``."""
    monitor = Monitor(settings)
    interval = settings.monitor_interval_s if interval_s is None else interval_s
    while not stop.is_set():
        try:
            result = monitor.run_once()
            if result.raised or result.resolved:
                log.info("%s", result.describe())
        except Exception as exc:  # noqa: BLE001 - a failed look is retried at the next one
            log.error("monitor look failed: %s", exc)
        stop.wait(interval)


def to_json(alerts: list[Alert]) -> str:
    return json.dumps([json.loads(a.model_dump_json()) for a in alerts], indent=2)
