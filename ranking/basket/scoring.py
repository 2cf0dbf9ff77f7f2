"""Candidate pool and the linear blend that scores it.

Each source is normalised to [0, 1] per list (divided by its maximum: ``ranking.scores.rescale``
with ``max``), so pair counts from the stream, offline counts and weighted popularity can be
mixed with one set of weights.

>>> from ranking.basket.signals import BasketSignals
>>> from schemas.basket_profiles import BasketParams
>>> sig = BasketSignals(pairs={"ANY": {"a": {"b": 4.0, "c": 1.0}}}, pop_global={"d": 9.0, "b": 3.0})
>>> [(c.item_id, round(c.score, 3)) for c in score_candidates(["a"], sig, BasketParams(W_POPG=0.1), [])]
[('b', 1.033), ('c', 0.25), ('d', 0.1)]
"""
from __future__ import annotations

from dataclasses import dataclass, field
import operator
from itertools import chain, islice
from typing import Sequence

import numpy as np

from ranking.basket.segments import basket_vector
from ranking.basket.signals import ANY, BasketSignals, Scores
from ranking.basket.sized import sized_pairs
from ranking.diversity import SimilarityRows
from ranking.scores import rescale
from schemas.basket_profiles import BasketParams


@dataclass
class Candidate:
    item_id: str
    score: float = 0.0
    pair: float = 0.0  # the blended pair term (segment + ANY, forward or reverse)
    emb: float = 0.0
    popp: float = 0.0
    popg: float = 0.0
    coverage: float = 0.0
    private_label: float = 0.0
    via: str | None = None  # the basket item that links to it most
    components: dict[str, float] = field(default_factory=dict)

    @property
    def from_pairs(self) -> bool:
        return self.pair > 0


def top(scores: Scores, n: int) -> Scores:
    """The n best entries (ties by id, so results are deterministic).

    >>> top({"x": 1.0, "y": 3.0, "z": 1.0}, 2)
    {'y': 3.0, 'x': 1.0}
    >>> top({"x": 1.0, "y": 3.0}, 2)
    {'x': 1.0, 'y': 3.0}
    """
    if n <= 0:
        return {}
    if len(scores) <= n:  # nothing to cut (the order of a pair list does not matter to scoring)
        return scores
    values = list(scores.values())
    if all(map(operator.ge, values, values[1:])):  # already best first (offline lists): the head
        return dict(islice(scores.items(), n))
    return dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def normalised(lists: Sequence[Scores]) -> list[Scores]:
    """Each list divided by its largest score (``rescale(..., "max")``, one call for all the
    lists: a 200-item basket reads over a thousand); a list with no positive score is empty.

    >>> normalised([{"a": 4.0, "b": 1.0}, {}, {"c": 0.0}])
    [{'a': 1.0, 'b': 0.25}, {}, {}]
    """
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    width = int(lengths.max(initial=0))
    if width == 0:
        return [{} for _ in lists]
    padded = np.full((len(lists), width), -np.inf)  # non-finite: outside the statistics
    padded[np.arange(width)[None, :] < lengths[:, None]] = np.fromiter(
        chain.from_iterable(s.values() for s in lists), dtype=np.float64, count=int(lengths.sum()))
    scaled = rescale(padded, "max")
    positive = padded.max(axis=1) > 0
    return [dict(zip(s, row[: len(s)].tolist())) if ok else {} for s, row, ok in zip(lists, scaled, positive)]


