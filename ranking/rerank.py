"""The reranking stage, pure: fusing first-stage rankings and applying a reranker's scores.

Search (``inference.search``) and reranked home / similar lists (``inference.reranking``)
call these two functions; so do the reranker's evaluation (``trainer.reranker.evaluate``)
and ``benchmarks/rerank.py``: what is served is what is measured.

- ``rrf`` merges rankings (e.g. the bi-encoder's and BM25's) by reciprocal rank fusion:
  an item scores ``sum_r w_r / (k + rank_r)`` over the rankings that hold it (rank from 1).
- ``apply_reranker`` reorders the top ``n`` of a first-stage list by reranker scores; the
  rest keeps its first-stage order after them. Every result keeps its first-stage score,
  and the reranked ones carry their reranker score. With a ``weight`` below 1 the top N is
  ordered by a weighted reciprocal-rank fusion of the reranker's order and the first stage's
  (weight 1: the reranker alone, 0: the first stage alone): a reranker trained on little
  feedback then adds to the first stage's evidence instead of replacing it.

>>> fused = rrf({"dense": ["a", "b", "c"], "bm25": ["b", "d"]}, k=60)
>>> [i for i, _ in fused]
['b', 'a', 'd', 'c']
>>> out = apply_reranker(fused, {"a": 0.9, "d": 0.1}, top_n=3)
>>> [(r.item_id, r.reranker_score) for r in out]
[('a', 0.9), ('d', 0.1), ('b', None), ('c', None)]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ranking.types import Scored

#: the constant of Cormack et al. (2009): it damps the weight of the very first ranks
RRF_K = 60
#: the reranker's weight in its fusion with the first stage when nothing chose one (a run trained before
#: train-reranker picked it on validation, or the untuned base)
DEFAULT_RERANK_WEIGHT = 0.5


def rrf(rankings: Mapping[str, Sequence[str]], k: int = RRF_K, weights: Mapping[str, float] | None = None) -> Scored:
    """Reciprocal rank fusion of ``rankings`` (name -> item ids, best first).

    Ties keep the order in which items were first met (rankings in the order given).

    >>> rrf({"x": ["a", "b"], "y": ["a"]}, k=1)
    [('a', 1.0), ('b', 0.3333333333333333)]
    >>> rrf({"x": ["a"]}, k=0)
    Traceback (most recent call last):
    ValueError: rrf k must be >= 1, got 0
    """
    if k < 1:
        raise ValueError(f"rrf k must be >= 1, got {k}")
    total: dict[str, float] = {}
    for name, items in rankings.items():
        w = 1.0 if weights is None else float(weights.get(name, 1.0))
        seen: set[str] = set()
        for rank, item in enumerate(items, start=1):
            if item in seen:  # a ranking that repeats an item counts it once, at its best rank
                continue
            seen.add(item)
            total[item] = total.get(item, 0.0) + w / (k + rank)
    items = list(total)
    scores = np.fromiter(total.values(), dtype=np.float64, count=len(items))
    order = np.argsort(-scores, kind="stable")
    return [(items[i], float(scores[i])) for i in order]


def fusion_weight(fixed: float | None, run_info: Mapping | None) -> float:
    """The weight a reranker run serves with: ``fixed`` (``Settings.rerank_weight``) when
    set, else the run's own (``info.json``'s ``rerank_weight``, chosen by train-reranker on
    its validation lists), else ``DEFAULT_RERANK_WEIGHT``.

    >>> fusion_weight(None, {"rerank_weight": 0.3}), fusion_weight(None, {}), fusion_weight(None, None)
    (0.3, 0.5, 0.5)
    >>> fusion_weight(1.0, {"rerank_weight": 0.3})
    1.0
    """
    if fixed is not None:
        return float(fixed)
    weight = (run_info or {}).get("rerank_weight")
    return float(weight) if weight is not None else DEFAULT_RERANK_WEIGHT


@dataclass(frozen=True)
class Reranked:
    """One result of a reranked list."""

    item_id: str
    first_stage_score: float
    first_stage_rank: int  # 0-based position in the first-stage list
    reranker_score: float | None  # None: below the reranked top N (or no score given)

    @property
    def score(self) -> float:
        """The score the list is ordered by within its part (reranker first, first stage after)."""
        return self.reranker_score if self.reranker_score is not None else self.first_stage_score


def apply_reranker(ranked: Scored, scores: Mapping[str, float], top_n: int, weight: float = 1.0) -> list[Reranked]:
    """``ranked`` (first stage, best first) with its top ``top_n`` reordered by ``scores``.

    An item of the top N without a reranker score (the model could not read it) stays
    behind the scored ones, in first-stage order. Ties keep the first-stage order.

    >>> [r.item_id for r in apply_reranker([("a", 3.0), ("b", 2.0), ("c", 1.0)], {"b": 1.0, "a": 1.0}, 2)]
    ['a', 'b', 'c']
    >>> fs = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
    >>> [[r.item_id for r in apply_reranker(fs, {"a": 0.1, "b": 0.2, "c": 0.9}, 3, w)] for w in (1.0, 0.5, 0.0)]
    [['c', 'b', 'a'], ['c', 'a', 'b'], ['a', 'b', 'c']]
    >>> apply_reranker([("a", 1.0)], {}, 0)
    Traceback (most recent call last):
    ValueError: top_n must be >= 1, got 0
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the reranker's weight must be within [0, 1], got {weight}")
    head = [(pos, item, s) for pos, (item, s) in enumerate(ranked[:top_n])]
    scored = [h for h in head if h[1] in scores and np.isfinite(scores[h[1]])]
    unscored = [h for h in head if not (h[1] in scores and np.isfinite(scores[h[1]]))]
    scored.sort(key=lambda h: (-float(scores[h[1]]), h[0]))
    if weight < 1.0:
        # weighted RRF of the two orders of the scored head; ties keep the reranker's order
        fused = {h[1]: weight / (RRF_K + n) + (1.0 - weight) / (RRF_K + 1 + h[0]) for n, h in enumerate(scored, 1)}
        scored.sort(key=lambda h: -fused[h[1]])
    out = [Reranked(item, float(s), pos, float(scores[item])) for pos, item, s in scored]
    out += [Reranked(item, float(s), pos, None) for pos, item, s in unscored]
    out += [Reranked(item, float(s), pos, None) for pos, (item, s) in enumerate(ranked[top_n:], start=top_n)]
    return out


