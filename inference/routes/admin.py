"""``/admin``: loaded runs, hot reload, FAISS reindex (``X-Admin-Key`` when a key is configured)."""
from __future__ import annotations

from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import BaseModel, Field

from inference.deps import AdminDep, RuntimeDep
from schemas.errors import ArtifactError, NotFound

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[AdminDep],
                   responses={401: {"description": "missing or wrong X-Admin-Key"}})


class ReloadRequest(BaseModel):
    run: str | None = Field(default=None, max_length=500,
                            description="run directory (absolute, or a name under the artifact dir); default run_current")
    profile: str | None = Field(default=None, max_length=200, description="basket profile to make active")


def _set_basket_profile(name: str) -> str:
    try:
        from inference.basket.profiles import set_active
    except ImportError:
        raise HTTPException(503, detail="basket profiles are not available in this build") from None
    try:
        set_active(name)
    except (KeyError, ValueError, LookupError) as exc:
        raise HTTPException(422, detail=f"unknown basket profile {name!r}: {exc}") from None
    return name


@router.get("/models")
async def models(rt: RuntimeDep) -> dict:
    from trainer.artifacts import list_runs

    serving = rt.models.current
    return {
        "serving": serving.describe() if serving else None,
        "loaded": rt.models.history,
        "available": [p.name for p in list_runs(rt.settings.artifact_dir)],
        "bandit": rt.bandit.describe(),
    }


@router.post("/reload")
async def reload(rt: RuntimeDep, request: Request, body: ReloadRequest | None = Body(default=None)) -> dict:
    body = body or ReloadRequest()
    out: dict = {}
    change: dict = {}  # what the other API processes must apply too (inference/control.py)
    if body.profile is not None:
        out["basket_profile"] = change["basket_profile"] = _set_basket_profile(body.profile)
    if body.run is not None or body.profile is None:
        run_dir = body.run or None
        try:
            out.update(await rt.reload(run_dir))
        except (ArtifactError, NotFound, ValueError, OSError) as exc:
            raise HTTPException(422, detail=str(exc)) from None
        change["reload"] = run_dir
        search = getattr(request.app.state, "search", None)
        if search is not None:  # a promoted reranker or a new search index (inference/search.py)
            try:
                got = await search.reload()
            except (ArtifactError, ValueError, OSError) as exc:
                raise HTTPException(422, detail=f"search index / reranker: {exc}") from None
            if got["search_index"] is not None:  # said only where search is set up
                out["search"] = got
    out["replicas_told"] = await rt.tell_others(change)
    return out


@router.post("/reindex")
async def reindex(rt: RuntimeDep) -> dict:
    if rt.models.current is None:
        raise HTTPException(409, detail="model not trained yet: no serving run to index; "
                                        "train one with `streamrec train --model two_tower`")
    sizes = await rt.models.reindex()
    return {"run_id": rt.models.current.run_id, "indexes": sizes}


class PromoteRequest(BaseModel):
    run: str = Field(max_length=500, description="run name under the artifact dir (or its directory)")
    force: bool = Field(default=False, description="serve it even when it does not beat the serving run")


def _promotion(result) -> dict:  # noqa: ANN001 - trainer.promotion.PromotionResult
    return {"run_id": result.run_id, "promoted": result.promoted, "reason": result.reason,
            "challenger": result.challenger, "champion": result.champion, "champion_run": result.champion_run,
            "holdout": result.holdout, "notified": result.notified, "warnings": result.warnings}


def _promote_blocking(settings, run: str, force: bool) -> dict:  # noqa: ANN001
    """``streamrec promote RUN`` as the dashboard's button: the same gate, on the shared holdout
    cut from the replayed snapshot when there is one (no replay here: that is the trainer's job)."""
    from trainer.artifacts import resolve_run
    from trainer.data.snapshot import Snapshot
    from trainer.pipeline import dataset_from_source
    from trainer.promotion import promote

    run_dir = resolve_run(settings.artifact_dir, run)
    data, note = None, ""
    snap = Snapshot(settings.snapshot_path())
    if snap.exists() and not force:
        try:
            data = dataset_from_source(snap.read(), settings)
        except (ValueError, OSError) as exc:
            note = f"no data for a shared holdout ({exc})"
    return _promotion(promote(settings, run_dir, force=force, data=data, holdout_note=note))


@router.post("/promote")
async def promote_run(rt: RuntimeDep, body: PromoteRequest) -> dict:
    """Promote a run through the gate (the champion/challenger comparison of ``streamrec promote``)."""
    import asyncio

    try:
        out = await asyncio.to_thread(_promote_blocking, rt.settings, body.run, body.force)
    except (ArtifactError, NotFound, ValueError, FileNotFoundError) as exc:
        raise HTTPException(422, detail=str(exc)) from None
    if out["promoted"]:
        await rt.reload(None, announce=False)  # promote() announced it on model-updates already
    return out


@router.post("/rollback")
async def rollback_run(rt: RuntimeDep) -> dict:
    """Serve the previously promoted run again."""
    import asyncio

    from trainer.promotion import rollback

    try:
        result = await asyncio.to_thread(rollback, rt.settings)
    except (ArtifactError, NotFound, ValueError) as exc:
        raise HTTPException(409, detail=str(exc)) from None
    await rt.reload(None, announce=False)
    return _promotion(result)
