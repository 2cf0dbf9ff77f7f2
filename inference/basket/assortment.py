"""Assortment control: pick k of the scored candidates under a per-category cap, an MMR
diversity trade-off and a minimum number of results taken from pairs.

>>> from inference.basket.scoring import Candidate
>>> cs = [Candidate("a", 1.0, pair=1.0), Candidate("b", 0.9, pair=0.5), Candidate("p", 0.8)]
>>> cat = {"a": "milk", "b": "milk", "p": "bread"}.get
>>> [c.item_id for c in select(cs, 2, cap_per_category=1, category=cat)]
['a', 'p']
>>> [c.item_id for c in select(cs, 2, pair_quota=2, cap_per_category=1, category=cat)]
['a', 'b']
"""
from __future__ import annotations

from typing import Callable

from inference.basket.scoring import Candidate


def select(
    ranked: list[Candidate],
    k: int,
    cap_per_category: int = 0,
    diversify: bool = False,
    mmr_lambda: float = 0.7,
    pair_quota: int = 0,
    category: Callable[[str], str | None] = lambda _: None,
    similarity: Callable[[str, str], float] = lambda a, b: 0.0,
) -> list[Candidate]:
    """Greedy selection, best first.

    - the pair quota wins over everything: once the free slots equal the pair results still
      owed, only pair candidates are taken (the quota is cut to what pairs offer);
    - the category cap is soft: it is lifted only when nothing else is left to fill k;
    - with ``diversify``, each pick maximises ``λ·relevance − (1−λ)·max similarity`` to the
      items already picked (relevance = score rescaled to [0, 1] over the pool).
    """
    pool = list(ranked)
    if not pool or k <= 0:
        return []
    hi, lo = max(c.score for c in pool), min(c.score for c in pool)
    span = (hi - lo) or 1.0
    rel = {c.item_id: (c.score - lo) / span for c in pool}
    quota = min(pair_quota, sum(1 for c in pool if c.from_pairs), k)
    chosen: list[Candidate] = []
    per_cat: dict[str, int] = {}
    max_sim = {c.item_id: 0.0 for c in pool}
    while pool and len(chosen) < k:
        owed = quota - sum(1 for c in chosen if c.from_pairs)
        allowed = [c for c in pool if c.from_pairs] if owed >= k - len(chosen) else pool
        if cap_per_category > 0:
            capped = [c for c in allowed if per_cat.get(category(c.item_id) or "", 0) < cap_per_category
                      or not category(c.item_id)]
            allowed = capped or allowed
        if diversify and chosen:
            best = max(allowed, key=lambda c: (mmr_lambda * rel[c.item_id] - (1 - mmr_lambda) * max_sim[c.item_id],
                                               c.score))
        else:
            best = allowed[0]  # ranked input: the first allowed is the best
        chosen.append(best)
        pool.remove(best)
        cat = category(best.item_id)
        if cat:
            per_cat[cat] = per_cat.get(cat, 0) + 1
        if diversify:
            for c in pool:
                max_sim[c.item_id] = max(max_sim[c.item_id], similarity(c.item_id, best.item_id))
    return chosen
