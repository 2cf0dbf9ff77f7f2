"""Ranking: filters, diversity (MMR), category caps, popularity fill and reasons.

Pure functions over plain values, so they are tested by their doctests and reused by
every strategy. A candidate list is ``[(item_id, score), ...]``, best first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

Scored = list[tuple[str, float]]


@dataclass(frozen=True)
class Filters:
    """What a request allows. ``include``/``exclude`` hold item ids and ``category:NAME`` entries."""

    exclude_seen: bool = True
    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    category_cap: int | None = None

    @classmethod
    def parse_list(cls, raw: str | None) -> frozenset[str]:
        """Comma-separated ids.

        >>> sorted(Filters.parse_list("i1, category:tools,,i2"))
        ['category:tools', 'i1', 'i2']
        """
        return frozenset(p.strip() for p in (raw or "").split(",") if p.strip())


@dataclass
class ItemInfo:
    title: str | None = None
    category: str | None = None
    level: int | None = None


def allowed(item: str, info: ItemInfo | None, filters: Filters, seen: set[str], user_level: int | None) -> bool:
    """Whether one candidate passes the filters.

    >>> f = Filters(exclude=frozenset({"category:adult"}))
    >>> allowed("i1", ItemInfo(category="adult"), f, set(), None)
    False
    >>> allowed("i2", ItemInfo(level=3), Filters(), set(), user_level=2)
    False
    >>> allowed("i3", None, Filters(), {"i3"}, None)
    False
    >>> allowed("i3", None, Filters(exclude_seen=False), {"i3"}, None)
    True
    """
    if filters.exclude_seen and item in seen:
        return False
    category = info.category if info else None
    if item in filters.exclude or (category is not None and f"category:{category}" in filters.exclude):
        return False
    if filters.include and item not in filters.include and (
        category is None or f"category:{category}" not in filters.include
    ):
        return False
    if user_level is not None and info is not None and info.level is not None and info.level > user_level:
        return False
    return True


def apply_filters(cands: Scored, infos: Mapping[str, ItemInfo], filters: Filters, seen: set[str],
                  user_level: int | None) -> Scored:
    """Candidates that pass, first occurrence of each item kept.

    >>> apply_filters([("a", 3.0), ("b", 2.0), ("a", 1.0)], {}, Filters(), {"b"}, None)
    [('a', 3.0)]
    """
    out, done = [], set()
    for item, score in cands:
        if item in done:
            continue
        done.add(item)
        if allowed(item, infos.get(item), filters, seen, user_level):
            out.append((item, score))
    return out


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


def normalise(scores: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (all equal -> all 1).

    >>> normalise(np.array([1.0, 3.0, 2.0])).tolist()
    [0.0, 1.0, 0.5]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    lo, hi = float(np.min(scores)), float(np.max(scores))
    if hi - lo < 1e-12:
        return np.ones_like(scores)
    return (scores - lo) / (hi - lo)


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
    rel = normalise(np.array([s for _, s in ranked]))
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


@dataclass
class Provenance:
    """Why each candidate is there, for reasons a person can read."""

    popular_segment: str | None = None
    popular: set[str] = field(default_factory=set)
    trending: set[str] = field(default_factory=set)
    viewed_with: dict[str, str] = field(default_factory=dict)  # item -> recent item it co-occurs with
    bought_with: dict[str, str] = field(default_factory=dict)  # item -> item bought with it
    similar_to: dict[str, str] = field(default_factory=dict)  # item -> recent item it is close to


def reason(item: str, prov: Provenance, titles: Mapping[str, str | None], model: str | None) -> str:
    """A reason in words for one served item.

    >>> p = Provenance(viewed_with={"b": "a"}, popular={"c"}, popular_segment="nurses")
    >>> reason("b", p, {"a": "Alien"}, "ncf")
    'because you viewed Alien'
    >>> reason("c", p, {}, None)
    'popular in your segment (nurses)'
    >>> reason("d", p, {}, "ncf")
    'recommended for you by ncf'
    """
    name = lambda i: titles.get(i) or i  # noqa: E731
    if item in prov.bought_with:
        return f"often bought with {name(prov.bought_with[item])}"
    if item in prov.viewed_with:
        return f"because you viewed {name(prov.viewed_with[item])}"
    if item in prov.similar_to:
        return f"similar to {name(prov.similar_to[item])}"
    if item in prov.trending:
        return "trending now"
    if item in prov.popular:
        return f"popular in your segment ({prov.popular_segment})" if prov.popular_segment else "popular right now"
    return f"recommended for you by {model}" if model else "popular right now"
