"""Exploration slots: randomise a few positions of a served list so that off-policy estimates
(``trainer/ope.py``) can judge other policies from the logs, and log how likely each shown item
was (its **propensity**).

A deterministic policy only ever shows its own list: the logs then say nothing about an item it
does not show, nor about its items at other positions. With exploration on, a set ``E`` of
positions is *explored* (each position with probability ``epsilon``, or ``slots`` positions
drawn uniformly). The explored positions get a uniform random sample, without replacement and
in random order, of the **exploration pool** ``R`` (the policy's next candidates that pass the
request's filters) together with the policy's own items of the explored positions. So every
candidate can reach every position (the support an estimator needs), the list never holds an
item twice, and each position's probabilities have a closed form (``slot_probabilities``): with
``m = |E|`` and ``r = |R|``,

- the policy's own item at its own position j: ``P(j ∉ E) + P(j ∈ E) · E[1/(r+m) | j ∈ E]``;
- an item of ``R`` at j: ``P(j ∈ E) · E[1/(r+m) | j ∈ E]``;
- the policy's item of another position j' at j: ``P(j, j' ∈ E) · E[1/(r+m) | j, j' ∈ E]``.

The propensity logged for an impression is the one of the (item, position) actually shown.
Everything is seeded by ``key`` (a request id) or, when None, by fresh OS entropy; no global
random state is used. Pure: plain values in and out.

>>> pool = [("a", 2.0), ("w", 1.5), ("x", 1.0), ("y", 0.5), ("z", 0.1)]
>>> [(s.item, round(s.propensity, 4), s.explored) for s in explore(["a", "b", "c"], pool, epsilon=0.5, key="r-1")]
[('w', 0.0845, True), ('a', 0.0387, True), ('c', 0.5845, False)]
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


def _binomial_mean(n: int, p: float, f) -> float:
    """E[f(T)] for T ~ Binomial(n, p), summed exactly."""
    return sum(math.comb(n, t) * p ** t * (1 - p) ** (n - t) * f(t) for t in range(n + 1))


def slot_probabilities(k: int, r: int, epsilon: float = 0.0, slots: int = 0) -> tuple[float, float, float]:
    """For a k-long list and an exploration pool of ``r`` items, the probability that a position
    shows (its own item, a given pool item, a given item of another position).

    >>> slot_probabilities(4, 10, slots=2)  # P(j in E) = 1/2, P(j, j' in E) = 1/6, |R_E| = 12
    (0.5416666666666666, 0.041666666666666664, 0.013888888888888888)
    >>> [round(p, 4) for p in slot_probabilities(3, 2, epsilon=0.5)]
    [0.6292, 0.1292, 0.0563]
    >>> slot_probabilities(5, 10)  # exploration off
    (1.0, 0.0, 0.0)
    """
    if k <= 0:
        return 1.0, 0.0, 0.0
    if slots:
        m = min(slots, k)
        in_e = m / k
        both = m * (m - 1) / (k * (k - 1)) if k > 1 else 0.0
        share = 1.0 / (r + m)
        return (1.0 - in_e) + in_e * share, in_e * share, both * share
    if epsilon <= 0:
        return 1.0, 0.0, 0.0
    one = epsilon * _binomial_mean(k - 1, epsilon, lambda t: 1.0 / (r + 1 + t))
    two = epsilon * epsilon * _binomial_mean(k - 2, epsilon, lambda t: 1.0 / (r + 2 + t)) if k > 1 else 0.0
    return (1.0 - epsilon) + one, one, two


def explore(items: Sequence[str], pool: Sequence[tuple[str, float]], epsilon: float = 0.0, slots: int = 0,
            key: str | None = None) -> list[Slot]:
    """The list with its explored positions filled at random, and every position's propensity.
    ``pool`` may contain the list's own items (they are left out of ``R``).

    >>> [s.explored for s in explore(["a", "b", "c", "d"], [(f"x{i}", 0.0) for i in range(9)], slots=2, key="r")]
    [True, False, False, True]
    """
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
    if slots < 0:
        raise ValueError(f"slots must be >= 0, got {slots}")
    k = len(items)
    if len(set(items)) != k:
        raise ValueError("the list holds an item twice")
    if k == 0 or (epsilon == 0 and slots == 0):
        return [Slot(i, 1.0, False) for i in items]
    shown = set(items)
    rest, seen_r = [], set()
    for item, _score in pool:
        if item not in shown and item not in seen_r:
            seen_r.add(item)
            rest.append(item)
    rng = _rng(key)
    if slots:
        chosen = np.sort(rng.choice(k, size=min(slots, k), replace=False))
    else:
        chosen = np.flatnonzero(rng.random(k) < epsilon)
    urn = rest + [items[int(j)] for j in chosen]
    picks = rng.choice(len(urn), size=len(chosen), replace=False)
    placed = {int(j): urn[int(p)] for j, p in zip(chosen, picks)}
    own, from_pool, other = slot_probabilities(k, len(rest), epsilon, slots)
    out = []
    for j, item in enumerate(items):
        shown_item = placed.get(j, item)
        p = own if shown_item == item else from_pool if shown_item in seen_r else other
        out.append(Slot(shown_item, p, j in placed))
    return out


def exploration_pool(pool: Pool, signals: UserSignals, request: HomeRequest,
                     infos: Mapping[str, ItemInfo], limit: int | None = None) -> list[tuple[str, float]]:
    """The candidates an explored slot may show: the policy's pool (as far as ``finish`` reads
    it, and the popularity fill) through the request's filters (seen items, include/exclude,
    level), so exploration never shows what the request ruled out; the first ``limit`` of them
    (a smaller pool: larger propensities, so lower-variance estimates, for less support)."""
    cands = list(pool.ranked[: pool_size(request.k)]) + list(pool.fallback[: request.k * 3])
    kept = apply_filters(cands, infos, request.filters, signals.seen, signals.level)
    return kept if limit is None else kept[: request.k + limit]


def explore_payload(items: list[dict[str, Any]], pool: Sequence[tuple[str, float]], epsilon: float = 0.0,
                    slots: int = 0, key: str | None = None) -> list[dict[str, Any]]:
    """A response's ``items`` with exploration applied and a ``propensity`` on each; unchanged
    (no ``propensity`` field: a deterministic list's propensities are all 1) when exploration is off.

    >>> explore_payload([{"item_id": "a", "score": 1.0, "reason": None}], [("b", 0.3)], slots=1, key="r")
    [{'item_id': 'b', 'score': 0.3, 'reason': None, 'propensity': 0.5}]
    """
    if not epsilon and not slots:
        return items
    scores = dict(pool)
    by_id = {it["item_id"]: it for it in items}
    explain = any(it.get("reason") for it in items)
    out = []
    for slot in explore([it["item_id"] for it in items], pool, epsilon, slots, key):
        if slot.item in by_id:  # the policy's own item, here or moved by exploration
            body = dict(by_id[slot.item])
        else:
            body = {"item_id": slot.item, "score": round(float(scores.get(slot.item, 0.0)), 6), "reason": None}
        if slot.explored and explain:
            body["reason"] = EXPLORE_REASON
        body["propensity"] = round(slot.propensity, 8)
        out.append(body)
    return out
