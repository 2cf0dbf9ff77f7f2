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
    if body.profile is not None:
        out["basket_profile"] = _set_basket_profile(body.profile)
    if body.run is not None or body.profile is None:
        run_dir = body.run or None
        try:
            out.update(await rt.reload(run_dir))
        except (ArtifactError, NotFound, ValueError, OSError) as exc:
            raise HTTPException(422, detail=str(exc)) from None
        search = getattr(request.app.state, "search", None)
        if search is not None:  # a promoted reranker or a new search index (inference/search.py)
            try:
                got = await search.reload()
            except (ArtifactError, ValueError, OSError) as exc:
                raise HTTPException(422, detail=f"search index / reranker: {exc}") from None
            if got["search_index"] is not None:  # said only where search is set up
                out["search"] = got
    return out


@router.post("/reindex")
async def reindex(rt: RuntimeDep) -> dict:
    if rt.models.current is None:
        raise HTTPException(409, detail="model not trained yet: no serving run to index; "
                                        "train one with `streamrec train --model two_tower`")
    sizes = await rt.models.reindex()
    return {"run_id": rt.models.current.run_id, "indexes": sizes}
