"""The alerts in Redis: one hash of alerts by id, and one of the open alert of each episode."""
from __future__ import annotations

import time

from schemas.alerts import Alert
from schemas.keys import Keys
from trainer.alerts.checks import Finding


class AlertStore:
    def __init__(self, client, keys: Keys):  # noqa: ANN001 - a sync redis-py client, decode_responses
        self.client, self.keys = client, keys

    def get(self, alert_id: str) -> Alert | None:
        raw = self.client.hget(self.keys.alerts, alert_id)
        return Alert.model_validate_json(raw) if raw else None

    def open(self) -> dict[str, Alert]:
        """The open alert of each episode."""
        ids = self.client.hgetall(self.keys.alerts_open)
        if not ids:
            return {}
        raws = self.client.hmget(self.keys.alerts, list(ids.values()))
        return {ep: Alert.model_validate_json(raw) for ep, raw in zip(ids, raws) if raw}

    def raise_(self, finding: Finding, now: float) -> Alert:
        alert = Alert(kind=finding.kind, metric=finding.metric, arm=finding.arm, message=finding.message,
                      figures=finding.figures, raised_at=now)
        pipe = self.client.pipeline()
        pipe.hset(self.keys.alerts, alert.id, alert.model_dump_json())
        pipe.hset(self.keys.alerts_open, alert.episode, alert.id)
        pipe.execute()
        return alert

    def resolve(self, alert: Alert, now: float) -> Alert:
        done = alert.model_copy(update={"status": "resolved", "resolved_at": now})
        pipe = self.client.pipeline()
        pipe.hset(self.keys.alerts, done.id, done.model_dump_json())
        pipe.hdel(self.keys.alerts_open, done.episode)
        pipe.execute()
        return done

    def prune(self, keep_resolved_s: float, now: float | None = None) -> int:
        now = time.time() if now is None else now
        old = [a.id for a in map(Alert.model_validate_json, self.client.hvals(self.keys.alerts))
               if a.status == "resolved" and a.resolved_at and now - a.resolved_at > keep_resolved_s]
        if old:
            self.client.hdel(self.keys.alerts, *old)
        return len(old)
