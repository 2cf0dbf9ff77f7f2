"""Experiments (docs/experiments.md): create, reshare and stop them (``/admin/experiments``, admin
key), list them and read their reports (``/api/v1/experiments``).

Writes go through ``trainer.experiment_store`` (Redis and the artifact registry, announced on the
control channel so every replica serves the change within a second); this process applies it at
once. The report is ``trainer.experiment_report.report`` over the counters read here.
"""
from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from inference.deps import AdminDep, RuntimeDep
from inference.experiments import ARM_PARAMS
from inference.runtime import Runtime
from inference.store import make_sync_client
from ranking.experiments import NAME_PATTERN, Experiment, check
from ranking.policy import Policy
from schemas.api import ErrorBody
from schemas.errors import NotFound, StoreUnavailable

admin = APIRouter(prefix="/admin/experiments", tags=["experiments"], dependencies=[AdminDep],
                  responses={401: {"description": "missing or wrong X-Admin-Key"}, 422: {"model": ErrorBody},
                             503: {"model": ErrorBody}})
router = APIRouter(prefix="/api/v1/experiments", tags=["experiments"],
                   responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}, 503: {"model": ErrorBody}})

NamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="the experiment (1-64 letters, digits, _ or -)")]
Epoch = Annotated[float, Field(ge=0, le=1e11, allow_inf_nan=False)]


class ArmSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="the arm (the first arm is the control)")
    share: float = Field(ge=0, le=1, allow_inf_nan=False, description="its share of the experiment's users")
    strategy: str = Field("policy", max_length=64, description="what it serves: policy (a run's own policy), "
                                                               "popularity, hybrid or a model name")
    run: str | None = Field(None, max_length=200, description="the run it serves (a run name under the "
                                                              "artifact dir); default: the serving run")
    params: dict[str, Any] = Field(default_factory=dict, description=f"policy fields to override: {', '.join(ARM_PARAMS)}")


class ExperimentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    arms: list[ArmSpec] = Field(min_length=2, max_length=10)
    kind: Literal["ab", "interleaving", "shadow"] = Field(
        "ab", description="ab: each user sees their arm; interleaving: two arms' lists merged by team draft in "
                          "every list; shadow: everyone sees the first arm, and for the second arm's share of "
                          "users its list is also computed off the request path and logged (canaries are made "
                          "by `streamrec promote RUN --canary N`)")
    salt: str | None = Field(None, max_length=128, description="hash salt; default: the name")
    namespace: str = Field("default", pattern=NAME_PATTERN, description="experiments of one namespace never share a user")
    traffic: tuple[Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)],
                   Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(
        (0.0, 1.0), description="this experiment's slice [lo, hi) of its namespace's users")
    audience: list[Annotated[str, Field(max_length=128)]] | None = Field(
        None, max_length=100, description="only users of these segments; default: everyone")
    start: Epoch | None = Field(None, description="epoch seconds; default: now")
    stop: Epoch | None = Field(None, description="epoch seconds; default: until stopped")
    description: str = Field("", max_length=2000)


class SharesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shares: dict[Annotated[str, Field(pattern=NAME_PATTERN)],
                 Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(
        description="the new share of each arm (they add up to 1); the fewest users change arm")
    note: str = Field("", max_length=500)


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str = Field("", max_length=500)


def build_experiment(body: ExperimentCreate, artifact_dir) -> Experiment:  # noqa: ANN001 - a Path
    """The experiment a request describes; ``ValueError`` says what is wrong (the API answers 422,
    ``streamrec experiment create`` exits 2)."""
    from pathlib import Path as FsPath

    from inference.strategies import strategy_names

    strategies = set(strategy_names()) - {"bandit"}
    base = FsPath(artifact_dir).resolve()
    policies = {}
    for arm in body.arms:
        if arm.strategy not in strategies:
            raise ValueError(f"arm {arm.name}: unknown strategy {arm.strategy!r} "
                             f"(one of {', '.join(sorted(strategies))}; bandit cannot be an arm)")
        unknown = sorted(set(arm.params) - set(ARM_PARAMS))
        if unknown:
            raise ValueError(f"arm {arm.name}: unknown params {unknown}; known: {', '.join(ARM_PARAMS)}")
        try:
            Policy().with_(**arm.params)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"arm {arm.name}: bad params: {exc}") from None
        run = arm.run
        if run is not None:
            try:
                path = (base / run).resolve()
            except (OSError, ValueError) as exc:
                raise ValueError(f"arm {arm.name}: not a run: {run!r} ({exc})") from None
            if not path.is_relative_to(base) or path == base or not path.is_dir():
                raise ValueError(f"arm {arm.name}: no run {run!r} under the artifact dir {base}")
            run = path.name
        policies[arm.name] = {"strategy": arm.strategy, "run": run, "params": dict(arm.params)}
    shares: dict[str, float] = {}
    for arm in body.arms:
        if arm.name in shares:
            raise ValueError(f"arm names must differ: {arm.name!r} twice")
        shares[arm.name] = arm.share
    exp = Experiment.create(body.name, shares, salt=body.salt, policies=policies, namespace=body.namespace,
                            traffic=tuple(body.traffic), kind=body.kind, start=body.start, stop=body.stop,
                            audience=None if body.audience is None else frozenset(body.audience))
    check(exp)
    for arm in exp.arms:  # an arm serving a model its run lacks would answer 503 to its users
        if arm.strategy in ("policy", "popularity", "hybrid"):
            continue
        from trainer.artifacts import current_run

        run_dir = base / arm.run if arm.run else current_run(base)
        if run_dir is None:
            raise ValueError(f"arm {arm.name}: strategy {arm.strategy!r} needs a trained run, and none is serving")
        models = sorted(p.name for p in (run_dir / "models").iterdir()) if (run_dir / "models").is_dir() else []
        if arm.strategy not in models:
            raise ValueError(f"arm {arm.name}: run {run_dir.name} has no {arm.strategy!r} model "
                             f"(it has {', '.join(models) or 'none'})")
    return exp


async def _with_store(rt: Runtime, fn):  # noqa: ANN001, ANN202
    """Run ``fn(ExperimentStore)`` in a worker thread; store errors become 404/409/422/503."""
    import redis

    from trainer.experiment_store import ExperimentConflict, ExperimentStore

    def work():  # noqa: ANN202
        client = make_sync_client(rt.settings, decode_responses=True,
                                  socket_timeout=max(rt.settings.redis_timeout_s, 2.0))
        try:
            return fn(ExperimentStore(client, rt.keys, rt.settings.artifact_dir, origin="api"))
        finally:
            client.close()

    try:
        out = await asyncio.to_thread(work)
    except NotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None
    except ExperimentConflict as exc:
        raise HTTPException(409, detail=str(exc)) from None
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    except redis.RedisError as exc:
        raise HTTPException(503, detail=f"Redis unavailable: {exc}") from None
    await rt.home.experiments.refresh()
    return out


@admin.post("", status_code=201, responses={409: {"model": ErrorBody}})
async def create(rt: RuntimeDep, body: ExperimentCreate) -> dict:
    """Create and start an experiment (every API replica serves it within a second)."""
    if not rt.settings.redis_url:
        raise HTTPException(503, detail="experiments need Redis (STREAMREC_REDIS_URL)")
    try:
        exp = build_experiment(body, rt.settings.artifact_dir)
    except ValueError as exc:
        raise HTTPException(422, detail=str(exc)) from None
    return await _with_store(rt, lambda st: st.create(exp, body.description))


@admin.post("/{name}/shares", responses={404: {"model": ErrorBody}})
async def shares(rt: RuntimeDep, name: NamePath, body: SharesUpdate) -> dict:
    """New shares, moving as few users between arms as possible."""
    return await _with_store(rt, lambda st: st.set_shares(name, body.shares, body.note))


@admin.post("/{name}/stop", responses={404: {"model": ErrorBody}})
async def stop(rt: RuntimeDep, name: NamePath, body: StopRequest | None = None) -> dict:
    """Stop serving the experiment (its report stays)."""
    return await _with_store(rt, lambda st: st.finish(name, "stopped", (body or StopRequest()).note))


# ----------------------------------------------------------------------------------- reads
async def _docs(rt: Runtime) -> dict[str, dict]:
    try:
        raw = await rt.store.call(lambda c: c.hgetall(rt.keys.experiments))
    except StoreUnavailable as exc:
        raise HTTPException(503, detail=str(exc)) from None
    out = {}
    for name, body in (raw or {}).items():
        try:
            out[name.decode() if isinstance(name, bytes) else name] = orjson.loads(body)
        except orjson.JSONDecodeError:
            continue
    return dict(sorted(out.items()))


