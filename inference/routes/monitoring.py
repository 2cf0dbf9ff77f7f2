"""``GET /api/v1/monitoring/health``: is streamrec doing its job, not only answering?

``/healthz`` says whether this API process can serve (Redis and the broker answer). This one
says whether the whole loop is healthy: the stream keeps up, the DLQ stays quiet, a model is
serving and retraining happens, no alert is open. 200 when every check passes, 503 with the
failing checks named otherwise.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from inference.deps import RuntimeDep
from inference.routes.alerts import all_alerts
from inference.routes.dashboard import read_json
from inference.routes.health import read_stream_lag
from schemas.errors import StoreUnavailable

router = APIRouter(prefix="/api/v1/monitoring", tags=["monitoring"])



@router.get("/health")
async def health(rt: RuntimeDep) -> JSONResponse:
    s = rt.settings
    failing: list[str] = []
    redis_ok, broker_ok = await rt.store.ping(), await rt.broker.healthy()
    failing += [] if redis_ok else ["redis: not answering"]
    failing += [] if broker_ok else ["broker: not answering"]
    lag = await read_stream_lag(rt) if redis_ok else None
    # failing: no live worker, or records piling up beyond the alert's bound; a high event-to-Redis
    # figure with nothing behind is a burst already absorbed (it is reported, not failed on)
    if lag is not None and (lag.status == "stale" or lag.records_behind > s.alert_max_records_behind):
        failing.append(f"stream: {lag.status} ({lag.records_behind} records behind, "
                       f"event to Redis {lag.event_to_redis_ms:.0f} ms)")
    last_look: dict[str, Any] = {}
    alerts = []
    if redis_ok:
        try:
            raw = await rt.store.call(lambda c: c.get(rt.keys.monitor_last))
            last_look = json.loads(raw) if raw else {}
            alerts = [a for a in await all_alerts(rt) if a.status == "open"]
        except (StoreUnavailable, ValueError):
            pass
    failing += [f"alert: {a.message}" for a in alerts]
    serving = rt.models.current
    model_age_s = None
    if serving is not None:
        done = Path(serving.run.path) / "COMPLETE"
        model_age_s = round(time.time() - done.stat().st_mtime, 1) if done.exists() else None
    from trainer.promotion import HISTORY
    from trainer.scheduler import STATE

    scheduler = read_json(Path(s.data_dir) / STATE)
    history = read_json(Path(s.artifact_dir) / HISTORY).get("log", [])
    last_promotion = next((e for e in reversed(history) if e.get("action") == "promote"), None)
    body = {
        "status": "ok" if not failing else "failing",
        "failing": failing,
        "redis": redis_ok, "broker": broker_ok,
        "stream": lag.model_dump() if lag is not None else None,
        "dlq_rate": last_look.get("dlq_rate"), "monitor_last_look": last_look.get("at"),
        "model": {"run_id": serving.run_id if serving else None, "policy": serving.policy.name if serving else None,
                  "age_s": model_age_s, "validation_score": serving.run.metrics.get("score") if serving else None},
        "last_retrain": {k: scheduler.get(k) for k in ("last_run", "last_run_at", "last_message") if k in scheduler},
        # the scheduler's warm-start updates (`streamrec train --incremental`) between full retrains
        "last_update": {k: scheduler.get(k) for k in ("last_update", "last_update_at", "last_update_message",
                                                      "last_update_seconds") if k in scheduler},
        "last_promotion": last_promotion,
        "alerts": [a.model_dump(mode="json") for a in alerts],
    }
    return JSONResponse(body, status_code=200 if not failing else 503)
