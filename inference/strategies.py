"""Home-list strategies: popularity, one trained model, a weighted hybrid (bandit picks among these).

``rank_home`` turns a ``UserContext`` (Redis state, or its degraded stand-in) and the serving
run into the scored, filtered, diversified list; it does no I/O except the item metadata
lookup. Candidates of a model strategy come from the run's FAISS index (the user's embedding,
or the mean of their recent items' embeddings for users the run does not know) and from
the Redis state (co-occurrence pairs of recent items, trending, segment popularity); the
selected model then scores them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.models import ServingRun
from ranking.diversity import cap_categories, fill, mmr, similarity_matrix
from ranking.filters import Filters, ItemInfo, allowed, apply_filters
from ranking.reasons import Provenance, reason
from ranking.scores import minmax as normalise
from inference.retrieval import ItemCatalog, UserContext, ann_search
from inference.store import RedisStore
from schemas.errors import ModelNotTrained

#: Model strategies the API always names (and answers 503 for while no run has them).
MODEL_STRATEGIES = ("ncf", "two_tower", "lightfm", "content")
BUILTIN = ("popularity", "hybrid", "bandit")


def strategy_names() -> list[str]:
    """Every valid ``strategy`` value: the built-ins, the named models and the trainer's registry."""
    names = list(BUILTIN) + list(MODEL_STRATEGIES)
    try:
        from trainer.models import MODELS

        names += sorted(n for n in MODELS if n not in names)
    except Exception:  # noqa: BLE001 - the registry is optional for serving popularity
        pass
    return names


@dataclass
class HomeQuery:
    user_id: str
    k: int
    strategy: str
    explain: bool = False
    filters: Filters = field(default_factory=Filters)
    mmr_lambda: float = 0.7


@dataclass
class Candidates:
    scored: list[tuple[str, float]]
    prov: Provenance


def _model_candidates(serving: ServingRun, name: str, ctx: UserContext, n: int) -> Candidates | None:
    """Candidates scored by one model, or None when the model knows nothing of the user."""
    model = serving.models[name]
    data = model.data
    ids = data.item_ids
    prov = Provenance()
    pos: list[int] = []
    index = serving.run.indexes.get(name)
    uidx = data.user_index.get(ctx.user_id)
    if uidx is not None:
        scores = model.score_matrix(np.array([uidx]))[0]
        user_emb = serving.user_vectors(name) if index is not None else None
        if user_emb is not None and user_emb.shape[1] == index.d:
            ann_pos, _ = ann_search(index, user_emb[uidx], n)
            pos = ann_pos.tolist()
        else:
            top = np.argpartition(-scores, min(n, len(scores) - 1))[:n] if len(scores) > n else np.arange(len(scores))
            pos = top.tolist()
    else:
        emb = serving.run.embeddings.get(name)
        recent_pos = [data.item_index[i] for i in ctx.recent if i in data.item_index]
        if emb is None or index is None or not recent_pos:
            scores = None
        else:
            query = emb[recent_pos].mean(axis=0)
            query /= max(float(np.linalg.norm(query)), 1e-12)
            ann_pos, _ = ann_search(index, query, n)
            pos = ann_pos.tolist()
            scores = emb @ query  # cosine to the user's recent taste
            best_src = np.argmax(emb[pos] @ emb[recent_pos].T, axis=1) if pos else []
            for p, s in zip(pos, best_src):
                prov.similar_to[str(ids[p])] = str(ids[recent_pos[s]])
        if scores is None and not ctx.pairs:
            return None
    # real-time candidates from Redis, scored by the same model
    extra = []
    for src, rows in ctx.pairs.items():
        for item, _ in rows:
            prov.viewed_with.setdefault(item, src)
            extra.append(item)
    for item, _ in ctx.trending[:20]:
        prov.trending.add(item)
        extra.append(item)
    for item, _ in ctx.pop_segment[:20]:
        extra.append(item)
    seen_pos = set(pos)
    for item in extra:
        p = data.item_index.get(item)
        if p is not None and p not in seen_pos:
            pos.append(p)
            seen_pos.add(p)
    if scores is None:  # a user the model cannot score: co-occurrence order
        out = []
        for src, rows in ctx.pairs.items():
            out += rows
        return Candidates(sorted(out, key=lambda t: -t[1]), prov)
    return Candidates([(str(ids[p]), float(scores[p])) for p in pos], prov)


def _require(serving: ServingRun | None, name: str) -> ServingRun:
    if serving is None or name not in serving.models:
        raise ModelNotTrained(name)
    return serving


def _popularity(ctx: UserContext) -> Candidates:
    prov = Provenance(popular_segment=ctx.segment if ctx.pop_segment else None)
    prov.popular = {i for i, _ in ctx.popularity}
    return Candidates(list(ctx.popularity), prov)


