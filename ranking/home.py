"""The home policy: model scores and real-time signals in, one served list out.

Two steps, both pure, called in this order by the API (``inference.home``), by ``streamrec
recommend`` and by the trainer's policy evaluation (``trainer.policy_eval``):

1. ``candidates`` merges the policy's parts — each model's scores for the user
   (``ModelScores``: a whole-catalogue row, or a candidate set) and popularity when it is a
   component — into one blended, ranked pool; seen items are left out before the pool is
   cut, so a heavy user's pool is never mostly seen items. With no usable model score it
   is the popularity list (segment first, then global).
2. ``finish`` applies the request's filters, MMR (the policy's λ), the category cap and the
   popularity fill, and gives reasons. It needs item metadata only for the items
   ``meta_items`` names; the caller looks those up (the API in Redis, offline in the run).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ranking.diversity import cap_categories, fill, mmr, similarity_matrix
from ranking.filters import Filters, ItemInfo, allowed, apply_filters
from ranking.policy import POPULARITY, Policy
from ranking.reasons import Provenance, reason
from ranking.scores import blend, rescale
from ranking.signals import UserSignals
from ranking.types import Scored


@dataclass
class ModelScores:
    """One model's scores for one user over ``items`` (ids, aligned with ``scores``).

    ``full`` marks a row over the run's whole catalogue (``items`` is then the run's item
    list, the same object for every model of a run), which lets the blend stay in numpy."""

    items: Sequence[str]
    scores: np.ndarray
    prov: Provenance = field(default_factory=Provenance)
    full: bool = False


@dataclass(frozen=True)
class HomeRequest:
    k: int
    filters: Filters = field(default_factory=Filters)
    explain: bool = False


@dataclass
class Pool:
    """Blended candidates, best first, with why each is there and the popularity fallback."""

    ranked: Scored
    prov: Provenance
    label: str | None  # the models that scored this user, e.g. "ease+multvae"; None: popularity
    fallback: Scored
    keep_order: bool = False  # popularity: segment list first, then global (their scales differ)


@dataclass
class HomeList:
    items: Scored
    reasons: list[str | None]
    label: str | None


def pool_size(k: int) -> int:
    """How many blended candidates go on to filtering and MMR.

    >>> pool_size(10), pool_size(2)
    (200, 100)
    """
    return max(k * 20, 100)


def _popularity_pool(signals: UserSignals) -> tuple[Scored, Provenance]:
    prov = Provenance(popular_segment=signals.segment if signals.pop_segment else None)
    prov.popular = {i for i, _ in signals.popularity}
    return list(signals.popularity), prov


def _merge_prov(into: Provenance, part: Provenance) -> None:
    for attr in ("viewed_with", "similar_to", "bought_with"):
        for item, src in getattr(part, attr).items():
            getattr(into, attr).setdefault(item, src)
    into.trending |= part.trending


def _popularity_scores(signals: UserSignals, items: Sequence[str] | None) -> tuple[Sequence[str], np.ndarray]:
    """log(1 + popularity), over ``items`` when given (unlisted items count 0), else over the list."""
    pop = dict(signals.pop_global)
    if items is None:
        ids = list(pop)
        return ids, np.log1p(np.maximum(np.array([pop[i] for i in ids], dtype=np.float64), 0.0))
    return items, np.log1p(np.maximum(np.array([pop.get(i, 0.0) for i in items], dtype=np.float64), 0.0))


def _top(items: Sequence[str], scores: np.ndarray, n: int, skip: set[str]) -> Scored:
    """The ``n`` best (item, score) pairs, skipping ``skip``; ties keep the catalogue order."""
    order = np.argsort(-scores, kind="stable")
    out: Scored = []
    for p in order:
        if not np.isfinite(scores[p]):
            break
        item = items[p]
        if item in skip:
            continue
        out.append((item, float(scores[p])))
        if len(out) >= n:
            break
    return out


def candidates(policy: Policy, signals: UserSignals, parts: Mapping[str, ModelScores | None],
               request: HomeRequest, fallback: Scored = ()) -> Pool:
    """The blended candidate pool of ``policy`` for one user (step 1)."""
    fallback_pool = list(signals.popularity or fallback)[: request.k * 5 + len(signals.seen) + 50]
    weights = policy.weights
    used = {m: parts[m] for m in policy.models if parts.get(m) is not None and len(parts[m].items)}
    if not used:
        ranked, prov = _popularity_pool(signals)
        if not ranked:
            ranked = list(fallback)
            prov.popular = {i for i, _ in ranked}
        return Pool(ranked, prov, None, fallback_pool, keep_order=True)
    prov = Provenance(popular_segment=signals.segment if signals.pop_segment else None)
    for part in used.values():
        _merge_prov(prov, part.prov)
    skip = signals.seen if request.filters.exclude_seen else set()
    n = pool_size(request.k)
    w_pop = weights.get(POPULARITY, 0.0)
    first = next(iter(used.values()))
    if all(p.full and p.items is first.items for p in used.values()):
        rows = {m: p.scores for m, p in used.items()}
        if w_pop > 0:
            rows[POPULARITY] = _popularity_scores(signals, first.items)[1]
            prov.popular = {i for i, _ in signals.pop_global}
        mixed = blend(rows, weights, policy.rescale)
        ranked = _top(first.items, mixed, n, skip)
    else:  # candidate sets differ: blend over their union, a part's floor where it has no score
        total: dict[str, float] = {}
        sets = [(weights[m], p.items, p.scores) for m, p in used.items()]
        if w_pop > 0 and signals.pop_global:
            ids, vals = _popularity_scores(signals, None)
            sets.append((w_pop, ids, vals))
            prov.popular = set(ids)
        scaled = []
        for w, items, scores in sets:
            r = rescale(np.asarray(scores, dtype=np.float64), policy.rescale)
            scaled.append((w, dict(zip(items, r.tolist())), float(r.min()) if r.size else 0.0))
        for _, mapping, _ in scaled:
            for item in mapping:
                total.setdefault(item, 0.0)
        for w, mapping, floor in scaled:
            for item in total:
                total[item] += w * mapping.get(item, floor)
        ids = list(total)
        ranked = _top(ids, np.array([total[i] for i in ids]), n, skip)
    return Pool(ranked, prov, "+".join(used), fallback_pool)


def needs_meta(policy: Policy, signals: UserSignals, request: HomeRequest) -> bool:
    """Whether ``finish`` reads item metadata for this request (otherwise it may be left empty)."""
    f = request.filters
    return bool(signals.level is not None or f.category_cap or policy.category_cap or request.explain
                or policy.mmr_lambda < 1.0 or any(e.startswith("category:") for e in f.include | f.exclude))


def meta_items(pool: Pool, request: HomeRequest) -> list[str]:
    """The items whose metadata ``finish`` may read."""
    return [i for i, _ in pool.ranked[: pool_size(request.k)]] + [i for i, _ in pool.fallback[: request.k * 3]]


def finish(policy: Policy, pool: Pool, signals: UserSignals, request: HomeRequest,
           infos: Mapping[str, ItemInfo], vectors: Mapping[str, np.ndarray]) -> HomeList:
    """Filters, MMR, category cap, popularity fill and reasons (step 2).

    ``infos``: metadata of (some of) ``meta_items``; ``vectors``: L2-normalised item
    embeddings for MMR's similarity (items without one fall back to their category)."""
    k, f = request.k, request.filters
    seen = signals.seen
    cap = f.category_cap if f.category_cap is not None else policy.category_cap
    kept = apply_filters(pool.ranked[: pool_size(k)], infos, f, seen, signals.level)
    categories = {i: (infos[i].category if i in infos else None) for i, _ in kept}
    if not pool.keep_order and policy.mmr_lambda < 1.0 and len(kept) > k:
        window = kept[: k * 3]
        sim = similarity_matrix([i for i, _ in window], {i: vectors[i] for i, _ in window if i in vectors}, categories)
        kept = mmr(window, k * 2, policy.mmr_lambda, sim)
    kept = cap_categories(kept, categories, cap)[:k]
    prov = pool.prov
    if policy.fill or pool.keep_order:
        def accept(item: str) -> bool:
            info = infos.get(item)
            if not allowed(item, info, f, seen, signals.level):
                return False
            if cap and info is not None and info.category is not None:
                return sum(1 for i, _ in kept if categories.get(i) == info.category) < cap
            return True

        kept, added = fill(kept, pool.fallback, k, accept)
        if added:
            prov.popular |= added
            if prov.popular_segment is None and signals.pop_segment:
                prov.popular_segment = signals.segment
    titles = {i: infos[i].title for i in infos} if request.explain else {}
    reasons = [reason(i, prov, titles, pool.label) if request.explain else None for i, _ in kept]
    return HomeList(kept, reasons, pool.label)


def rank(policy: Policy, signals: UserSignals, parts: Mapping[str, ModelScores | None], request: HomeRequest,
         infos: Mapping[str, ItemInfo], vectors: Mapping[str, np.ndarray], fallback: Scored = ()) -> HomeList:
    """Both steps, for callers that hold the metadata in memory (offline evaluation, batch
    recommend). The API runs the same two steps with a metadata lookup in between.

    >>> sig = UserSignals("u", seen={"a"}, pop_global=[("a", 9.0), ("d", 5.0), ("c", 1.0)])
    >>> items = ["a", "b", "c", "d"]
    >>> parts = {"m": ModelScores(items, np.array([4.0, 3.0, 2.0, 1.0]), full=True)}
    >>> [i for i, _ in rank(Policy.single("m"), sig, parts, HomeRequest(k=2), {}, {}).items]
    ['b', 'c']
    >>> [i for i, _ in rank(Policy.popularity(), sig, parts, HomeRequest(k=2), {}, {}).items]
    ['d', 'c']
    """
    request_pool = candidates(policy, signals, parts, request, fallback)
    return finish(policy, request_pool, signals, request, infos, vectors)
