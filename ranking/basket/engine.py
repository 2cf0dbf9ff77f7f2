"""Basket complements end to end, over plain inputs: segments → pool → scores → assortment.

>>> from ranking.basket.signals import BasketSignals
>>> from schemas.basket_profiles import BasketParams
>>> sig = BasketSignals(pairs={"ANY": {"milk": {"bread": 5.0, "eggs": 2.0}}}, pop_global={"beer": 9.0})
>>> [(c.item_id, reason(c, [])) for c in complements(["milk"], sig, BasketParams(), [], k=3)]
[('bread', 'bought with milk'), ('eggs', 'bought with milk'), ('beer', 'popular')]
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from ranking.basket.assortment import select
from ranking.basket.cocover import cover_select
from ranking.basket.cover import CoverState
from ranking.basket.scoring import Candidate, pool_similarities, score_candidates
from ranking.basket.segments import basket_vector, detect_segments
from ranking.basket.signals import BasketSignals
from schemas.basket_profiles import BasketParams

POOL_MIN, POOL_PER_K = 100, 20


def resolve_segments(
    profession: str | None,
    basket: list[str],
    sig: BasketSignals,
    centroids: Mapping[str, np.ndarray] | None,
    p: BasketParams,
) -> list[tuple[str, float]]:
    """The explicit profession with weight 1, else the auto-detected mix (maybe empty)."""
    if profession:
        return [(profession, 1.0)]
    if sig.embeddings is None or not centroids:
        return []
    vec = basket_vector(sig.embeddings.rows(basket))
    return detect_segments(vec, centroids, p.SEG_TOP_K, p.SEG_TEMPERATURE, p.SEG_MIN_MASS)


#: Knobs that act after scoring (on the pool's order): ``pool`` does not read them, so a
#: tuner can score a pool once and try each of their values on it. (``COCOVER_BASKETS`` is
#: not one: the size-weighted pairs, ``PAIR_SIZE_POWER``, read that many training baskets too.)
SELECTION_KNOBS = frozenset({"CAP_PER_GAMME", "DIVERSIFY", "MMR_LAMBDA", "PAIR_QUOTA", "COVERAGE_GREEDY",
                             "W_COVER_GREEDY", "COVER_SIZE_POWER", "COCOVER_RHO"})


def complements(
    basket: list[str],
    sig: BasketSignals,
    p: BasketParams,
    segments: list[tuple[str, float]],
    k: int,
) -> list[Candidate]:
    """The k complements of a basket: the scored pool (``pool``), then the assortment (``assort``)."""
    return assort(pool(basket, sig, p, segments, k), basket, sig, p, k)


def pool(basket: list[str], sig: BasketSignals, p: BasketParams, segments: list[tuple[str, float]], k: int
         ) -> list[Candidate]:
    """The head of the scored candidates that the assortment picks from, best first."""
    ranked = score_candidates(basket, sig, p, segments)
    # assortment looks at the head of the ranking only (MMR is O(k × pool)); the best pair
    # candidates stay in reach so the pair quota can still be met
    head = ranked[: max(POOL_MIN, POOL_PER_K * k)]
    if len(ranked) > len(head):
        in_head = sum(1 for c in head if c.from_pairs)
        extra = [c for c in ranked[len(head):] if c.from_pairs][: max(0, min(p.PAIR_QUOTA, k) - in_head)]
        head = head + extra
    return head


def assort(head: list[Candidate], basket: list[str], sig: BasketSignals, p: BasketParams, k: int
           ) -> list[Candidate]:
    """k of the pool: the conditional cover (``COCOVER_RHO`` > 0 and the run's baskets known),
    else the quota / category cap / MMR / Bernoulli-cover selection (``assortment.select``)."""
    if p.COCOVER_RHO > 0 and sig.index is not None:
        return cover_select(head, basket, sig.index, k, p.COCOVER_RHO, p.COCOVER_BASKETS, cover_weights(basket, sig, p))
    cover = None
    if p.COVERAGE_GREEDY and sig.cover is not None:
        cover = CoverState(sig.cover, basket, [c.item_id for c in head], p.COVER_SIZE_POWER)
    return select(
        head, k,
        cap_per_category=p.CAP_PER_GAMME, diversify=p.DIVERSIFY, mmr_lambda=p.MMR_LAMBDA,
        pair_quota=p.PAIR_QUOTA,
        category=lambda i: sig.meta[i].category if i in sig.meta else None,
        similarities=pool_similarities(sig, [c.item_id for c in head]).row if p.DIVERSIFY else None,
        cover=cover, cover_weight=p.W_COVER_GREEDY,
    )


def cover_weights(basket: list[str], sig: BasketSignals, p: BasketParams) -> dict[str, float]:
    """Weight of a basket item's training baskets in the conditional cover: 1/n_a^alpha, the
    basket item's own share of the pair normalisation (0 for raw counts, 1/2 for cosine, 1
    for the conditional probability and the rest), so the cover weighs the basket items as the
    links do."""
    alpha = {"raw": 0.0, "cosine": 0.5}.get(p.PAIR_NORM, 1.0)
    if not alpha:
        return {}
    return {a: max(sig.item_count.get(a, 1.0), 1.0) ** -alpha for a in basket}


def reason(c: Candidate, segments: list[tuple[str, float]]) -> str:
    """Why an item is there, in words (its largest score component)."""
    if c.from_pairs and c.via:
        return f"bought with {c.via}"
    parts = {k: v for k, v in c.components.items() if k != "pair"}
    top = max(parts, key=parts.get) if parts else "popg"
    if top == "emb":
        return "similar to the basket"
    if top == "popp" and segments:
        return f"popular with {segments[0][0]}"
    if top == "private_label":
        return "private label"
    return "popular"
