"""Diversity and list shaping: MMR, the similarity it uses, category caps, the popularity fill.

One implementation of each, shared by the home and the basket policies.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ranking.scores import minmax
from ranking.types import Scored


class CategoryCap:
    """Picks per category against a cap, for a list built one pick at a time.

    ``categories`` gives each candidate's category by position; ``None`` is no category, never
    capped. ``cap`` 0 or None: no cap. ``cap_categories`` drops what is over the cap; the basket
    policy lifts the cap when nothing under it is left (``ranking.basket.assortment``).

    >>> cc = CategoryCap(["x", "x", None, "y"], 1)
    >>> cc.take(0); cc.under().tolist(), cc.allows(1)
    ([False, False, True, True], False)
    >>> CategoryCap([None, None], 1).under().tolist()
    [True, True]
    """

    def __init__(self, categories: Sequence[str | None], cap: int | None):
        self.cap = cap or 0
        codes = {c: n for n, c in enumerate(sorted({c for c in categories if c is not None}))}
        self.code = np.array([codes.get(c, -1) for c in categories], dtype=np.int64)
        self.count = np.zeros(len(codes) + 1, dtype=np.int64)  # the last slot: no category, never capped

    def allows(self, i: int) -> bool:
        """Whether candidate ``i`` is under the cap."""
        c = self.code[i]
        return not self.cap or c < 0 or bool(self.count[c] < self.cap)

    def under(self) -> np.ndarray:
        """Which candidates are under the cap (a mask over all of them)."""
        if not self.cap:
            return np.ones(len(self.code), dtype=bool)
        return (self.code < 0) | (self.count[self.code] < self.cap)

    def take(self, i: int) -> None:
        """Count candidate ``i`` as picked."""
        if self.code[i] >= 0:
            self.count[self.code[i]] += 1


def cap_categories(ranked: Scored, categories: Mapping[str, str | None], cap: int | None) -> Scored:
    """At most ``cap`` items per category (items without a category are not capped).

    >>> cap_categories([("a", 3.0), ("b", 2.0), ("c", 1.0)], {"a": "x", "b": "x", "c": "y"}, 1)
    [('a', 3.0), ('c', 1.0)]
    """
    if not cap:
        return list(ranked)
    cc = CategoryCap([categories.get(item) for item, _ in ranked], cap)
    out = []
    for n, entry in enumerate(ranked):
        if cc.allows(n):
            cc.take(n)
            out.append(entry)
    return out


def greedy_mmr(
    rel: np.ndarray,
    k: int,
    lam: float,
    rows: Callable[[int], np.ndarray] | None = None,
    allowed: Callable[[np.ndarray], np.ndarray] | None = None,
    bonus: Callable[[np.ndarray], np.ndarray] | None = None,
    on_pick: Callable[[int], None] | None = None,
) -> list[int]:
    """Maximal marginal relevance, greedy, over candidates given best first: the positions picked.

    Each pick maximises ``lam·rel − (1−lam)·max similarity to the picks so far`` (the first
    pick, with nothing to be redundant with, ``rel``); ties go to the earlier candidate.
    ``rows(i)`` is candidate ``i``'s similarity to every candidate (one row per pick, so a large
    pool never needs its whole matrix; see ``SimilarityRows``); without it, or with ``lam`` = 1,
    the order is relevance alone. Constraints and extra terms come in as functions of the mask
    of candidates still free: ``allowed(free)`` narrows the candidates of this pick,
    ``bonus(allowed)`` adds to their value; ``on_pick(i)`` hears each pick (to keep counts).

    >>> S = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=float)
    >>> greedy_mmr(np.array([1.0, 0.9, 0.8]), 2, 0.5, lambda i: S[i])
    [0, 2]
    >>> greedy_mmr(np.array([1.0, 0.9, 0.8]), 2, 0.5, lambda i: S[i], allowed=lambda free: free & (S[0] > 0))
    [0, 1]
    """
    n = len(rel)
    free = np.ones(n, dtype=bool)
    max_sim = np.zeros(n, dtype=np.float64)
    picked: list[int] = []
    while len(picked) < k and free.any():
        ok = free if allowed is None else allowed(free)
        if not ok.any():
            break
        value = lam * rel - (1 - lam) * max_sim if picked else rel
        if bonus is not None:
            value = value + bonus(ok)
        best = int(np.argmax(np.where(ok, value, -np.inf)))
        picked.append(best)
        free[best] = False
        if on_pick is not None:
            on_pick(best)
        if rows is not None and lam < 1:
            max_sim = np.maximum(max_sim, rows(best))
    return picked


def mmr(ranked: Scored, k: int, lam: float, sim: np.ndarray) -> Scored:
    """Maximal marginal relevance: trade relevance against similarity to what is already picked.

    ``sim`` is the candidates' pairwise similarity matrix (see ``similarity_matrix``).
    ``lam`` = 1 keeps the relevance order; lower values diversify. Relevance is min-max
    normalised first so that ``lam`` means the same for every model's score scale.
    ``ranked`` is best first. The greedy loop is ``greedy_mmr`` (the basket policy's too).

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
    return [ranked[i] for i in greedy_mmr(rel, min(k, n), lam, lambda i: sim[i])]


class SimilarityRows:
    """The similarity of ``similarity_matrix``, one row at a time: MMR reads one row per pick,
    so a pool of n candidates costs k rows of n, not n × n. Vectors keep their dtype in rows.

    >>> r = SimilarityRows(["a", "b", "c"], {"a": np.array([1.0, 0.0]), "b": np.array([0.6, 0.8])}, {"c": "x"})
    >>> r.row(0).tolist(), r.row(2).tolist()
    ([1.0, 0.6, 0.0], [0.0, 0.0, 1.0])
    """

    def __init__(self, items: Sequence[str], vectors: Mapping[str, np.ndarray], categories: Mapping[str, str | None]):
        cats = [categories.get(i) for i in items]
        codes = {c: j for j, c in enumerate(sorted({c for c in cats if c is not None}))}
        self.code = np.array([codes.get(c, -1 - j) for j, c in enumerate(cats)])  # no category: a code of its own
        self.has = np.array([i in vectors for i in items], dtype=bool)
        self.vecs: np.ndarray | None = None
        if self.has.any():
            known = np.stack([np.asarray(vectors[i]) for i, h in zip(items, self.has) if h])
            self.vecs = np.zeros((len(items), known.shape[1]), dtype=known.dtype)
            self.vecs[self.has] = known

    def row(self, i: int) -> np.ndarray:
        """Item ``i`` against every item: cosine where both have a vector, else same category."""
        same = (self.code == self.code[i]).astype(np.float64)
        if self.vecs is None or not self.has[i]:
            return same
        return np.where(self.has, self.vecs @ self.vecs[i], same)

    def matrix(self) -> np.ndarray:
        """All rows at once (float64)."""
        sim = (self.code[:, None] == self.code[None, :]).astype(np.float64)
        if self.vecs is not None:
            v = self.vecs.astype(np.float64)
            sim = np.where(self.has[:, None] & self.has[None, :], v @ v.T, sim)
        return sim


def similarity_matrix(items: Sequence[str], vectors: Mapping[str, np.ndarray], categories: Mapping[str, str | None]) -> np.ndarray:
    """Pairwise similarity: cosine of (L2-normalised) embeddings where both items have one,
    else 1 for the same category and 0 otherwise.

    >>> similarity_matrix(["a", "b", "c", "d"], {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])},
    ...                   {"c": "x", "d": "x"}).tolist()
    [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
    """
    return SimilarityRows(items, vectors, categories).matrix()


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
