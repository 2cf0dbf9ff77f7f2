"""Assortment control: pick k of the scored candidates under a per-category cap, an MMR
diversity trade-off and a minimum number of results taken from pairs.

>>> from ranking.basket.scoring import Candidate
>>> cs = [Candidate("a", 1.0, pair=1.0), Candidate("b", 0.9, pair=0.5), Candidate("p", 0.8)]
>>> cat = {"a": "milk", "b": "milk", "p": "bread"}.get
>>> [c.item_id for c in select(cs, 2, cap_per_category=1, category=cat)]
['a', 'p']
>>> [c.item_id for c in select(cs, 2, pair_quota=2, cap_per_category=1, category=cat)]
['a', 'b']
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ranking.basket.cover import CoverState
from ranking.basket.scoring import Candidate

#: ``similarities(item, pool_ids)`` → redundancy of ``item`` with each pool item, in [0, 1].
Similarities = Callable[[str, Sequence[str]], np.ndarray]


def select(
    ranked: list[Candidate],
    k: int,
    cap_per_category: int = 0,
    diversify: bool = False,
    mmr_lambda: float = 0.7,
    pair_quota: int = 0,
    category: Callable[[str], str | None] = lambda _: None,
    similarities: Similarities | None = None,
    cover: CoverState | None = None,
    cover_weight: float = 0.0,
) -> list[Candidate]:
    """Greedy selection, best first.

    - the pair quota wins over everything: once the free slots equal the pair results still
      owed, only pair candidates are taken (the quota is cut to what pairs offer);
    - the category cap is soft: it is lifted only when nothing else is left to fill k;
    - with ``diversify``, each pick maximises ``λ·relevance − (1−λ)·max similarity`` to the
      items already picked (relevance = score rescaled to [0, 1] over the pool);
    - with a ``cover`` state (``ranking.basket.cover``), each pick also adds
      ``cover_weight × coverage gain`` (rescaled to [0, 1] over the allowed candidates): the
      probability the candidate is in the basket while no earlier pick is.
    """
    if not ranked or k <= 0:
        return []
    ids = [c.item_id for c in ranked]  # the same list object on every call: callers may cache by it
    scores = np.array([c.score for c in ranked], dtype=np.float64)
    span = (scores.max() - scores.min()) or 1.0
    rel = (scores - scores.min()) / span
    pairs = np.array([c.from_pairs for c in ranked], dtype=bool)
    cats = [category(i) or "" for i in ids]
    codes = {c: n for n, c in enumerate(sorted(set(cats) - {""}))}
    cat_code = np.array([codes.get(c, -1) for c in cats], dtype=np.int64)
    per_cat = np.zeros(len(codes) + 1, dtype=np.int64)  # last slot: no category, never capped
    free = np.ones(len(ranked), dtype=bool)
    max_sim = np.zeros(len(ranked), dtype=np.float64)
    quota = min(pair_quota, int(pairs.sum()), k)
    order = np.arange(len(ranked))
    chosen: list[int] = []
    n_pairs = 0
    while len(chosen) < k and free.any():
        allowed = free & pairs if quota - n_pairs >= k - len(chosen) else free.copy()
        if cap_per_category > 0:
            under = (cat_code < 0) | (per_cat[cat_code] < cap_per_category)
            if (allowed & under).any():
                allowed &= under
        use_cover = cover is not None and cover_weight > 0
        if diversify and chosen or use_cover:
            value = mmr_lambda * rel - (1 - mmr_lambda) * max_sim if diversify and chosen else rel.copy()
            if use_cover:
                gain = np.where(allowed, cover.gains(), 0.0)
                value = value + cover_weight * gain / (gain.max() or 1.0)
            value = np.where(allowed, value, -np.inf)
            best = int(np.lexsort((order, -scores, -value))[0])  # ties: higher score, then rank
        else:
            best = int(np.flatnonzero(allowed)[0])  # ranked input: the first allowed is the best
        chosen.append(best)
        free[best] = False
        if cover is not None:
            cover.pick(ids[best])
        n_pairs += int(pairs[best])
        if cat_code[best] >= 0:
            per_cat[cat_code[best]] += 1
        if diversify and similarities is not None:
            max_sim = np.maximum(max_sim, np.asarray(similarities(ids[best], ids), dtype=np.float64))
    return [ranked[i] for i in chosen]
