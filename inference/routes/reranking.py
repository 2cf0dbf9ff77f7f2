"""``GET /api/v1/reranking/info``: the serving reranker, its base, its training and metrics."""
from __future__ import annotations

from fastapi import APIRouter

from inference.deps_search import SearchDep
from schemas.api import RerankingInfo

router = APIRouter(prefix="/api/v1/reranking", tags=["search"])


@router.get("/info", response_model=RerankingInfo)
async def info(svc: SearchDep) -> RerankingInfo:
    return RerankingInfo(**svc.info())
