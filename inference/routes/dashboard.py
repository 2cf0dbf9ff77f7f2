"""``GET /dashboard``, the operator's page, and the JSON endpoints behind it (``/api/v1/dashboard``).

The page is static (``inference/dashboard/``: HTML, JS, CSS shipped in the package, plain SVG
charts, no CDN) and polls these endpoints. Rates (events/s, requests/s, p99) are computed by the
page from the difference between two polls of the cumulative counters returned here, so the API
keeps no extra state for it. Reading the dashboard emits no impressions and counts no lists.
"""
from __future__ import annotations

import json
import time
from importlib.resources import files
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import FileResponse, HTMLResponse

from inference.deps import HomeDep, RuntimeDep, SimilarDep
from inference.home import UnknownStrategy
from inference.strategies import HomeQuery
from ranking.filters import Filters
from schemas.errors import NotFound, StoreUnavailable
from schemas.events import ID_PATTERN

router = APIRouter(tags=["dashboard"])  # the JSON: the "read" scope when producer keys are on
pages = APIRouter(tags=["dashboard"])  # the page and its assets hold no data: always open
STATIC = files("inference") / "dashboard"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}


@pages.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def page() -> HTMLResponse:
    return HTMLResponse((STATIC / "index.html").read_text())


@pages.get("/dashboard/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, detail=f"no dashboard asset {name!r}")
    return FileResponse(FsPath(str(STATIC / name)), media_type=ASSETS[name])


def _counter_total(registry, name: str, **match: str) -> float:
    total = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in match.items()):
                total += sample.value
    return total


def _latency_buckets(registry) -> list[list[float]]:
    """Cumulative [upper bound, count] of every route's latency histogram, summed over routes."""
    sums: dict[float, float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name == "streamrec_http_request_seconds_bucket":
                le = float(s.labels["le"])
                sums[le] = sums.get(le, 0.0) + s.value
    return [[le, n] for le, n in sorted(sums.items())]


@router.get("/api/v1/dashboard/overview")
async def overview(rt: RuntimeDep) -> dict[str, Any]:
    """Cumulative counters of the API, the stream workers' lag, the cache, today's events, the serving run."""
    from inference.routes.health import read_stream_lag

    registry = rt.metrics.registry
    stream = await read_stream_lag(rt)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    try:
        raw = await rt.store.call(lambda c: c.hgetall(rt.keys.stats_day(today)))
    except StoreUnavailable:
        raw = {}
    events = {k.decode()[5:]: int(v) for k, v in raw.items() if k.decode().startswith("type:")}
    serving = rt.models.current
    hits = {r: _counter_total(registry, "streamrec_recs_cache_total", result=r) for r in ("hit_local", "hit_redis", "miss")}
    return {
        "at": time.time(),
        "stream": stream.model_dump() if stream is not None else None,
        "events_today": events,
        "api": {"requests": _counter_total(registry, "streamrec_http_requests_total"),
                "errors": sum(_counter_total(registry, "streamrec_http_requests_total", status=str(code))
                              for code in (500, 502, 503, 504)),
                "latency_buckets": _latency_buckets(registry)},
        "cache": {**hits, "hit_ratio": rt.metrics.hit_ratio()},
        "model": {"run_id": serving.run_id if serving else None,
                  "policy": serving.policy.name if serving else None},
        "redis": rt.store.available,
    }


@router.get("/api/v1/dashboard/models")
async def models(rt: RuntimeDep) -> dict[str, Any]:
    """The runs with their figures, the champion, and the promotion history."""
    from trainer.artifacts import list_runs

    art = FsPath(rt.settings.artifact_dir)
    current = (art / "run_current").resolve().name if (art / "run_current").exists() else None
    runs = []
    for path in list_runs(art):
        metrics = read_json(path / "metrics.json")
        holdout = metrics.get("holdout") or {}
        runs.append({"run_id": path.name, "champion": path.name == current, "policy": metrics.get("policy"),
                     "score": metrics.get("score"), "metric": metrics.get("primary"),
                     "best_model": metrics.get("best_model"),
                     "holdout": {k: holdout.get(k) for k in ("challenger", "champion", "events") if k in holdout}})
    from trainer.promotion import HISTORY

    history = read_json(art / HISTORY)
    return {"champion": current, "runs": runs[::-1], "promotions": (history.get("log") or [])[-50:][::-1]}


def read_json(path: FsPath) -> dict:
    """A JSON file of the trainer's (a run's metrics, the promotion history), {} when absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


@router.get("/api/v1/dashboard/user/{user_id}")
async def user(rt: RuntimeDep, svc: HomeDep, user_id: Annotated[str, Path(pattern=ID_PATTERN)],
               k: Annotated[int, Query(ge=1, le=50)] = 10) -> dict[str, Any]:
    """A user's seen and recent items, and the list each strategy would serve, with reasons."""
    try:
        seen, recent = await rt.store.pipeline(lambda p: (p.smembers(rt.keys.seen(user_id)),
                                                            p.lrange(rt.keys.recent(user_id), 0, 19)))
    except StoreUnavailable:
        seen, recent = set(), []
    lists = {}
    for strategy in _strategies(rt):
        try:
            name = await svc.resolve(strategy)
            served = await svc.home(HomeQuery(user_id=user_id, k=k, strategy=name, explain=True, filters=Filters()))
        except (UnknownStrategy, NotFound) as exc:
            lists[strategy] = {"error": str(exc)}
            continue
        body = json.loads(served.entry.body("dashboard", served.cached))
        lists[strategy] = {"strategy": body.get("strategy"), "degraded": body.get("degraded"),
                           "items": [{"item_id": i["item_id"], "score": i.get("score"), "reason": i.get("reason")}
                                     for i in body.get("items", [])]}
    return {"user_id": user_id, "seen": sorted(_s(i) for i in seen)[:200], "seen_count": len(seen),
            "recent": [_s(i) for i in recent], "lists": lists}


def _strategies(rt) -> list[str]:  # noqa: ANN001
    serving = rt.models.current
    models = [m for m in (serving.models if serving else ()) if m not in ("popularity",)]
    return ["policy", "popularity", *models[:4]]


@router.get("/api/v1/dashboard/item/{item_id}")
async def item(rt: RuntimeDep, similar: SimilarDep, item_id: Annotated[str, Path(pattern=ID_PATTERN)],
               k: Annotated[int, Query(ge=1, le=50)] = 10) -> dict[str, Any]:
    """An item's co-occurrence pairs, similar items and popularity."""
    try:
        pairs, score, rank = await rt.store.pipeline(lambda p: (
            p.zrevrange(rt.keys.pairs(item_id), 0, k - 1, withscores=True),
            p.zscore(rt.keys.pop_global, item_id), p.zrevrank(rt.keys.pop_global, item_id)))
    except StoreUnavailable:
        pairs, score, rank = [], None, None
    try:
        sim = await similar.similar(item_id, k)
    except NotFound as exc:
        sim = {"error": str(exc), "items": []}
    return {"item_id": item_id,
            "popularity": {"score": score, "rank": None if rank is None else rank + 1},
            "pairs": [{"item_id": _s(i), "count": c} for i, c in pairs],
            "similar": [{"item_id": i["item_id"], "score": i.get("score")} for i in sim.get("items", [])],
            "similar_source": sim.get("source") or sim.get("strategy"), "similar_error": sim.get("error")}


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
