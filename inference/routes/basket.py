"""``/api/v1/recommendations/basket`` (complements of a basket) and ``/api/v1/products/enrich``.

Thin: validation and the answer's shape; the work is ``inference.basket.service``.
"""
from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException

from inference.basket.service import ProfilesUnusable
from inference.broker import new_request_id
from inference.deps import BasketDep
from ranking.basket import ItemMeta
from schemas.api import (BasketRequest, BasketResponse, EnrichedItem, EnrichRequest, EnrichResponse, ErrorBody,
                         RecommendedItem, SegmentWeight)
from schemas.events import ID_PATTERN

router = APIRouter(tags=["basket"])
ERRORS = {422: {"model": ErrorBody}, 503: {"model": ErrorBody}}
_ID = re.compile(ID_PATTERN)


def _check_ids(ids: list[str]) -> list[str]:
    bad = [i for i in ids if not isinstance(i, str) or not _ID.match(i)]
    if bad:
        raise HTTPException(422, detail=f"product_ids must be 1-128 characters of letters, digits and _ . : @ -; "
                                        f"bad: {bad[:5]}")
    return list(dict.fromkeys(ids))


def _metadata(meta: ItemMeta | None) -> dict:
    if meta is None:
        return {"title": None, "category": None, "private_label": None}
    return {"title": meta.title or None, "category": meta.category or None, "private_label": meta.private_label}


@router.post("/api/v1/recommendations/basket", response_model=BasketResponse, responses=ERRORS)
async def basket(body: BasketRequest, svc: BasketDep) -> BasketResponse:
    """Complements of a basket: pairs of the (given or detected) segments and ANY, reverse
    pairs, segment then global popularity, LightFM similarity; capped, diversified and
    weighted by the active profile's bucket for this basket size."""
    items = _check_ids(body.product_ids)
    profession = (body.profession or "").strip() or None
    if profession is not None and not _ID.match(profession):
        raise HTTPException(422, detail="profession must be 1-128 characters of letters, digits and _ . : @ -")
    if body.k > svc.settings.max_k:
        raise HTTPException(422, detail=f"k must be between 1 and {svc.settings.max_k}, got {body.k}")
    try:
        got = await svc.complements(items, profession, body.k)
    except ProfilesUnusable as exc:
        raise HTTPException(503, detail=str(exc)) from None
    out = [RecommendedItem(item_id=c.item_id, score=round(c.score, 6), reason=c.reason,
                           metadata=_metadata(c.meta) if body.expand else None) for c in got.items]
    return BasketResponse(request_id=new_request_id(), profile=got.profile,
                          segments=[SegmentWeight(segment=s, weight=w) for s, w in got.segments], items=out)


@router.post("/api/v1/products/enrich", response_model=EnrichResponse, responses=ERRORS)
async def enrich(body: EnrichRequest, svc: BasketDep) -> EnrichResponse:
    """Catalog metadata (title, category, private label) of each id; ``found`` false when the
    catalog does not know it."""
    ids = _check_ids(body.product_ids)
    meta = await svc.meta(ids)
    return EnrichResponse(items=[EnrichedItem(item_id=i, found=i in meta, **_metadata(meta.get(i))) for i in ids])
