"""``POST /api/v1/search``: semantic search, bi-encoder + BM25 fused, cross-encoder reranked."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException

from inference.broker import new_request_id
from inference.deps_search import SearchDep
from inference.search import SearchNotReady, SearchQuery
from ranking.filters import Filters
from schemas.api import ErrorBody, SearchRequest, SearchResponse

router = APIRouter(prefix="/api/v1", tags=["search"])


@router.post("/search", response_model=SearchResponse,
             responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody}})
async def search(svc: SearchDep, body: SearchRequest) -> SearchResponse:
    f = body.filters
    q = SearchQuery(query_text=body.query_text, k=body.k, use_reranker=body.use_reranker, user_id=body.user_id,
                    top_n=body.top_n, filters=Filters(exclude_seen=f.exclude_seen, include=frozenset(f.include),
                                                      exclude=frozenset(f.exclude)))
    if f.exclude_seen and not body.user_id:
        raise HTTPException(422, detail="filters.exclude_seen needs a user_id")
    try:
        got = await svc.search(q, new_request_id())
    except SearchNotReady as exc:
        raise HTTPException(503, detail=str(exc)) from None
    return SearchResponse(**got)
