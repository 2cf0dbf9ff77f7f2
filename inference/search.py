"""Semantic search and the reranker of the API process.

``SearchService`` holds the serving search index (``trainer.text_index``: MiniLM embeddings
in FAISS, and bm25s) and the serving cross-encoder (the promoted reranker run of
``trainer.reranker.store``, scored by its int8 ONNX export when it has one, else by torch;
else the packaged MiniLM with an untrained head). Both load in
a worker thread, at start when an index exists and on ``POST /admin/reload``; the swap is
one assignment, so a request sees the old models or the new ones, never half of each.

A search: the query is embedded, FAISS and BM25 give ``search_candidates`` each, reciprocal
rank fusion merges them, the cross-encoder rescores the top N (``ranking.rerank``). The
model work runs in a thread so the event loop keeps serving. Each search is logged as
impression events carrying ``context.query`` and the request id, so that a like or dislike
on a result can be tied to the query it answered (``streamrec train-reranker``).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ranking.filters import Filters, ItemInfo, allowed
from ranking.rerank import DEFAULT_RERANK_WEIGHT, Reranked, apply_reranker, fusion_weight
from ranking.types import Scored
from schemas.errors import ArtifactError, BrokerUnavailable, StoreUnavailable, StreamrecError
from schemas.events import EventContext, EventType, Interaction
from schemas.settings import Settings

log = logging.getLogger(__name__)

SEARCH_STRATEGY = "search"
ANONYMOUS = "anonymous"


class SearchNotReady(StreamrecError):
    """No search index serves yet (answered 503 with how to build one)."""


@dataclass
class Loaded:
    """What one reload loaded: the index, the encoder, the cross-encoder and where from."""

    index: Any = None  # trainer.text_index.TextIndex
    cross_encoder: Any = None
    reranker_dir: Path | None = None
    reranker_info: dict = field(default_factory=dict)
    # the reranker's weight in its fusion with the first stage: STREAMREC_RERANK_WEIGHT, else the run's own
    rerank_weight: float = DEFAULT_RERANK_WEIGHT


@dataclass(frozen=True)
class SearchQuery:
    query_text: str
    k: int = 10
    use_reranker: bool = True
    user_id: str | None = None
    top_n: int | None = None
    filters: Filters = field(default_factory=lambda: Filters(exclude_seen=False))


class SearchService:
    def __init__(self, settings: Settings, store=None, broker=None, catalog=None):
        self.settings = settings
        self.store, self.broker, self.catalog = store, broker, catalog
        self.loaded = Loaded()
        self._encoder = None  # the bi-encoder never changes: loaded once
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    # --- loading ---------------------------------------------------------------------------
    def _load(self) -> Loaded:
        from trainer.reranker.onnx_backend import has_onnx
        from trainer.reranker.store import current_reranker, read_info
        from trainer.text_index import current_index, load_text_index
        from trainer.text_models import BASE_NAME, backend_name, load_bi_encoder, load_reranker

        s = self.settings
        index_dir = current_index(s.artifact_dir)
        if index_dir is None:
            return Loaded()
        if self._encoder is None:
            self._encoder = load_bi_encoder(s.hf_offline)
        index = load_text_index(index_dir)
        index.encoder = self._encoder
        rdir = current_reranker(s.artifact_dir)
        # `streamrec export-reranker` can give the serving run its export: a reload then picks it up
        wants_onnx = rdir is not None and s.rerank_backend != "torch" and has_onnx(rdir / "model")
        if rdir is None and not s.rerank_untuned:
            ce, info = None, {}  # nothing trained yet: the first stage serves
        elif (self.loaded.reranker_dir == rdir and self.loaded.cross_encoder is not None
              and (backend_name(self.loaded.cross_encoder) != "torch fp32") == wants_onnx):
            ce, info = self.loaded.cross_encoder, self.loaded.reranker_info  # unchanged (run, export): keep it
        else:
            # the run's int8 ONNX export when it has one (STREAMREC_RERANK_BACKEND), else its torch weights
            ce = load_reranker(rdir / "model" if rdir else None, s.rerank_backend, s.rerank_threads,
                               s.rerank_max_length, s.hf_offline)
            info = read_info(rdir) if rdir else {"run_id": None, "model": "cross-encoder", "base": BASE_NAME,
                                                  "started_from": BASE_NAME, "feedbacks": 0, "metrics": {},
                                                  "trained_at": None, "note": "untuned: no reranker promoted yet"}
            info = {**info, "backend": backend_name(ce)}
        return Loaded(index, ce, rdir, info, fusion_weight(s.rerank_weight, info))

    async def reload(self) -> dict[str, Any]:
        """Load the serving index and reranker (kept when unchanged); what serves after."""
        async with self._lock:
            before = (self.loaded.index.path if self.loaded.index else None, self.loaded.reranker_dir)
            loaded = await asyncio.to_thread(self._load)
            self.loaded = loaded
        after = (loaded.index.path if loaded.index else None, loaded.reranker_dir)
        return {"search_index": str(after[0].name) if after[0] else None,
                "reranker": after[1].name if after[1] else ("base" if loaded.cross_encoder is not None else None),
                "changed": before != after}

    async def start(self) -> None:
        """Load in the background at start (a missing or broken index only logs)."""
        async def warm() -> None:
            try:
                await self.reload()
            except (ArtifactError, OSError, ValueError) as exc:
                log.error("search index / reranker not loaded: %s", exc)
        self._spawn(warm())

    async def stop(self) -> None:
        """Let impressions in flight reach the broker (a producer cancelled half-way is never
        closed), then cancel what is left (a load in progress)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.settings.broker_timeout_s * 2)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ready(self) -> Loaded:
        if self.loaded.index is None:  # not loaded yet (or no index at start): try now, once at a time
            async with self._lock:
                if self.loaded.index is None:
                    self.loaded = await asyncio.to_thread(self._load)
        loaded = self.loaded
        if loaded.index is None:
            raise SearchNotReady("model not trained yet: no search index; build one with `streamrec search-index` "
                                 "(from the catalog in the snapshot, or --items FILE), then POST /admin/reload")
        return loaded

    # --- scoring (sync, in a thread) -------------------------------------------------------
    @staticmethod
    def rerank_sync(loaded: Loaded, query: str, ranked: Scored, top_n: int, weight: float = 1.0) -> list[Reranked]:
        """``ranked`` with its top ``top_n`` rescored by the cross-encoder and fused with the
        first stage at ``weight`` (items the index has no text for keep their place behind
        the scored ones)."""
        head = [(i, loaded.index.text_of(i)) for i, _ in ranked[:top_n]]
        head = [(i, t) for i, t in head if t]
        scores: dict[str, float] = {}
        if head and query.strip():
            out = loaded.cross_encoder.predict([(query, t) for _, t in head], batch_size=max(1, len(head)),
                                               show_progress_bar=False)
            scores = {i: float(s) for (i, _), s in zip(head, out)}
        return apply_reranker(ranked, scores, top_n, weight)

    def search_sync(self, loaded: Loaded, q: SearchQuery, blocked: set[str] = frozenset()) -> tuple[list[Reranked], dict]:
        """One search, all of it in the calling thread (the API runs it in a worker thread)."""
        s = self.settings
        n = max(s.search_candidates, q.k)
        fused, parts = loaded.index.first_stage(q.query_text, n, s.rrf_k,
                                                allow=(lambda i: i not in blocked) if blocked else None)
        if q.use_reranker and loaded.cross_encoder is not None:
            results = self.rerank_sync(loaded, q.query_text, fused, q.top_n or s.rerank_top_n, loaded.rerank_weight)
        else:
            results = [Reranked(i, sc, pos, None) for pos, (i, sc) in enumerate(fused)]
        return results, {k: len(v) for k, v in parts.items()}

    # --- requests --------------------------------------------------------------------------
    async def _blocked(self, q: SearchQuery, loaded: Loaded) -> set[str]:
        """Items the request's filters leave out (ids, categories, seen items)."""
        f = q.filters
        if not (f.include or f.exclude or f.exclude_seen):
            return set()
        seen: set[str] = set()
        if f.exclude_seen and q.user_id and self.store is not None:
            try:
                raw = await self.store.call(lambda c: c.smembers(self.store.keys.seen(q.user_id)))
                seen = {m.decode() if isinstance(m, bytes) else str(m) for m in raw}
            except StoreUnavailable:
                pass
        infos: dict[str, ItemInfo] = {}
        if any(e.startswith("category:") for e in f.include | f.exclude) and self.catalog is not None:
            infos = await self.catalog.lookup(self.store, list(loaded.index.item_ids))
        return {i for i in loaded.index.item_ids if not allowed(i, infos.get(i), f, seen, None)}

    async def search(self, q: SearchQuery, request_id: str) -> dict[str, Any]:
        loaded = await self.ready()
        blocked = await self._blocked(q, loaded)
        results, parts = await asyncio.to_thread(self.search_sync, loaded, q, blocked)
        results = results[: q.k]
        if self.settings.emit_impressions and self.broker is not None and results:
            self._spawn(self._log_impressions(request_id, q, [r.item_id for r in results]))
        reranked = q.use_reranker and any(r.reranker_score is not None for r in results)
        return {
            "request_id": request_id, "query_text": q.query_text, "reranked": reranked,
            "reranker": self.reranker_name(loaded) if reranked else None,
            "index": loaded.index.path.name, "candidates": parts,
            "items": [{"item_id": r.item_id, "score": round(r.score, 6), "first_stage_score": round(r.first_stage_score, 6),
                       "first_stage_rank": r.first_stage_rank,
                       "reranker_score": None if r.reranker_score is None else round(r.reranker_score, 6),
                       "text": loaded.index.text_of(r.item_id)} for r in results],
        }

    @staticmethod
    def reranker_name(loaded: Loaded) -> str | None:
        if loaded.cross_encoder is None:
            return None
        return loaded.reranker_dir.name if loaded.reranker_dir else "base"

    async def _log_impressions(self, request_id: str, q: SearchQuery, items: list[str]) -> None:
        """One impression per result, with the query: the list feedback is tied to."""
        events = [Interaction(event_id=f"{request_id}-{pos}", type=EventType.impression,
                              user_id=q.user_id or ANONYMOUS, item_id=item,
                              context=EventContext(request_id=request_id, strategy=SEARCH_STRATEGY, position=pos,
                                                   query=q.query_text))
                  for pos, item in enumerate(items)]
        try:
            await self.broker.send_events(events)
        except BrokerUnavailable as exc:
            log.warning("search impressions of %s not logged: %s", request_id, exc)

    def info(self) -> dict[str, Any]:
        loaded = self.loaded
        info = dict(loaded.reranker_info) if loaded.cross_encoder is not None else {
            "note": "no reranker promoted yet: search serves the first stage; train one with "
                    "`streamrec train-reranker` (or set STREAMREC_RERANK_UNTUNED=true)"}
        return {
            "reranker": self.reranker_name(loaded), "model": info.get("model"), "base": info.get("base"),
            "started_from": info.get("started_from"), "feedbacks": info.get("feedbacks"),
            "metrics": info.get("metrics") or {}, "first_stage": info.get("first_stage") or {},
            "trained_at": info.get("trained_at"), "promoted_at": info.get("promoted_at"), "note": info.get("note"),
            "backend": info.get("backend"),
            "rerank_weight": loaded.rerank_weight if loaded.cross_encoder is not None else None,
            "layers": info.get("layers"),
            "rerank_top_n": self.settings.rerank_top_n,
            "search_index": ({"name": loaded.index.path.name, **loaded.index.info} if loaded.index else None),
        }
