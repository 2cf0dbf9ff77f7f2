"""Diversity and list shaping: MMR, the similarity it uses, category caps, the popularity fill.

One implementation of each, shared by the home and the basket policies.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ranking.scores import minmax
from ranking.types import Scored


def cap_categories(ranked: Scored, categories: Mapping[str, str | None], cap: int | None) -> Scored:
    """At most ``cap`` items per category (items without a category are not capped).

    >>> cap_categories([("a", 3.0), ("b", 2.0), ("c", 1.0)], {"a": "x", "b": "x", "c": "y"}, 1)
    [('a', 3.0), ('c', 1.0)]
    """
    if not cap:
        return list(ranked)
    counts: dict[str, int] = {}
    out = []
    for item, score in ranked:
        cat = categories.get(item)
        if cat is not None:
            if counts.get(cat, 0) >= cap:
                continue
            counts[cat] = counts.get(cat, 0) + 1
        out.append((item, score))
    return out


def mmr(ranked: Scored, k: int, lam: float, sim: np.ndarray) -> Scored:
    """Maximal marginal relevance: trade relevance against similarity to what is already picked.

    ``sim`` is the candidates' pairwise similarity matrix (see ``similarity_matrix``).
    ``lam`` = 1 keeps the relevance order; lower values diversify. Relevance is min-max
    normalised first so that ``lam`` means the same for every model's score scale.

    >>> S = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=float)   # x1 ~ x2, y1 apart
    >>> [i for i, _ in mmr([("x1", 1.0), ("x2", 0.9), ("y1", 0.8)], 2, 0.5, S)]
    ['x1', 'y1']
    >>> [i for i, _ in mmr([("x1", 1.0), ("x2", 0.9), ("y1", 0.8)], 2, 1.0, S)]
    ['x1', 'x2']
    """
    n = len(ranked)
    if lam >= 1.0 or n <= 1:
        return list(ranked[:k])
    rel = minmax(np.array([s for _, s in ranked]))
    max_sim = np.zeros(n)
    free = np.ones(n, dtype=bool)
    picked: list[int] = []
    for _ in range(min(k, n)):
        val = np.where(free, lam * rel - (1 - lam) * max_sim, -np.inf)
        best = int(np.argmax(val))
        picked.append(best)
        free[best] = False
        max_sim = np.maximum(max_sim, sim[best])
    return [ranked[i] for i in picked]


def similarity_matrix(items: Sequence[str], vectors: Mapping[str, np.ndarray], categories: Mapping[str, str | None]) -> np.ndarray:
    """Pairwise similarity: cosine of (L2-normalised) embeddings where both items have one,
    else 1 for the same category and 0 otherwise.

    >>> similarity_matrix(["a", "b", "c", "d"], {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])},
    ...                   {"c": "x", "d": "x"}).tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    """
    n = len(items)
    cats = [categories.get(i) for i in items]
    codes = {c: j for j, c in enumerate(sorted({c for c in cats if c is not None}))}
    code = np.array([codes.get(c, -1 - j) for j, c in enumerate(cats)])  # no category: a code of its own
    sim = (code[:, None] == code[None, :]).astype(np.float64)
    has = np.array([i in vectors for i in items], dtype=bool)
    if has.any():
        dim = len(next(iter(vectors.values())))
        v = np.zeros((n, dim))
        v[has] = np.stack([vectors[i] for i, h in zip(items, has) if h])
        both = has[:, None] & has[None, :]
        sim = np.where(both, v @ v.T, sim)
    return sim


def fill(ranked: Scored, fallback: Iterable[tuple[str, float]], k: int, accept: Callable[[str], bool]) -> tuple[Scored, set[str]]:
    """Top up ``ranked`` to ``k`` from ``fallback`` (popularity); returns the list and the items added.

    >>> fill([("a", 1.0)], [("a", 9.0), ("b", 5.0), ("c", 4.0)], 2, lambda i: True)
    ([('a', 1.0), ('b', 5.0)], {'b'})
    """
    out = list(ranked[:k])
    have = {i for i, _ in out}
    added: set[str] = set()
    for item, score in fallback:
        if len(out) >= k:
            break
        if item not in have and accept(item):
            out.append((item, float(score)))
            have.add(item)
            added.add(item)
    return out, added
