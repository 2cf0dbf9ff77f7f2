"""Before/after evaluation of a reranker on one validation set.

Two views of the same pairs:

- classification of like/dislike from the score (sigmoid > 0.5): accuracy, precision,
  recall, F1, AUC-ROC (scikit-learn);
- ranking: each validation list (the items of one served list that got feedback) in the
  order the first stage showed them, and reordered by the reranker (``ranking.rerank``,
  the serving path): NDCG@10 and MRR, averaged over the lists with at least one like.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ranking.rerank import apply_reranker, ndcg_at_k, reciprocal_rank

K = 10
THRESHOLD = 0.5


def predict(model, pairs: pd.DataFrame, batch_size: int = 32, progress: bool = False) -> np.ndarray:
    """Scores in [0, 1] of ``pairs`` (query, text) by a ``CrossEncoder``."""
    if pairs.empty:
        return np.empty(0, dtype=np.float64)
    inputs = list(zip(pairs["query"].astype(str), pairs["text"].astype(str)))
    return np.asarray(model.predict(inputs, batch_size=batch_size, show_progress_bar=progress), dtype=np.float64)


def classification_metrics(labels: Sequence[float], scores: Sequence[float], threshold: float = THRESHOLD) -> dict:
    """>>> m = classification_metrics([1, 0, 1, 0], [0.9, 0.2, 0.4, 0.6])
    >>> m["accuracy"], m["auc_roc"], m["confusion"]
    (0.5, 0.75, [[1, 1], [1, 1]])
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y = (np.asarray(labels, dtype=np.float64) > 0.5).astype(int)
    s = np.asarray(scores, dtype=np.float64)
    pred = (s > threshold).astype(int)
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    auc = float(roc_auc_score(y, s)) if len(set(y.tolist())) == 2 else None
    return {"accuracy": float(accuracy_score(y, pred)), "precision": float(p), "recall": float(r), "f1": float(f),
            "auc_roc": auc, "confusion": confusion_matrix(y, pred, labels=[0, 1]).tolist()}


def first_stage_order(group: pd.DataFrame) -> pd.DataFrame:
    """A list's items in the order it was shown (position; unknown positions last, by time)."""
    g = group.assign(_pos=group["position"].fillna(np.inf))
    return g.sort_values(["_pos", "timestamp"], kind="stable").drop(columns="_pos")


def ranking_metrics(pairs: pd.DataFrame, scores: Sequence[float] | None, k: int = K, weight: float = 1.0) -> dict:
    """NDCG@k and MRR over the lists of ``pairs`` (by ``list_id``); ``scores`` None: the
    first stage's order, else reordered by them fused with the shown order at ``weight``
    (the whole list is the reranked top N), as serving does (``Settings.rerank_weight``).

    >>> p = pd.DataFrame({"list_id": ["r"] * 3, "item_id": list("abc"), "label": [0.0, 0.0, 1.0],
    ...                   "position": [0, 1, 2], "timestamp": [0, 0, 0]})
    >>> ranking_metrics(p, None)["mrr"], ranking_metrics(p, [0.1, 0.2, 0.9])["mrr"]
    (0.3333333333333333, 1.0)
    """
    per = per_list(pairs, scores, k, weight)
    ndcgs, rrs = [v[0] for v in per.values()], [v[1] for v in per.values()]
    return {f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else None, "mrr": float(np.mean(rrs)) if rrs else None,
            "lists": len(ndcgs)}


def per_list(pairs: pd.DataFrame, scores: Sequence[float] | None, k: int = K,
             weight: float = 1.0) -> dict[str, tuple[float, float]]:
    """(NDCG@k, reciprocal rank) of each list of ``pairs`` that holds a like (``ranking_metrics``)."""
    df = pairs.assign(_score=np.asarray(scores, dtype=np.float64) if scores is not None else np.nan)
    out: dict[str, tuple[float, float]] = {}
    for list_id, group in df.groupby("list_id", sort=True):
        if not (group["label"] > 0.5).any():
            continue
        g = first_stage_order(group)
        shown = [(it, float(-n)) for n, it in enumerate(g["item_id"])]
        if scores is not None:
            order = [r.item_id for r in apply_reranker(shown, dict(zip(g["item_id"], g["_score"])), len(shown),
                                                       weight)]
        else:
            order = [i for i, _ in shown]
        gains = g.set_index("item_id")["label"].to_dict()
        ranked = [gains[i] for i in order]
        out[str(list_id)] = (ndcg_at_k(ranked, k), reciprocal_rank(ranked, k))
    return out