def _hybrid(serving: ServingRun | None, weights: dict[str, float], ctx: UserContext, n: int) -> tuple[Candidates, str | None]:
    """Weighted sum of min-max normalised scores of the run's models and popularity."""
    parts: list[tuple[float, Candidates]] = []
    used = []
    for name, w in weights.items():
        if name == "popularity" or w <= 0 or serving is None or name not in serving.models:
            continue
        got = _model_candidates(serving, name, ctx, n)
        if got is not None and got.scored:
            parts.append((w, got))
            used.append(name)
    pop = _popularity(ctx)
    if not parts:
        return pop, None
    prov = Provenance(popular_segment=pop.prov.popular_segment, popular=set())
    total: dict[str, float] = {}
    for w, cand in parts:
        norm = normalise(np.array([s for _, s in cand.scored]))
        for (item, _), s in zip(cand.scored, norm):
            total[item] = total.get(item, 0.0) + w * float(s)
        for attr in ("viewed_with", "similar_to", "bought_with"):
            getattr(prov, attr).update(getattr(cand.prov, attr))
        prov.trending |= cand.prov.trending
    w_pop = weights.get("popularity", 0.0)
    if w_pop > 0 and ctx.popularity:
        pop_scores = dict(ctx.popularity[:n])
        logs = np.log1p(np.maximum(np.array(list(pop_scores.values())), 0))
        for (item, _), s in zip(pop_scores.items(), normalise(logs)):
            total[item] = total.get(item, 0.0) + w_pop * float(s)
            prov.popular.add(item)
    return Candidates(sorted(total.items(), key=lambda t: -t[1]), prov), "+".join(used)


async def rank_home(q: HomeQuery, ctx: UserContext, serving: ServingRun | None, catalog: ItemCatalog,
                    store: RedisStore | None, weights: dict[str, float], n: int, category_cap: int | None,
                    fallback: list[tuple[str, float]]) -> dict[str, Any]:
    """The response payload (without ``request_id``) of one home list."""
    strategy = q.strategy
    model_label: str | None = None
    if strategy == "popularity":
        cand = _popularity(ctx)
    elif strategy == "hybrid":
        cand, model_label = _hybrid(serving, weights, ctx, n)
    else:
        serving = _require(serving, strategy)
        cand = _model_candidates(serving, strategy, ctx, n) or Candidates([], Provenance())
        model_label = strategy
    # popularity keeps its order: segment list first, then global (their scales differ)
    ranked = cand.scored if strategy == "popularity" else sorted(cand.scored, key=lambda t: -t[1])
    seen = ctx.seen
    cap = q.filters.category_cap if q.filters.category_cap is not None else category_cap
    needs_meta = ctx.level is not None or cap or q.explain or any(
        e.startswith("category:") for e in q.filters.include | q.filters.exclude)
    pool = ranked[: max(q.k * 20, 100)]
    fallback_pool = (ctx.popularity or fallback)[: q.k * 5 + len(seen) + 50]
    infos: dict[str, ItemInfo] = {}
    if needs_meta or strategy != "popularity":
        infos = await catalog.lookup(store, [i for i, _ in pool] + [i for i, _ in fallback_pool[: q.k * 3]])
    kept = apply_filters(pool, infos, q.filters, seen, ctx.level)
    categories = {i: (infos[i].category if i in infos else None) for i, _ in kept}
    if strategy != "popularity" and q.mmr_lambda < 1.0 and len(kept) > q.k:
        vectors: dict[str, np.ndarray] = {}
        sim_name = serving.similarity_model() if serving is not None else None
        if sim_name is not None:
            emb = serving.run.embeddings[sim_name]
            for item, _ in kept[: q.k * 3]:
                p = serving.item_index.get(item)
                if p is not None:
                    vectors[item] = emb[p]
        pool_mmr = kept[: q.k * 3]
        kept = mmr(pool_mmr, q.k * 2, q.mmr_lambda, similarity_matrix([i for i, _ in pool_mmr], vectors, categories))
    kept = cap_categories(kept, categories, cap)[: q.k]

    def accept(item: str) -> bool:
        info = infos.get(item)
        if not allowed(item, info, q.filters, seen, ctx.level):
            return False
        if cap and info is not None and info.category is not None:
            return sum(1 for i, _ in kept if categories.get(i) == info.category) < cap
        return True

    kept, added = fill(kept, fallback_pool, q.k, accept)
    if added:
        cand.prov.popular |= added
        if cand.prov.popular_segment is None and ctx.pop_segment:
            cand.prov.popular_segment = ctx.segment
    titles = {i: (infos[i].title if i in infos else None) for i in set(infos)} if q.explain else {}
    items = [
        {"item_id": item, "score": round(float(score), 6),
         "reason": reason(item, cand.prov, titles, model_label) if q.explain else None}
        for item, score in kept
    ]
    return {
        "user_id": q.user_id,
        "strategy": strategy,
        "model_version": serving.run_id if serving is not None else None,
        "cached": False,
        "degraded": ctx.degraded,
        "items": items,
    }

