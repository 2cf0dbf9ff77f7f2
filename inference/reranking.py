"""Reranking a served home or similar list with the cross-encoder (``use_reranker=true``, or a
policy whose ``rerank_top_n`` is set).

The query side of a list without a query is text: for a home list, the text of the user's
most recent items (``Keys.recent``); for a similar list, the text of the item itself
(``ranking.rerank.query_from_items``, as ``train-reranker`` rebuilds it from the events). The
top N of the list is rescored (``ranking.rerank.apply_reranker``); every item keeps its list
score as ``first_stage_score`` and gets its ``reranker_score``. With no reranker promoted, no
search index, or no text to make a query from, the list is served as it was, marked
``reranked: false``.
"""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from inference.retrieval import _recent_item
from inference.search import SearchNotReady, SearchService
from ranking.rerank import query_from_items
from schemas.errors import StoreUnavailable

RECENT_FOR_QUERY = 3


async def home_query(search: SearchService, user_id: str) -> str:
    """The text of the user's last few items (newest first)."""
    store = search.store
    if store is None:
        return ""
    try:
        raw = await store.call(lambda c: c.lrange(store.keys.recent(user_id), 0, RECENT_FOR_QUERY * 3))
    except StoreUnavailable:
        return ""
    index = search.loaded.index
    recent = list(dict.fromkeys(_recent_item(r) for r in raw))
    return query_from_items([index.text_of(i) for i in recent], max_items=RECENT_FOR_QUERY) if index else ""


async def rerank_payload(search: SearchService, payload: dict[str, Any], query_for: Callable[[], Awaitable[str]],
                         top_n: int) -> dict[str, Any]:
    """``payload`` (a home or similar answer) with its items reranked, or marked not reranked;
    ``query_for`` makes the query once the search index is loaded."""
    payload = dict(payload)
    payload["reranked"], payload["reranker"] = False, None
    try:
        loaded = await search.ready()
    except SearchNotReady:
        return payload
    items = payload.get("items") or []
    if loaded.cross_encoder is None or not items:
        return payload
    query = await query_for()
    if not query:
        return payload
    ranked = [(i["item_id"], float(i["score"])) for i in items]
    results = await asyncio.to_thread(SearchService.rerank_sync, loaded, query, ranked, top_n,
                                      loaded.rerank_weight)
    by_id = {i["item_id"]: i for i in items}
    out = []
    for r in results:
        item = dict(by_id[r.item_id])
        item["first_stage_score"] = r.first_stage_score
        item["reranker_score"] = None if r.reranker_score is None else round(r.reranker_score, 6)
        item["score"] = round(r.score, 6)
        out.append(item)
    payload["items"] = out
    payload["reranked"] = any(r.reranker_score is not None for r in results)
    payload["reranker"] = SearchService.reranker_name(loaded) if payload["reranked"] else None
    return payload


async def item_query(search: SearchService, item_id: str) -> str:
    index = search.loaded.index
    return (index.text_of(item_id) or "") if index is not None else ""
