"""Evaluation of any ``Recommender``: plain functions of ``(model, train, test, k)``.

Conventions (the ones Microsoft Recommenders uses, so figures compare with its table):

- the **headline is full ranking**: each test user's top-k over every item they did not
  interact with in train;
- relevance is binary: every test interaction of a user is relevant;
- ``precision@k = hits / k``; ``recall@k = hits / |test items of the user|``;
- ``ndcg@k`` = DCG of the binary hits over the ideal DCG of ``min(|test items|, k)`` hits;
- ``hit_rate@k`` = share of users with at least one hit; ``mrr@k`` = 1 / rank of the first
  hit (0 when none in the top k); ``map@k`` = sum of precision at each hit / ``min(|test items|, k)``;
- ``coverage@k`` = share of the catalogue that appears in at least one top-k list;
- averages are over users present in both train and test.

**Sampled ranking** (``sampled_*`` keys) ranks each test item against ``n_negatives`` (99)
random items the user never interacted with; it is reported beside the headline, never
instead of it. Ties count against the model (a constant scorer gets no credit).

``rmse`` is for models that predict a rating-like value (``model.predicts_ratings``).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp

from trainer.base import Recommender, top_k
from trainer.data.interactions import Interactions

_BATCH = 512


def _frame(test: pd.DataFrame | Interactions) -> pd.DataFrame:
    return test.events if isinstance(test, Interactions) else test


def relevance_matrix(train: Interactions, test: pd.DataFrame | Interactions) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary users × items matrix of test interactions in train's index space, and the number
    of distinct relevant items per user (items unknown to train count: they are misses).

    >>> ev = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    >>> tr = Interactions.from_events(ev)
    >>> rel, n = relevance_matrix(tr, pd.DataFrame({"user_id": ["a", "a"], "item_id": ["y", "z"]}))
    >>> rel.toarray().tolist(), n.tolist()
    ([[0.0, 1.0], [0.0, 0.0]], [2, 0])
    """
    frame = _frame(test)[["user_id", "item_id"]].astype(str).drop_duplicates()
    uidx = pd.Index(train.user_ids).get_indexer(frame["user_id"])
    iidx = pd.Index(train.item_ids).get_indexer(frame["item_id"])
    known_user = uidx >= 0
    n_rel = np.bincount(uidx[known_user], minlength=train.n_users)
    both = known_user & (iidx >= 0)
    rel = sp.csr_matrix(
        (np.ones(both.sum(), dtype=np.float32), (uidx[both], iidx[both])), shape=(train.n_users, train.n_items)
    )
    rel.sum_duplicates()
    return rel, n_rel


def top_k_items(model: Recommender, uidx: np.ndarray, k: int, exclude_seen: bool = True) -> np.ndarray:
    """Top-k item indices for users (by index); -1 where fewer than k items can be ranked."""
    out = np.full((len(uidx), k), -1, dtype=np.int64)
    for start in range(0, len(uidx), _BATCH):
        chunk = uidx[start : start + _BATCH]
        idx, val = top_k(model.score_matrix(chunk, exclude_seen=exclude_seen), k)
        idx = np.where(np.isfinite(val), idx, -1)
        out[start : start + len(chunk), : idx.shape[1]] = idx
    return out


