"""Exploration slots: randomise a few positions of a served list so that off-policy estimates
(``trainer/ope.py``) can judge other policies from the logs, and log how likely each shown item
was (its **propensity**).

A deterministic policy only ever shows its own list: the logs then say nothing about an item it
does not show. With exploration on, each position ``j`` of the list is *explored* (with
probability ``epsilon`` per slot, or ``slots`` positions drawn uniformly), and the explored
positions get a uniform random sample, without replacement, of the **exploration pool** ``R``:
the policy's other candidates that pass the request's filters (never an item already in the
list). By symmetry, every item of ``R`` is equally likely at every explored position, so:

- the policy's own item kept at position j: propensity ``1 − q_j``;
- an item of ``R`` shown at an explored position j: propensity ``q_j / |R|``,

where ``q_j`` is the chance that position j is explored *and* filled (``epsilon`` when ``R`` has
at least as many items as the list; less when ``R`` runs short: computed exactly below).

Everything is seeded by ``key`` (a request id) or, when None, by fresh OS entropy; no global
random state is used. Pure: plain values in and out.

>>> pool = [("a", 2.0), ("w", 1.5), ("x", 1.0), ("y", 0.5), ("z", 0.1)]
>>> [(s.item, s.propensity, s.explored) for s in explore(["a", "b", "c"], pool, epsilon=0.5, key="r-1")]
[('w', 0.125, True), ('z', 0.125, True), ('c', 0.5, False)]
>>> explore(["a", "b"], [("x", 1.0)], epsilon=0.0, key="r")[0].propensity
1.0
"""
from __future__ import annotations

import hashlib
import math
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np

from ranking.filters import ItemInfo, apply_filters
from ranking.home import HomeRequest, Pool, pool_size
from ranking.signals import UserSignals

EXPLORE_REASON = "Exploring: shown at random to learn what you like"


class Slot(NamedTuple):
    item: str
    propensity: float  # P(the serving policy puts this item at this position)
    explored: bool


def _rng(key: str | None) -> np.random.Generator:
    if key is None:
        return np.random.default_rng()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"explore\x1f{key}".encode()).digest()[:8], "big"))


def fill_probability(k: int, r: int, epsilon: float = 0.0, slots: int = 0) -> float:
    """``q``: the chance that a given position of a k-long list is explored and gets an item,
    with ``r`` items in the exploration pool.

    Per-slot ε: the number of other explored slots T ~ Binomial(k−1, ε), and when more slots
    are explored than ``R`` holds, a uniform subset of them of size r is filled:
    q = ε · E[min(T+1, r) / (T+1)]. Fixed slots: min(slots, k, r) / k.

    >>> fill_probability(10, 50, epsilon=0.1)
    0.1
    >>> fill_probability(10, 50, slots=2)
    0.2
    >>> round(fill_probability(3, 1, epsilon=0.5), 4)  # only one item to explore with
    0.2917
    """
    if k <= 0 or r <= 0:
        return 0.0
    if slots:
        return min(slots, k, r) / k
    if epsilon <= 0:
        return 0.0
    if r >= k:
        return float(epsilon)
    expect = sum(math.comb(k - 1, t) * epsilon ** t * (1 - epsilon) ** (k - 1 - t) * min(t + 1, r) / (t + 1)
                 for t in range(k))
    return float(epsilon * expect)


def explore(items: Sequence[str], pool: Sequence[tuple[str, float]], epsilon: float = 0.0, slots: int = 0,
            key: str | None = None) -> list[Slot]:
    """The list with its explored positions swapped for random pool items, and every position's
    propensity. ``pool`` may contain the list's own items (they are left out of ``R``).

    >>> [s.explored for s in explore(["a", "b", "c", "d"], [(f"x{i}", 0.0) for i in range(9)], slots=2, key="r")]
    [True, False, False, True]
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    if slots < 0:
        raise ValueError(f"slots must be >= 0, got {slots}")
    k = len(items)
    shown = set(items)
    rest, seen_r = [], set()
    for item, _score in pool:
        if item not in shown and item not in seen_r:
            seen_r.add(item)
            rest.append(item)
    q = fill_probability(k, len(rest), epsilon, slots)
    if q == 0.0:
        return [Slot(i, 1.0, False) for i in items]
    rng = _rng(key)
    if slots:
        chosen = rng.choice(k, size=min(slots, k), replace=False)
    else:
        chosen = np.flatnonzero(rng.random(k) < epsilon)
    if len(chosen) > len(rest):  # more explored slots than items: a uniform subset is filled
        chosen = rng.choice(chosen, size=len(rest), replace=False)
    picks = rng.choice(len(rest), size=len(chosen), replace=False)
    swap = {int(j): rest[int(p)] for j, p in zip(chosen, picks)}
    keep_p, explore_p = 1.0 - q, q / len(rest)
    return [Slot(swap[j], explore_p, True) if j in swap else Slot(item, keep_p, False) for j, item in enumerate(items)]


def exploration_pool(pool: Pool, signals: UserSignals, request: HomeRequest,
                     infos: Mapping[str, ItemInfo]) -> list[tuple[str, float]]:
    """The candidates an explored slot may show: the policy's pool (as far as ``finish`` reads
    it, and the popularity fill) through the request's filters (seen items, include/exclude,
    level), so exploration never shows what the request ruled out."""
    cands = list(pool.ranked[: pool_size(request.k)]) + list(pool.fallback[: request.k * 3])
    return apply_filters(cands, infos, request.filters, signals.seen, signals.level)


def explore_payload(items: list[dict[str, Any]], pool: Sequence[tuple[str, float]], epsilon: float = 0.0,
                    slots: int = 0, key: str | None = None) -> list[dict[str, Any]]:
    """A response's ``items`` with exploration applied and a ``propensity`` on each; unchanged
    (no ``propensity`` field: a deterministic list's propensities are all 1) when exploration is off.

    >>> explore_payload([{"item_id": "a", "score": 1.0, "reason": None}], [("b", 0.3)], slots=1, key="r")
    [{'item_id': 'b', 'score': 0.3, 'reason': None, 'propensity': 1.0}]
    """
    if not epsilon and not slots:
        return items
    scores = dict(pool)
    by_id = {it["item_id"]: it for it in items}
    explain = any(it.get("reason") for it in items)
    out = []
    for slot in explore([it["item_id"] for it in items], pool, epsilon, slots, key):
        if slot.explored:
            body = {"item_id": slot.item, "score": round(float(scores.get(slot.item, 0.0)), 6),
                    "reason": EXPLORE_REASON if explain else None}
        else:
            body = dict(by_id[slot.item])
        body["propensity"] = round(slot.propensity, 8)
        out.append(body)
    return out
