"""An alert: a schema record on the ``alerts`` topic, kept in Redis while it matters.

Raised once per episode (kind + metric + arm) by the monitor (``trainer/alerts``), resolved
when the condition clears, acknowledged by an operator (``POST /admin/alerts/{id}/ack``).
"""
from __future__ import annotations

import time
import uuid
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class AlertKind(str, Enum):
    metric_drop = "metric_drop"  # an online metric of an arm fell, relatively and significantly
    volume_drop = "volume_drop"  # fewer events than the baseline days at this time of day
    dlq_spike = "dlq_spike"  # the share of records refused to the DLQ is above its bound
    consumer_lag = "consumer_lag"  # the stream workers are behind by more than a bound
    no_promotion = "no_promotion"  # no run promoted for N days
    canary_rollback = "canary_rollback"  # a canary's guardrail failed: it was rolled back


class Alert(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:16])
    kind: AlertKind
    metric: str  # ctr, events, dlq_rate, records_behind, days_since_promotion
    arm: str | None = None  # the strategy (arm) an online metric belongs to
    status: str = Field("open", pattern="^(open|resolved)$")
    message: str
    figures: dict[str, Any] = Field(default_factory=dict)  # recent, baseline, change, p_value, samples...
    raised_at: float = Field(default_factory=time.time)
    resolved_at: float | None = None
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None

    @property
    def episode(self) -> str:
        """What makes two findings the same alert: one open alert per episode, no storms."""
        return f"{self.kind.value}:{self.metric}:{self.arm or '-'}"
