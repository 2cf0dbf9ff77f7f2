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

from typing import Callable

import numpy as np

from ranking.basket.cover import CoverState
from ranking.basket.scoring import Candidate
from ranking.diversity import CategoryCap, greedy_mmr
from ranking.scores import minmax, rescale

#: ``similarities(i)`` → redundancy of the ``i``-th candidate with each candidate, in [0, 1]
#: (``ranking.diversity.SimilarityRows.row`` over the candidates).
Similarities = Callable[[int], np.ndarray]


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
    """Greedy selection, best first: the home policy's MMR (``ranking.diversity.greedy_mmr``)
    with the basket's constraints.

    - the pair quota wins over everything: once the free slots equal the pair results still
      owed, only pair candidates are taken (the quota is cut to what pairs offer);
    - the category cap (``ranking.diversity.CategoryCap``) is soft: it is lifted only when
      nothing else is left to fill k;
    - with ``diversify``, each pick maximises ``λ·relevance − (1−λ)·max similarity`` to the
      items already picked (relevance = score rescaled to [0, 1] over the pool, ``minmax``);
      without it the order is relevance alone;
    - with a ``cover`` state (``ranking.basket.cover``), each pick also adds
      ``cover_weight × coverage gain`` (rescaled to [0, 1] over the allowed candidates, ``max``):
      the probability the candidate is in the basket while no earlier pick is.
    """
    if not ranked or k <= 0:
        return []
    ids = [c.item_id for c in ranked]
    rel = minmax(np.array([c.score for c in ranked], dtype=np.float64))
    pairs = np.array([c.from_pairs for c in ranked], dtype=bool)
    cap = CategoryCap([category(i) or None for i in ids], max(cap_per_category, 0))
    quota = min(pair_quota, int(pairs.sum()), k)
    state = {"picked": 0, "pairs": 0}

    def allowed(free: np.ndarray) -> np.ndarray:
        ok = free & pairs if quota - state["pairs"] >= k - state["picked"] else free
        if cap.cap:
            under = ok & cap.under()
            if under.any():
                ok = under
        return ok

    def gain(ok: np.ndarray) -> np.ndarray:
        return cover_weight * rescale(np.where(ok, cover.gains(), 0.0), "max")

    def on_pick(i: int) -> None:
        state["picked"] += 1
        state["pairs"] += int(pairs[i])
        cap.take(i)
        if cover is not None:
            cover.pick(ids[i])

    chosen = greedy_mmr(rel, k, mmr_lambda if diversify else 1.0, similarities, allowed,
                        gain if cover is not None and cover_weight > 0 else None, on_pick)
    return [ranked[i] for i in chosen]
