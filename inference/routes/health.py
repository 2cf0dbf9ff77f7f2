"""``/healthz``, ``/version`` and ``/metrics``."""
from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version as pkg_version

import orjson

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from inference.deps import RuntimeDep
from inference.metrics import CONTENT_TYPE_LATEST
from schemas.api import Health, StreamLag, Version
from schemas.errors import StoreUnavailable

router = APIRouter(tags=["health"])


def _version() -> str:
    try:
        return pkg_version("streamrec")
    except PackageNotFoundError:
        return "0+unknown"


def basket_profile() -> str | None:
    try:
        from inference.basket.profiles import active
    except ImportError:  # the basket engine is optional for the rest of the API
        return None
    try:
        return active()
    except Exception:  # noqa: BLE001 - a broken profile file must not break /version
        return None


STALE_S = 15.0  # a worker reports every second: silent this long, it is stuck or gone
FORGOTTEN_S = 3600.0


def stream_lag(reports: dict, now: float) -> StreamLag:
    """The stream workers' lag from their reports (worker id -> JSON, see ``streams/lag.py``).

    >>> import orjson
    >>> r = {b"w1": orjson.dumps({"records_behind": 5000, "event_to_redis_ms": 2400.0, "events_per_s": 2000,
    ...                           "applied_at": 100.0, "reported_at": 100.0})}
    >>> stream_lag(r, now=101.0).status, stream_lag(r, now=200.0).status, stream_lag({}, 1.0).status
    ('lagging', 'stale', 'unknown')
    """
    live, stale = [], 0
    for raw in reports.values():
        try:
            rep = orjson.loads(raw)
            fresh = now - float(rep["reported_at"]) <= STALE_S
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if fresh:
            live.append(rep)
        elif now - float(rep["reported_at"]) < FORGOTTEN_S:  # older: a worker long gone, not news
            stale += 1
    behind = sum(int(r.get("records_behind", 0)) for r in live)
    e2r = max((float(r.get("event_to_redis_ms", 0.0)) for r in live), default=0.0)
    # a late batch long ago, then nothing to do, is no lag now
    e2r_now = max((float(r.get("event_to_redis_ms", 0.0)) for r in live
                   if now - float(r.get("applied_at") or 0.0) <= 5.0), default=0.0)
    rate = sum(float(r.get("events_per_s", 0.0)) for r in live)
    if not live:
        status = "stale" if stale else "unknown"
    elif behind > max(rate, 1000.0) or e2r_now > 1000.0:
        status = "lagging"
    else:
        status = "ok"
    return StreamLag(status=status, workers=len(live), records_behind=behind, event_to_redis_ms=e2r,
                     events_per_s=round(rate, 1), dlq_records=sum(int(r.get("dlq_records", 0)) for r in live))


async def read_stream_lag(rt) -> StreamLag | None:  # noqa: ANN001
    try:
        reports = await rt.store.call(lambda c: c.hgetall(rt.keys.worker_lag))
    except StoreUnavailable:
        return None
    return stream_lag(reports, time.time())


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(rt: RuntimeDep) -> JSONResponse:
    """200 only when both Redis and the broker answer (the broker check is cached ~1.5 s).

    ``stream`` shows how far behind the stream workers are; a lagging worker does not make the
    API unhealthy (it still serves), it tells the operator to add a worker (docs/streams.md)."""
    redis_ok = await rt.store.ping()
    broker_ok = await rt.broker.healthy()
    ok = redis_ok and broker_ok
    body = {"status": "ok" if ok else "unavailable", "redis": redis_ok, "broker": broker_ok}
    lag = await read_stream_lag(rt) if redis_ok else None
    if lag is not None and lag.status != "unknown":  # no worker ever reported: nothing to tell
        body["stream"] = lag.model_dump()
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/version", response_model=Version)
async def version(rt: RuntimeDep) -> Version:
    serving = rt.models.current
    return Version(version=_version(), model_run=serving.run_id if serving else None, basket_profile=basket_profile())


@router.get("/metrics", response_class=Response)
async def metrics(rt: RuntimeDep) -> Response:
    rt.metrics.local_cache_size.set(len(rt.local.entries))
    try:
        from inference.routes.alerts import count_open
        from schemas.alerts import AlertKind

        counts = await count_open(rt)
        for kind in AlertKind:
            rt.metrics.alerts_open.labels(kind=kind.value).set(counts.get(kind.value, 0))
    except StoreUnavailable:
        pass  # the gauge keeps its last value while Redis is away
    lag = await read_stream_lag(rt)
    if lag is not None:
        rt.metrics.set_stream_lag(lag.workers, lag.records_behind, lag.event_to_redis_ms / 1000.0)
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)
