"""``/api/v1/recommendations``: home lists and similar items."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
import orjson

from inference.broker import new_request_id
from inference.experiments import serving_pick
from inference.deps import HomeDep, SimilarDep
from inference.deps_search import SearchDep
from inference.home import UnknownStrategy
from ranking.filters import Filters
from inference.strategies import HomeQuery
from schemas.api import ErrorBody, RecommendationResponse, SimilarResponse
from schemas.errors import ModelNotTrained, NotFound
from schemas.events import ID_PATTERN

router = APIRouter(prefix="/api/v1/recommendations", tags=["recommendations"])

ID_HELP = "1-128 characters: letters, digits and _ . : @ -"
ERRORS = {422: {"model": ErrorBody}, 503: {"model": ErrorBody}}


def check_k(k: int, max_k: int) -> None:
    if not 1 <= k <= max_k:
        raise HTTPException(422, detail=f"k must be between 1 and {max_k}, got {k}")


@router.get("/home", response_model=RecommendationResponse, responses=ERRORS)
async def home(
    svc: HomeDep,
    search: SearchDep,
    user_id: Annotated[str, Query(pattern=ID_PATTERN, description=f"the user ({ID_HELP})")],
    k: Annotated[int, Query(ge=1, le=100_000, description="how many items (1..max_k)")] = 10,
    strategy: Annotated[str | None, Query(description="policy (the serving run's policy), popularity, hybrid, "
                                                       "bandit or a model name; default: the configured default "
                                                       "strategy (policy)")] = None,
    explain: Annotated[bool, Query(description="give every item a reason in words")] = False,
    exclude_seen: Annotated[bool, Query(description="leave out items the user interacted with")] = True,
    include: Annotated[str | None, Query(max_length=4000, description="comma list of allowed item ids / category:NAME")] = None,
    exclude: Annotated[str | None, Query(max_length=4000, description="comma list of banned item ids / category:NAME")] = None,
    category_cap: Annotated[int | None, Query(ge=1, le=1000, description="at most this many items per category")] = None,
    use_reranker: Annotated[bool | None, Query(description="rerank the top N with the cross-encoder (query: the "
                                                           "text of the user's recent items); default: the "
                                                           "policy's rerank_top_n setting")] = None,
) -> Response:
    check_k(k, svc.settings.max_k)
    try:
        name = await svc.resolve(strategy)
    except UnknownStrategy as exc:
        raise HTTPException(422, detail=str(exc)) from None
    q = HomeQuery(user_id=user_id, k=k, strategy=name, explain=explain,
                  filters=Filters(exclude_seen=exclude_seen, include=Filters.parse_list(include),
                                  exclude=Filters.parse_list(exclude), category_cap=category_cap))
    pick = await svc.pick(user_id, strategy)  # a running experiment's arm (docs/experiments.md)
    if pick is not None and pick.experiment.kind == "interleaving":
        try:
            return Response(await svc.interleave(q, pick, new_request_id()), media_type="application/json")
        except ModelNotTrained:
            pick = None  # as below: served outside the experiment
    shadow = pick if pick is not None and pick.experiment.kind == "shadow" else None
    plain = q
    if pick is not None:
        q = svc.arm_query(replace(q), serving_pick(pick))
    t0 = time.perf_counter()
    try:
        served = await svc.home(q)
    except ModelNotTrained:
        if pick is None:
            raise
        # the arm's model is not in its run (the serving run changed since): serve outside the experiment
        q, shadow = plain, None
        served = await svc.home(q)
    if shadow is not None and shadow.arm is not shadow.experiment.control and not served.cached:
        svc.shadow(q, shadow, served.entry, (time.perf_counter() - t0) * 1000)  # in the background
    rid = new_request_id()
    svc.served(rid, served.entry, q.label)
    body = served.entry.body(rid, served.cached)
    top_n = _rerank_top_n(svc, use_reranker, svc.models)
    if top_n:
        from inference.reranking import home_query, rerank_payload

        payload = await rerank_payload(search, orjson.loads(body), lambda: home_query(search, user_id), top_n)
        body = orjson.dumps(payload)
    return Response(body, media_type="application/json")


def _rerank_top_n(holder, use_reranker: bool | None, models) -> int:
    """How many items to rerank: the request's choice, else the serving policy's setting (0: none)."""
    serving = models.current
    policy_n = serving.policy.rerank_top_n if serving is not None else 0
    if use_reranker is None:
        return policy_n
    return (policy_n or holder.settings.rerank_top_n) if use_reranker else 0


@router.get("/similar/{item_id}", response_model=SimilarResponse, responses={**ERRORS, 404: {"model": ErrorBody}})
async def similar(
    svc: SimilarDep,
    search: SearchDep,
    item_id: Annotated[str, Path(pattern=ID_PATTERN, description=f"the item ({ID_HELP})")],
    k: Annotated[int, Query(ge=1, le=100_000, description="how many items (1..max_k)")] = 10,
    use_reranker: Annotated[bool | None, Query(description="rerank the top N with the cross-encoder (query: the "
                                                           "item's text); default: the policy's rerank_top_n")] = None,
) -> SimilarResponse:
    check_k(k, svc.max_k)
    try:
        got = await svc.similar(item_id, k)
    except NotFound as exc:
        raise HTTPException(404, detail=str(exc)) from None
    top_n = _rerank_top_n(search, use_reranker, svc.models)
    if top_n:
        from inference.reranking import item_query, rerank_payload

        got = await rerank_payload(search, got, lambda: item_query(search, item_id), top_n)
    return SimilarResponse(request_id=new_request_id(), **got)