def link_weights(a: str, scores: Scores, sig: BasketSignals, p: BasketParams) -> Scores:
    """Pair counts C(a, b) of basket item ``a`` turned into links by ``p.PAIR_NORM`` and
    ``p.POP_DAMPING`` (see ``BasketParams``), with n the number of training baskets holding an
    item (``sig.item_count``; an item it does not know counts as its pair count, the least it
    can be) and N the number of baskets (``sig.n_baskets``).

    >>> sig = BasketSignals(item_count={"a": 10.0, "b": 100.0, "c": 4.0}, n_baskets=1000.0)
    >>> link_weights("a", {"b": 8.0, "c": 2.0}, sig, BasketParams(PAIR_NORM="conditional"))
    {'b': 0.8, 'c': 0.2}
    >>> link_weights("a", {"b": 8.0, "c": 2.0}, sig, BasketParams(PAIR_NORM="lift"))
    {'b': 8.0, 'c': 50.0}
    >>> link_weights("a", {"b": 8.0, "c": 2.0}, sig, BasketParams(POP_DAMPING=0.5))
    {'b': 0.8, 'c': 1.0}
    """
    if not scores or (p.PAIR_NORM == "raw" and p.POP_DAMPING == 0):
        return scores
    c = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    counts = sig.item_count
    nb = np.maximum(np.fromiter((counts.get(b, 0.0) for b in scores), dtype=np.float64, count=len(scores)), c)
    nb = np.maximum(nb, 1.0)
    na = max(float(counts.get(a, 0.0)), float(c.max()), 1.0)
    norm = p.PAIR_NORM
    if norm == "conditional":
        w = c / na
    elif norm == "cosine":
        w = c / np.sqrt(na * nb)
    elif norm in ("lift", "pmi"):
        w = c * max(sig.n_baskets, na) / (na * nb)
        if norm == "pmi":
            w = np.maximum(np.log(np.maximum(w, 1e-12)), 0.0)
    elif norm == "jaccard":
        w = c / np.maximum(na + nb - c, 1.0)
    else:
        w = c
    if p.POP_DAMPING:
        w = w / nb ** p.POP_DAMPING
    return dict(zip(scores, np.round(w, 12).tolist()))