def ranking_metrics_from_hits(hits: np.ndarray, n_rel: np.ndarray, k: int) -> dict[str, float]:
    """Mean ranking metrics from a users × k boolean hit matrix and relevant counts.

    >>> m = ranking_metrics_from_hits(np.array([[True, False]]), np.array([2]), 2)
    >>> m["precision@2"], m["recall@2"], m["hit_rate@2"], m["mrr@2"]
    (0.5, 0.5, 1.0, 1.0)
    >>> round(m["ndcg@2"], 4), m["map@2"]
    (0.6131, 0.5)
    """
    hits = hits.astype(np.float64)
    n_hits = hits.sum(axis=1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ disc
    ideal_n = np.minimum(n_rel, k)
    idcg = np.cumsum(disc)[np.maximum(ideal_n - 1, 0)]
    first = np.where(n_hits > 0, hits.argmax(axis=1), -1)
    prec_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    return {
        f"precision@{k}": float(np.mean(n_hits / k)),
        f"recall@{k}": float(np.mean(n_hits / n_rel)),
        f"ndcg@{k}": float(np.mean(dcg / idcg)),
        f"hit_rate@{k}": float(np.mean(n_hits > 0)),
        f"mrr@{k}": float(np.mean(np.where(first >= 0, 1.0 / (np.maximum(first, 0) + 1), 0.0))),
        f"map@{k}": float(np.mean((prec_at * hits).sum(axis=1) / ideal_n)),
    }


def _test_users(train: Interactions, test: pd.DataFrame | Interactions) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    rel, n_rel = relevance_matrix(train, test)
    users = np.flatnonzero(n_rel > 0)
    if len(users) == 0:
        raise ValueError("no test user is known to the training data: nothing to evaluate")
    return rel, n_rel, users


def top_metrics(top: np.ndarray, rel: sp.csr_matrix, n_rel: np.ndarray, users: np.ndarray, n_items: int,
                k: int) -> dict[str, float]:
    """The figures of ranked lists ``top`` (users × k item indices, -1 for none) of ``users``."""
    hits = np.zeros(top.shape, dtype=bool)
    for start in range(0, len(users), _BATCH):
        block = rel[users[start : start + _BATCH]].toarray() > 0
        t = top[start : start + _BATCH]
        hits[start : start + len(t)] = np.take_along_axis(block, np.maximum(t, 0), axis=1) & (t >= 0)
    metrics = ranking_metrics_from_hits(hits, n_rel[users], k)
    metrics[f"coverage@{k}"] = catalog_coverage(top, n_items)
    metrics["users"] = int(len(users))
    return metrics


def ranking_metrics(
    model: Recommender, train: Interactions, test: pd.DataFrame | Interactions, k: int = 10
) -> dict[str, float]:
    """Full-ranking metrics over every unseen item (the headline figures), plus ``coverage@k``."""
    rel, n_rel, users = _test_users(train, test)
    top = top_k_items(model, users, k)
    return top_metrics(top, rel, n_rel, users, train.n_items, k)


def list_metrics(
    lists: Mapping[str, Iterable[str]], train: Interactions, test: pd.DataFrame | Interactions, k: int = 10
) -> dict[str, float]:
    """The same figures for ranked lists already made (a policy's served lists): users are
    the test users known to train, exactly as in ``ranking_metrics``; a user without a list
    counts as all misses.

    >>> tr = Interactions.from_events(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}))
    >>> m = list_metrics({"a": ["y", "x"]}, tr, pd.DataFrame({"user_id": ["a"], "item_id": ["y"]}), k=2)
    >>> m["precision@2"], m["hit_rate@2"], m["users"]
    (0.5, 1.0, 1)
    """
    rel, n_rel, users = _test_users(train, test)
    top = np.full((len(users), k), -1, dtype=np.int64)
    for row, u in enumerate(users):
        idx = [train.item_index.get(i, -1) for i in list(lists.get(str(train.user_ids[u]), []))[:k]]
        top[row, : len(idx)] = idx
    return top_metrics(top, rel, n_rel, users, train.n_items, k)


def catalog_coverage(top: np.ndarray, n_items: int) -> float:
    """Share of the catalogue recommended to at least one user.

    >>> catalog_coverage(np.array([[0, 1], [1, -1]]), 4)
    0.5
    """
    return float(len(np.unique(top[top >= 0])) / max(n_items, 1))


def sampled_ranking_metrics(
    model: Recommender, train: Interactions, test: pd.DataFrame | Interactions, k: int = 10,
    n_negatives: int = 99, seed: int = 0,
) -> dict[str, float]:
    """Rank each test item among ``n_negatives`` random unseen items (the "sampled" protocol).

    Test items unknown to train are skipped (they cannot be scored). Keys are ``sampled_*``.
    """
    rel, _ = relevance_matrix(train, test)
    seen = train.seen().tocsr()
    rng = np.random.default_rng(seed)
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    ranks: list[np.ndarray] = []
    for start in range(0, len(users), _BATCH):
        chunk = users[start : start + _BATCH]
        scores = model.score_matrix(chunk, exclude_seen=False)
        for row, u in enumerate(chunk):
            targets = rel.indices[rel.indptr[u] : rel.indptr[u + 1]]
            banned = np.zeros(train.n_items, dtype=bool)
            banned[seen.indices[seen.indptr[u] : seen.indptr[u + 1]]] = True
            banned[targets] = True
            pool = np.flatnonzero(~banned)
            if len(pool) == 0:
                continue
            n = min(n_negatives, len(pool))
            # n distinct negatives per target: the n smallest of random keys over the pool
            negs = pool[np.argpartition(rng.random((len(targets), len(pool))), n - 1, axis=1)[:, :n]]
            t = scores[row, targets][:, None]
            ranks.append(((scores[row, negs] >= t) | ~np.isfinite(t)).sum(axis=1))
    if not ranks:
        raise ValueError("no test interaction can be scored by the model")
    r = np.concatenate(ranks)
    hit = r < k
    return {
        f"sampled_hit_rate@{k}": float(hit.mean()),
        f"sampled_ndcg@{k}": float(np.mean(np.where(hit, 1.0 / np.log2(r + 2), 0.0))),
        f"sampled_mrr@{k}": float(np.mean(np.where(hit, 1.0 / (r + 1), 0.0))),
        "sampled_pairs": int(len(r)),
    }


def rmse(model: Recommender, test: pd.DataFrame | Interactions, column: str = "value") -> float:
    """Root mean squared error of ``model.score`` against ``test[column]`` (pairs the model
    cannot score are left out)."""
    frame = _frame(test)
    if column not in frame:
        raise ValueError(f"test data has no {column!r} column to compute RMSE against")
    truth = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
    pred = model.score(list(zip(frame["user_id"].astype(str), frame["item_id"].astype(str))))
    ok = np.isfinite(pred) & np.isfinite(truth)
    if not ok.any():
        raise ValueError("no test pair can be scored by the model")
    return float(np.sqrt(np.mean((pred[ok] - truth[ok]) ** 2)))


def evaluate(
    model: Recommender, train: Interactions, test: pd.DataFrame | Interactions, k: int = 10,
    sampled: bool = True, n_negatives: int = 99, seed: int = 0, rating_column: str = "value",
) -> dict[str, float]:
    """Every metric that applies to ``model``: full ranking, sampled ranking, and RMSE for
    rating models when the test data has ratings."""
    metrics = ranking_metrics(model, train, test, k)
    if sampled:
        metrics.update(sampled_ranking_metrics(model, train, test, k, n_negatives, seed))
    frame = _frame(test)
    if getattr(model, "predicts_ratings", False) and rating_column in frame and frame[rating_column].notna().any():
        metrics["rmse"] = rmse(model, frame, rating_column)
    return metrics


def evaluate_many(
    models: Mapping[str, Recommender], train: Interactions, test: pd.DataFrame | Interactions, k: int = 10,
    **kwargs,
) -> pd.DataFrame:
    """One row of metrics per (already fitted) model, indexed by name."""
    rows = {name: evaluate(m, train, test, k, **kwargs) for name, m in models.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def format_table(table: pd.DataFrame, columns: Iterable[str] | None = None, digits: int = 4) -> str:
    """A Markdown table of a metrics frame (rows = models), for logs and the README."""
    cols = [c for c in (columns or table.columns) if c in table.columns]
    head = "| model | " + " | ".join(cols) + " |"
    sep = "|---|" + "---:|" * len(cols)
    lines = [head, sep]
    for name, row in table.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append("" if pd.isna(v) else (f"{v:.{digits}f}" if isinstance(v, float) else str(v)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
