"""The FastAPI app: ``create_app(settings)``, and ``factory`` for ``uvicorn --factory``.

Two raw ASGI layers wrap the FastAPI app (no ``BaseHTTPMiddleware``: it costs more than a
whole cached answer):

- ``CachedHomeFastPath`` answers a plain ``GET /api/v1/recommendations/home`` whose body the
  process already holds, straight from bytes: no routing, no validation, no serialisation.
  Anything it is unsure about (unknown parameters, bandit, a miss) goes to FastAPI.
- ``MetricsLayer`` counts requests and latency per route template.
"""
from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from inference.broker import new_request_id
from inference.routes import admin, events, health, recommendations, stats
from inference.runtime import Runtime
from inference.security import require_scope
from inference.strategies import served_name
from schemas.errors import ModelNotTrained, NotFound, ServiceUnavailable, StreamrecError
from schemas.keys import RecsId, recs_variant
from schemas.settings import Settings, get_settings

log = logging.getLogger(__name__)

HOME_PATH = "/api/v1/recommendations/home"
_FAST_PARAMS = {"user_id", "k", "strategy", "explain", "exclude_seen"}
_BOOL = {"true": True, "1": True, "false": False, "0": False}
_JSON_HEADERS = [(b"content-type", b"application/json")]


class CachedHomeFastPath:
    """Serve home lists already held in-process without entering FastAPI."""

    def __init__(self, app, runtime: Runtime):
        self.app = app
        self.rt = runtime

    def _key(self, query: bytes) -> RecsId | None:
        """The in-process cache key of a request (None: FastAPI answers it)."""
        found = self._key_and_label(query)
        return None if found is None else found[0]

    def _key_and_label(self, query: bytes) -> tuple[RecsId, str | None] | None:
        """The key, and the experiment arm label its impressions count under (None outside experiments)."""
        try:
            params = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=True)
        except ValueError:
            return None
        got = dict(params)
        if len(got) != len(params) or not got.keys() <= _FAST_PARAMS or "user_id" not in got:
            return None
        k = got.get("k", "10")
        if not k.isdigit():
            return None
        strategy = got.get("strategy") or self.rt.settings.default_strategy
        if strategy == "bandit":
            return None
        explain = _BOOL.get(got.get("explain", "false").lower())
        exclude_seen = _BOOL.get(got.get("exclude_seen", "true").lower())
        if explain is None or exclude_seen is None:
            return None
        arm = self.rt.home.fast_route(got["user_id"], got.get("strategy") or None)  # experiments' arm
        if arm is None:
            return None
        served, suffix, label = arm
        # the name the route caches under (``policy`` is the serving run's policy name)
        return RecsId(got["user_id"], served or served_name(strategy, self.rt.models.current), int(k),
                      recs_variant(explain, exclude_seen) + suffix), label

    def _may_read(self, scope) -> bool:
        """With producer keys on, only a request whose key reads takes the fast path; the
        others go through the router, which answers 401/403."""
        ring = self.rt.api_keys
        if not ring.enabled:
            return True
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-api-key"), None)
        return ring.allows(key, "read")

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == HOME_PATH and scope["method"] == "GET" \
                and self._may_read(scope):
            t0 = time.perf_counter()
            found = self._key_and_label(scope["query_string"])
            key, label = found if found is not None else (None, None)
            entry = self.rt.local.get(key) if key is not None else None
            if entry is not None:
                rt = self.rt
                rt.metrics.hit_local.inc()
                rid = new_request_id()
                body = entry.body(rid, True)
                await send({"type": "http.response.start", "status": 200,
                            "headers": _JSON_HEADERS + [(b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                rt.home.served(rid, entry, label)
                rt.metrics.home_ok.inc()
                rt.metrics.home_latency.observe(time.perf_counter() - t0)
                return
        await self.app(scope, receive, send)


class MetricsLayer:
    """Requests and latency per route template (the matched endpoint's path)."""

    def __init__(self, app, runtime: Runtime):
        self.app = app
        self.metrics = runtime.metrics

    @staticmethod
    def _route(scope) -> str:
        return getattr(scope.get("route"), "path", None) or "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def send_wrapped(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapped)
        finally:
            route = self._route(scope)
            self.metrics.requests.labels(route, scope["method"], str(status["code"])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


def _validation_message(exc: RequestValidationError, max_k: int) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")) or "request"
        msg = err.get("msg", "invalid")
        if err.get("type") == "string_pattern_mismatch":
            msg = "must be 1-128 characters of letters, digits and _ . : @ -"
        elif where == "k" and err.get("type") in ("greater_than_equal", "less_than_equal"):
            msg = f"must be between 1 and {max_k}, got {err.get('input')}"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        max_k = request.app.state.runtime.settings.max_k
        return JSONResponse({"detail": _validation_message(exc, max_k), "errors": _jsonable(exc.errors())},
                            status_code=422)

    @app.exception_handler(ModelNotTrained)
    async def not_trained(_: Request, exc: ModelNotTrained) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "fix": f"streamrec train --model {exc.strategy}"}, status_code=503)

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_: Request, exc: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})

    @app.exception_handler(StreamrecError)
    async def other(_: Request, exc: StreamrecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)


def _jsonable(errors: list) -> list:
    out = []
    for e in errors:
        out.append({"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))})
    return out


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API: routers, error mapping, and the fast path and metrics layers as raw ASGI middleware."""
    settings = settings or get_settings()
    runtime = Runtime(settings)
    from inference.search import SearchService

    search = SearchService(settings, runtime.store, runtime.broker, runtime.catalog)
    runtime.model_listeners.append(search.reload)  # a new run may come with a new search index

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await runtime.start()
        await runtime.home.experiments.start(runtime._pubsub_client)  # inference/experiments.py
        await search.start()
        try:
            yield
        finally:
            await search.stop()
            await runtime.home.experiments.stop()
            await runtime.stop()

    api = FastAPI(title="streamrec", version=_pkg_version(), lifespan=lifespan,
                  description="Streaming recommendations: home lists, similar items, baskets, events, stats.")
    api.state.runtime = runtime
    api.state.search = search  # search and the reranker (inference/search.py); /admin/reload reloads it too
    _install_errors(api)
    from inference.routes import basket, reranking, search as search_routes

    # producer keys (inference/security.py): each public router needs its scope when keys are configured
    read, write_events = [require_scope("read")], [require_scope("events")]
    from inference.routes import dashboard

    from inference.routes import alerts

    for module in (health, admin):
        api.include_router(module.router)
    api.include_router(alerts.admin)
    api.include_router(alerts.router, dependencies=read)
    from inference.routes import monitoring

    api.include_router(monitoring.router, dependencies=read)
    api.include_router(dashboard.pages)
    api.include_router(dashboard.router, dependencies=read)
    api.include_router(events.router, dependencies=write_events)
    from inference.routes import feedback

    api.include_router(feedback.writes, dependencies=[require_scope("feedback")])
    api.include_router(feedback.reads, dependencies=read)
    for module in (recommendations, stats, basket, search_routes, reranking):
        api.include_router(module.router, dependencies=read)
    from inference.routes import experiments

    api.include_router(experiments.admin)
    api.include_router(experiments.router, dependencies=read)
    from inference.routes import users

    api.include_router(users.router)  # forget a user, and the footprint (admin)
    if settings.cors_origins:
        api.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["content-type", "x-api-key", "x-admin-key"])
    _with_event_schemas(api, settings.max_k)
    # the last added is the outermost: the fast path answers before anything else runs
    api.add_middleware(MetricsLayer, runtime=runtime)
    api.add_middleware(CachedHomeFastPath, runtime=runtime)
    return api


def _with_event_schemas(api: FastAPI, max_k: int) -> None:
    """The event body schemas, and ``k``'s range from the settings (routes are declared once,
    at import, so their static bound is looser than the configured ``max_k``)."""
    plain = api.openapi

    def openapi() -> dict:
        if api.openapi_schema is None:
            spec = events.add_schemas(plain())
            for path in spec.get("paths", {}).values():
                for op in path.values():
                    for param in op.get("parameters", []) if isinstance(op, dict) else []:
                        if param.get("name") == "k" and param.get("in") == "query":
                            param["schema"].update({"minimum": 1, "maximum": max_k})
            api.openapi_schema = spec
        return api.openapi_schema

    api.openapi = openapi


def _pkg_version() -> str:
    from inference.routes.health import _version

    return _version()


def factory():
    """``uvicorn --factory inference.app:factory`` (and each of ``streamrec api --workers N``):
    settings from the environment."""
    try:  # one request thread for torch, as inference.server.run sets it
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    return create_app(get_settings())
