"""``/healthz``, ``/version`` and ``/metrics``."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as pkg_version

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from inference.deps import RuntimeDep
from inference.metrics import CONTENT_TYPE_LATEST
from schemas.api import Health, Version

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


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(rt: RuntimeDep) -> JSONResponse:
    """200 only when both Redis and the broker answer (the broker check is cached ~1.5 s)."""
    redis_ok = await rt.store.ping()
    broker_ok = await rt.broker.healthy()
    ok = redis_ok and broker_ok
    body = {"status": "ok" if ok else "unavailable", "redis": redis_ok, "broker": broker_ok}
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/version", response_model=Version)
async def version(rt: RuntimeDep) -> Version:
    serving = rt.models.current
    return Version(version=_version(), model_run=serving.run_id if serving else None, basket_profile=basket_profile())


@router.get("/metrics", response_class=Response)
async def metrics(rt: RuntimeDep) -> Response:
    rt.metrics.local_cache_size.set(len(rt.local.entries))
    return Response(rt.metrics.render(), media_type=CONTENT_TYPE_LATEST)