def summary(doc: dict, serving: set[str], now: float) -> dict:
    """One experiment as the list shows it: its arms (policy, share, label) and its state."""
    from trainer.experiment_store import is_running

    exp = Experiment.from_dict(doc)
    return {
        "name": exp.name, "kind": exp.kind, "status": doc.get("status"), "running": is_running(doc, now),
        "served_here": exp.name in serving, "description": doc.get("description", ""),
        "namespace": exp.namespace, "traffic": list(exp.traffic),
        "audience": None if exp.audience is None else sorted(exp.audience),
        "start": exp.start, "stop": exp.stop, "created_at": doc.get("created_at"), "updated_at": doc.get("updated_at"),
        "control": exp.control.name, "shares": exp.shares,
        "arms": [{**a.to_dict(), "label": exp.label(a.name), "control": a.name == exp.control.name} for a in exp.arms],
        "report": f"/api/v1/experiments/{exp.name}",
    }


@router.get("")
async def list_experiments(rt: RuntimeDep) -> dict:
    """Every experiment (running first, then the newest), with arms, shares and state."""
    now = time.time()
    serving = {e.name for e in rt.home.experiments.running}
    rows = []
    for doc in (await _docs(rt)).values():
        try:
            rows.append(summary(doc, serving, now))
        except (ValueError, KeyError, TypeError):
            continue
    rows.sort(key=lambda r: (not r["running"], -(r["created_at"] or 0)))
    return {"experiments": rows, "running": sorted(serving), "run_errors": rt.home.experiments.errors}


async def _cuped_values(rt: Runtime, exp: Experiment, doc: dict, now: float) -> dict[str, list]:
    """arm -> [(y, x)] for a sample of each arm's exposed users (``trainer.experiment_report.read_cuped``)."""
    from trainer.experiment_report import CUPED_SAMPLE, experiment_days, pre_days, user_values

    during, before = experiment_days(doc, now), pre_days(doc)
    labels = [exp.label(a.name) for a in exp.arms]
    members = await rt.store.pipeline(lambda p: [p.srandmember(rt.keys.experiment_members(lb), CUPED_SAMPLE)
                                                 for lb in labels])
    out = {}
    for arm, label, users in zip(exp.arms, labels, members):
        names = [u.decode() if isinstance(u, bytes) else u for u in users or ()]
        raws = await rt.store.pipeline(lambda p: [p.hgetall(rt.keys.user_stats(u)) for u in names]) if names else []
        out[arm.name] = [user_values(raw, label, during, before) for raw in raws]
    return out


@router.get("/{name}")
async def experiment_report(rt: RuntimeDep, name: NamePath,
                            cuped: Annotated[bool, Query(description="add CUPED: clicks per exposed user adjusted by "
                                                                     "their clicks before the start (reads a sample "
                                                                     "of users; fixed-horizon)")] = False) -> dict:
    """Per arm: exposure, CTR, conversion, positive-feedback rate, mean rating, each with an
    interval, and against the control the lift with an always-valid interval and p-value."""
    from trainer.experiment_report import experiment_days, report

    try:
        raw = await rt.store.call(lambda c: c.hget(rt.keys.experiments, name))
    except StoreUnavailable as exc:
        raise HTTPException(503, detail=str(exc)) from None
    if raw is None:
        raise HTTPException(404, detail=f"no experiment named {name!r}")
    try:
        doc = orjson.loads(raw)
        exp = Experiment.from_dict(doc)
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
        raise HTTPException(409, detail=f"the stored experiment {name!r} is unreadable: {exc}") from None
    day_list = experiment_days(doc, time.time())
    labels = [exp.label(a.name) for a in exp.arms]
    k = rt.keys

    def build(pipe) -> None:  # noqa: ANN001
        for d in day_list:
            pipe.hgetall(k.stats_day(d))
        for label in labels:
            pipe.pfcount(k.experiment_users(label))
        if exp.kind == "shadow":
            pipe.hgetall(k.shadow_stats(exp.name))
            pipe.lrange(k.shadow_log(exp.name), 0, -1)

    try:
        got = await rt.store.pipeline(build)
    except StoreUnavailable as exc:
        raise HTTPException(503, detail=str(exc)) from None
    days = list(zip(day_list, got[: len(day_list)]))
    users = dict(zip(labels, (int(x) for x in got[len(day_list):len(day_list) + len(labels)])))
    shadow = tuple(got[len(day_list) + len(labels):]) if exp.kind == "shadow" else None
    values = None
    if cuped:
        try:
            values = await _cuped_values(rt, exp, doc, time.time())
        except StoreUnavailable as exc:
            raise HTTPException(503, detail=str(exc)) from None
    return report(doc, days, users, alpha=rt.settings.experiment_alpha, shadow=shadow, cuped=values)