def evaluate_scores(pairs: pd.DataFrame, scores: Sequence[float], k: int = K, weight: float = 1.0) -> dict:
    """Every metric of one scorer on ``pairs`` (its lists reordered as served, at ``weight``)."""
    return {**classification_metrics(pairs["label"], scores), **ranking_metrics(pairs, scores, k, weight)}


#: the fusion weights train-reranker tries on its validation lists (ranking.rerank.apply_reranker)
WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def choose_weight(pairs: pd.DataFrame, scores: Sequence[float], grid: Sequence[float] = WEIGHT_GRID,
                  prefer: float = 0.5, k: int = K) -> tuple[float, dict[float, float | None]]:
    """The weight of the reranker in its fusion with the shown order that gives the best
    NDCG@k on ``pairs``' lists, and NDCG@k at each weight of ``grid``. Ties (and a
    validation set without a liked item, where no weight has an NDCG) go to the weight
    nearest ``prefer``.

    >>> p = pd.DataFrame({"list_id": ["r"] * 3, "item_id": list("abc"), "label": [0.0, 0.0, 1.0],
    ...                   "position": [0, 1, 2], "timestamp": [0, 0, 0]})
    >>> choose_weight(p, [0.1, 0.2, 0.9], grid=(0.0, 0.5, 1.0))[0]
    0.5
    >>> choose_weight(p.assign(label=[1.0, 0.0, 0.0]), [0.1, 0.9, 0.5], grid=(0.0, 0.5, 1.0))
    (0.0, {0.0: 1.0, 0.5: 0.6309297535714575, 1.0: 0.5})
    """
    table = {float(w): ranking_metrics(pairs, scores, k, float(w))[f"ndcg@{k}"] for w in grid}
    scored = [(v, -abs(w - prefer), w) for w, v in table.items() if v is not None]
    if not scored:
        return float(prefer), table
    return max(scored)[2], table


def cross_fitted_ndcg(pairs: pd.DataFrame, scores: Sequence[float], grid: Sequence[float] = WEIGHT_GRID,
                      prefer: float = 0.5, k: int = K, seed: int = 0) -> float | None:
    """NDCG@k of the reranker fused at a weight chosen on *other* lists: the validation lists
    (those with a like) in two seeded halves, each half scored at the weight that does best on
    the other. The weight chosen on all the lists (``choose_weight``) scores them a little too
    well, most when the reranker adds nothing (the best of eleven weights on noise); this is
    what the promotion gate compares with the first stage. None below 2 lists.

    >>> p = pd.DataFrame({"list_id": list("aabb"), "item_id": list("xyzw"), "label": [0.0, 1.0, 1.0, 0.0],
    ...                   "position": [0, 1, 0, 1], "timestamp": 0})
    >>> both = p.assign(label=[0.0, 1.0, 0.0, 1.0])  # the reranker is right on both lists: weight 1 both ways
    >>> cross_fitted_ndcg(both, [0.1, 0.9, 0.1, 0.9], grid=(0.0, 1.0))
    1.0
    >>> round(cross_fitted_ndcg(p, [0.1, 0.9, 0.1, 0.9], grid=(0.0, 1.0)), 4)  # each half's weight hurts the other
    0.6309
    """
    table = {float(w): per_list(pairs, scores, k, float(w)) for w in grid}
    ids = sorted(next(iter(table.values())))
    if len(ids) < 2:
        return None
    order = np.random.default_rng(seed).permutation(len(ids))
    halves = [{ids[i] for i in order[: len(ids) // 2]}, {ids[i] for i in order[len(ids) // 2:]}]
    got = []
    for held, other in (halves, halves[::-1]):
        best = max(table, key=lambda w: (np.mean([table[w][i][0] for i in other]), -abs(w - prefer)))
        got += [table[best][i][0] for i in held]
    return float(np.mean(got))
