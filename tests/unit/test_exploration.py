"""Exploration slots: the logged propensity of every (item, position) is the frequency with which
the randomisation puts it there (checked by simulation, for per-slot ε and fixed slots, small and
empty pools); every candidate reaches every position; lists keep no duplicates; off means unchanged."""
from __future__ import annotations

import doctest
from collections import Counter

import pytest

import ranking.exploration as exploration
from ranking.exploration import explore, explore_payload, exploration_pool
from ranking.filters import Filters
from ranking.home import HomeRequest, Pool
from ranking.reasons import Provenance
from ranking.signals import UserSignals

LIST = ["a", "b", "c", "d"]


def test_doctests():
    assert doctest.testmod(exploration).failed == 0


@pytest.mark.parametrize("pool_size,epsilon,slots", [(20, 0.2, 0), (2, 0.5, 0), (0, 0.3, 0), (20, 0.0, 1), (3, 0.0, 4)])
def test_propensities_are_the_frequencies(pool_size, epsilon, slots):
    pool = [(f"x{i}", 1.0) for i in range(pool_size)] + [("a", 9.0)]  # a list item in the pool is ignored
    n = 20_000 if slots or epsilon > 0.25 else 40_000
    counts: Counter = Counter()
    logged: dict = {}
    for r in range(n):
        out = explore(LIST, pool, epsilon, slots, key=f"req-{r}")
        items = [s.item for s in out]
        assert len(set(items)) == len(items) == len(LIST)
        for j, s in enumerate(out):
            counts[(s.item, j)] += 1
            assert logged.setdefault((s.item, j), s.propensity) == pytest.approx(s.propensity)
    assert sum(counts[(i, j)] for j, i in enumerate(LIST)) < n * len(LIST)  # something was explored
    for pair, p in logged.items():
        # binomial standard error at most 0.0036 for n=20000
        assert counts[pair] / n == pytest.approx(p, abs=0.015), pair
    # every position's propensities over all items it can hold sum to 1
    for j in range(len(LIST)):
        reachable = LIST + [f"x{i}" for i in range(pool_size)]
        # full support: every candidate reaches every position (another position's item needs two
        # explored slots, impossible with one)
        assert all((i, j) in logged for i in reachable if slots != 1 or i == LIST[j] or i.startswith("x"))
        assert sum(logged.get((i, j), 0.0) for i in reachable) == pytest.approx(1.0)


def test_same_key_same_list_and_off_means_untouched():
    pool = [(f"x{i}", 1.0) for i in range(10)]
    assert explore(LIST, pool, 0.3, key="k") == explore(LIST, pool, 0.3, key="k")
    items = [{"item_id": i, "score": 1.0, "reason": None} for i in LIST]
    assert explore_payload(items, pool) is items
    assert sorted(s.item for s in explore(LIST, [], 0.9, key="k")) == sorted(LIST)  # an empty pool: a shuffle


def test_payload_marks_explored_items_and_keeps_the_rest():
    pool = [(f"x{i}", 0.5) for i in range(10)]
    items = [{"item_id": i, "score": 2.0, "reason": "because"} for i in LIST]
    own, from_pool, other = exploration.slot_probabilities(4, 10, slots=2)
    for r in range(20):
        out = explore_payload(items, pool, slots=2, key=f"k{r}")
        explored = [it for it in out if it["reason"] == exploration.EXPLORE_REASON]
        assert len(explored) == 2 and len({it["item_id"] for it in out}) == 4
        for j, it in enumerate(out):
            want = own if it["item_id"] == LIST[j] else from_pool if it["item_id"].startswith("x") else other
            assert it["propensity"] == pytest.approx(want)
            assert it["score"] == (0.5 if it["item_id"].startswith("x") else 2.0 if it in explored else 2.0)


def test_the_pool_respects_the_requests_filters():
    pool = Pool(ranked=[("a", 3.0), ("s", 2.0), ("e", 1.0)], prov=Provenance(), label=None, fallback=[("f", 0.5)])
    sig = UserSignals("u", seen={"s"})
    got = exploration_pool(pool, sig, HomeRequest(k=2, filters=Filters(exclude=frozenset({"e"}))), {})
    assert [i for i, _ in got] == ["a", "f"]


def test_bad_parameters():
    with pytest.raises(ValueError):
        explore(LIST, [], epsilon=1.5)
    with pytest.raises(ValueError):
        explore(LIST, [], slots=-1)
