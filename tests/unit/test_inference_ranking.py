"""Ranking functions and the bandit policies."""
import numpy as np
import pytest

from inference.bandit import parse_totals, policy_from_totals
from ranking.diversity import cap_categories, fill, mmr, similarity_matrix
from ranking.filters import Filters, ItemInfo, apply_filters
from inference.home import cache_variant
from inference.strategies import HomeQuery, strategy_names


def test_mmr_diversifies_by_embedding():
    vec = {"a": np.array([1.0, 0.0]), "a2": np.array([0.99, 0.141]), "b": np.array([0.0, 1.0])}
    ranked = [("a", 1.0), ("a2", 0.95), ("b", 0.5)]
    sim = similarity_matrix([i for i, _ in ranked], {k: v / np.linalg.norm(v) for k, v in vec.items()}, {})
    assert [i for i, _ in mmr(ranked, 2, 0.3, sim)] == ["a", "b"]
    assert [i for i, _ in mmr(ranked, 2, 1.0, sim)] == ["a", "a2"]


def test_filters_compose():
    infos = {"a": ItemInfo(category="x", level=1), "b": ItemInfo(category="y", level=5), "c": ItemInfo(category="x")}
    f = Filters(exclude=frozenset({"c"}))
    assert apply_filters([("a", 3), ("b", 2), ("c", 1)], infos, f, set(), user_level=2) == [("a", 3)]
    assert cap_categories([("a", 3), ("c", 1), ("b", 2)], {"a": "x", "c": "x", "b": "y"}, 1) == [("a", 3), ("b", 2)]


def test_fill_respects_acceptance():
    out, added = fill([], [("a", 3), ("b", 2), ("c", 1)], 2, lambda i: i != "a")
    assert out == [("b", 2.0), ("c", 1.0)] and added == {"b", "c"}


@pytest.mark.parametrize("policy", ["epsilon_greedy", "ucb", "thompson"])
def test_policies_prefer_the_arm_with_more_reward(policy):
    totals = {"good": (5000, 4000.0), "bad": (5000, 50.0)}
    picks = [policy_from_totals(policy, totals, epsilon=0.05, seed=s).pull(["good", "bad"]) for s in range(50)]
    assert picks.count("good") >= 40


def test_parse_totals_ignores_foreign_fields():
    assert parse_totals({"a:pulls": "2", "a:rewards": "1", "b:pulls": "x", "c": "1"}) == {"a": (2, 1.0)}


def test_strategy_names_and_cache_variants():
    names = strategy_names()
    assert {"popularity", "hybrid", "bandit", "ncf", "two_tower", "lightfm", "content"} <= set(names)
    q = HomeQuery("u", 10, "hybrid", explain=True, filters=Filters(exclude_seen=False))
    assert cache_variant(q) == "~x~a"