def dcg(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first ``k`` gains (``(2^g - 1) / log2(rank + 1)``).

    >>> round(dcg([1, 0, 1], 10), 4)
    1.5
    """
    g = np.asarray(list(gains)[:k], dtype=np.float64)
    return float(np.sum((np.power(2.0, g) - 1.0) / np.log2(np.arange(2, g.size + 2)))) if g.size else 0.0


def ndcg_at_k(gains_in_order: Sequence[float], k: int = 10, all_gains: Sequence[float] | None = None) -> float:
    """NDCG@k of a list whose items have ``gains_in_order`` (graded relevance, 0 = none).

    The ideal ordering is that of ``all_gains`` (every judged item of the query, also those
    the list missed) when given, else of the list's own gains. A query without a relevant
    item scores 0.

    >>> ndcg_at_k([0, 1], 10), ndcg_at_k([1, 0], 10)
    (0.6309297535714575, 1.0)
    >>> round(ndcg_at_k([1, 0], 10, all_gains=[1, 1]), 4)
    0.6131
    """
    ideal = dcg(sorted(all_gains if all_gains is not None else gains_in_order, reverse=True), k)
    return dcg(gains_in_order, k) / ideal if ideal > 0 else 0.0


def reciprocal_rank(gains_in_order: Sequence[float], k: int | None = None) -> float:
    """1 / the rank of the first relevant item (0 when there is none within ``k``).

    >>> reciprocal_rank([0, 0, 1]), reciprocal_rank([0, 0, 1], k=2)
    (0.3333333333333333, 0.0)
    """
    for rank, g in enumerate(list(gains_in_order)[:k] if k else gains_in_order, start=1):
        if g > 0:
            return 1.0 / rank
    return 0.0


def query_from_items(texts: Sequence[str | None], max_items: int = 3, max_chars: int = 600) -> str:
    """The query side of a list served without a query (home, similar): the text of the
    user's most recent items (or of the item a similar list is for), newest first.

    >>> query_from_items(["Wing lift. About lift.", None, "Heat transfer"], max_items=2)
    'Wing lift. About lift. | Heat transfer'
    """
    kept = [t.strip() for t in texts if t and t.strip()][:max_items]
    if not kept:
        return ""
    per = max(1, max_chars // len(kept))
    return " | ".join(t[:per] for t in kept)
