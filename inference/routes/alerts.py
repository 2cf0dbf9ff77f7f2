"""``/api/v1/alerts`` (the monitor's alerts, ``trainer/alerts``) and ``POST /admin/alerts/{id}/ack``."""
from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from inference.deps import AdminDep, RuntimeDep
from schemas.alerts import Alert
from schemas.errors import StoreUnavailable

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])
admin = APIRouter(prefix="/admin/alerts", tags=["admin"], dependencies=[AdminDep],
                  responses={401: {"description": "missing or wrong X-Admin-Key"}})
ALERT_ID = r"^[0-9a-f]{1,32}$"


async def all_alerts(rt) -> list[Alert]:  # noqa: ANN001
    try:
        raws = await rt.store.call(lambda c: c.hvals(rt.keys.alerts))
    except StoreUnavailable as exc:
        raise HTTPException(503, detail=f"alerts are kept in Redis, which does not answer: {exc}",
                            headers={"Retry-After": "5"}) from None
    return [Alert.model_validate_json(r) for r in raws]


@router.get("")
async def list_alerts(rt: RuntimeDep, status: Annotated[Literal["open", "resolved", "all"], Query()] = "open") -> dict:
    """Alerts, newest first: open (acknowledged or not), resolved (kept a week), or all."""
    alerts = [a for a in await all_alerts(rt) if status == "all" or a.status == status]
    alerts.sort(key=lambda a: a.raised_at, reverse=True)
    return {"status": status, "count": len(alerts), "alerts": [a.model_dump(mode="json") for a in alerts]}


@admin.post("/{alert_id}/ack")
async def ack(rt: RuntimeDep, alert_id: Annotated[str, Path(pattern=ALERT_ID)]) -> dict:
    """Acknowledge an alert: someone is on it. It stays open until the monitor sees the metric recover."""
    raw = await rt.store.call(lambda c: c.hget(rt.keys.alerts, alert_id))
    if raw is None:
        raise HTTPException(404, detail=f"no alert {alert_id!r}")
    alert = Alert.model_validate_json(raw)
    if alert.acknowledged_at is None:
        alert = alert.model_copy(update={"acknowledged_at": time.time(), "acknowledged_by": "admin"})
        await rt.store.call(lambda c: c.hset(rt.keys.alerts, alert.id, alert.model_dump_json()))
    return alert.model_dump(mode="json")


async def count_open(rt) -> dict[str, int]:  # noqa: ANN001
    """Open alerts per kind (the ``streamrec_alerts_open`` gauge)."""
    episodes = await rt.store.call(lambda c: c.hkeys(rt.keys.alerts_open))
    out: dict[str, int] = {}
    for ep in episodes:
        kind = (ep.decode() if isinstance(ep, bytes) else ep).split(":", 1)[0]
        out[kind] = out.get(kind, 0) + 1
    return out