def forward_pairs(a: str, seg: str, limit: int, sig: BasketSignals, p: BasketParams, n_items: int) -> Scores:
    """The ``limit`` strongest pairs of basket item ``a`` in ``seg``: the stream's counts, or for
    ``ANY`` with ``PAIR_SIZE_POWER`` > 0 and the run's baskets known, the size-weighted counts
    (``ranking.basket.sized``; ``COCOVER_BASKETS`` training baskets per request, split over
    the basket's items)."""
    if p.PAIR_SIZE_POWER > 0 and seg == ANY and sig.index is not None:
        return sized_pairs(sig.index, a, p.PAIR_SIZE_POWER, max(p.COCOVER_BASKETS // max(n_items, 1), 10), limit)
    return top(sig.pairs.get(seg, {}).get(a, {}), limit)


def pair_sources(segments: list[tuple[str, float]], p: BasketParams, n_items: int = 1
                 ) -> list[tuple[str, float, int]]:
    """(pair segment, weight, how many to read per basket item): the detected/explicit
    segments, then ANY. A large basket reads fewer per item: at most ``PAIRS_PER_BASKET`` in
    all per source (never fewer than 10 per item), so its cost stays bounded.

    >>> pair_sources([], BasketParams(TOP_PAIRS=10))
    [('ANY', 1.0, 10)]
    >>> pair_sources([("plumber", 1.0)], BasketParams(TOP_PAIRS=10, PAIR_ANY_WEIGHT=0.5, TOP_PAIRS_ANY_FRAC=0.3))
    [('plumber', 1.0, 10), ('ANY', 0.5, 3)]
    >>> pair_sources([], BasketParams(TOP_PAIRS=100, PAIRS_PER_BASKET=1000), n_items=50)
    [('ANY', 1.0, 20)]
    """
    top_n = min(p.TOP_PAIRS, max(10, p.PAIRS_PER_BASKET // max(n_items, 1)))
    if not segments or p.W_SEG_PAIRS <= 0:
        return [(ANY, 1.0, top_n)]
    out = [(s, p.W_SEG_PAIRS * w, top_n) for s, w in segments]
    n_any = int(round(top_n * p.TOP_PAIRS_ANY_FRAC))
    if n_any > 0 and p.PAIR_ANY_WEIGHT > 0:
        out.append((ANY, p.PAIR_ANY_WEIGHT, n_any))
    return out


def score_candidates(
    basket: list[str],
    sig: BasketSignals,
    p: BasketParams,
    segments: list[tuple[str, float]],
) -> list[Candidate]:
    """Every candidate of the pool with its score, best first; the basket's items excluded."""
    items = list(dict.fromkeys(basket))
    in_basket = set(items)
    n = max(len(items), 1)
    cands: dict[str, Candidate] = {}

    def cand(c: str) -> Candidate:
        if c not in cands:
            cands[c] = Candidate(c)
        return cands[c]

    # pairs: per basket item a, link(a, c) = max(forward, W_REV × reverse), averaged over a
    links: dict[str, set[str]] = {}
    best_via: dict[str, tuple[float, str]] = {}
    reads = [(seg, weight, limit, a) for seg, weight, limit in pair_sources(segments, p, len(items)) for a in items]
    lists = [link_weights(a, forward_pairs(a, seg, limit, sig, p, len(items)) if src is sig.pairs
                          else top(src.get(seg, {}).get(a, {}), limit), sig, p)
             for seg, _, limit, a in reads for src in (sig.pairs, sig.pairs_rev if p.W_REV > 0 else {})]
    if p.PAIR_RESCALE:
        lists = normalised(lists)
    for (_, weight, _, a), fwd, rev in zip(reads, lists[0::2], lists[1::2]):
        for c in fwd.keys() | rev.keys():
            if c in in_basket:
                continue
            link = max(fwd.get(c, 0.0), p.W_REV * rev.get(c, 0.0))
            if link <= 0:
                continue
            cand(c).pair += weight * link / n
            links.setdefault(c, set()).add(a)
            if link * weight > best_via.get(c, (0.0, ""))[0]:
                best_via[c] = (link * weight, a)

    # popularity: segment mix, then global
    popp: Scores = {}
    seg_pop = normalised([top(sig.pop_seg.get(seg, {}), p.TOP_POPP) for seg, _ in segments])
    for (_, weight), pop in zip(segments, seg_pop):
        for c, v in pop.items():
            popp[c] = popp.get(c, 0.0) + weight * v
    popg, full_popg = normalised([top(sig.pop_global, p.TOP_POPG), sig.pop_global])
    for c in list(popp) + list(popg):
        if c not in in_basket:
            cand(c)

    # embeddings: cosine to the basket centroid
    centroid = None
    if sig.embeddings is not None and p.W_EMB:
        centroid = basket_vector(sig.embeddings.rows(items))

    pl_share = sum(1 for a in items if sig.meta.get(a) and sig.meta[a].private_label) / n
    for c, x in cands.items():
        x.popp = popp.get(c, 0.0)
        x.popg = popg.get(c, full_popg.get(c, 0.0))
        x.coverage = len(links.get(c, ())) / n if len(items) > 1 else 0.0
        if centroid is not None:
            v = sig.embeddings.get(c)
            x.emb = float(v @ centroid) if v is not None else 0.0
        meta = sig.meta.get(c)
        if meta is not None and meta.private_label:
            x.private_label = p.W_PL_BASE + p.W_PL_PER_BASK_PL * pl_share
        x.via = best_via.get(c, (0.0, None))[1]
        x.components = {
            "pair": p.W_PAIR * x.pair, "emb": p.W_EMB * x.emb, "popp": p.W_POPP * x.popp,
            "popg": p.W_POPG * x.popg, "coverage": p.W_COVERAGE * x.coverage, "private_label": x.private_label,
        }
        x.score = float(sum(x.components.values()))
    return sorted(cands.values(), key=lambda x: (-x.score, x.item_id))


def pool_similarities(sig: BasketSignals, pool: Sequence[str]) -> SimilarityRows:
    """Redundancy within a candidate pool for MMR (``ranking.diversity.SimilarityRows``, the home
    policy's similarity): cosine of the embeddings where both items have one, else 1 for the
    same non-empty category, else 0.

    >>> from ranking.basket.signals import ItemMeta
    >>> sig = BasketSignals(meta={"a": ItemMeta(category="x"), "b": ItemMeta(category="x"), "c": ItemMeta()})
    >>> pool_similarities(sig, ["a", "b", "c"]).row(0).tolist()
    [1.0, 1.0, 0.0]
    """
    emb = sig.embeddings
    vectors = {o: emb.vectors[emb.index[o]] for o in pool if o in emb.index} if emb is not None else {}
    return SimilarityRows(pool, vectors, {o: sig.meta[o].category or None for o in pool if o in sig.meta})
