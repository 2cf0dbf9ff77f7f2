"""The bandit policies, arithmetic on stored totals: choices follow the stated probabilities
(what impressions log as propensities), UCB tries every arm first, bad input is refused."""
from __future__ import annotations

import doctest
from collections import Counter

import pytest

import inference.bandit as bandit
from inference.bandit import policy_from_totals

TOTALS = {"good": (500, 60.0), "mid": (300, 30.0), "bad": (200, 5.0)}
ARMS = ["good", "mid", "bad"]


def test_doctests():
    assert doctest.testmod(bandit).failed == 0


@pytest.mark.parametrize("name", ["epsilon_greedy", "thompson", "ucb"])
def test_pull_frequencies_match_the_probabilities(name):
    policy = policy_from_totals(name, TOTALS, epsilon=0.3, seed=7)
    probs = policy.probabilities(ARMS)
    assert sum(probs.values()) == pytest.approx(1.0)
    n = 6000
    counts = Counter(policy.pull(ARMS) for _ in range(n))
    for arm in ARMS:
        # binomial standard error at n=6000 is at most 0.0065; Thompson's estimate adds ~0.008
        assert counts[arm] / n == pytest.approx(probs[arm], abs=0.03), (arm, counts, probs)


def test_epsilon_greedy_probabilities_in_closed_form():
    probs = policy_from_totals("epsilon_greedy", TOTALS, epsilon=0.3).probabilities(ARMS)
    assert probs == pytest.approx({"good": 0.7 + 0.1, "mid": 0.1, "bad": 0.1})


def test_ucb_tries_every_arm_first_then_is_deterministic():
    policy = policy_from_totals("ucb", {"a": (10, 5.0)}, seed=1)
    assert policy.pull(["a", "b"]) == "b"
    assert policy.probabilities(["a", "b"]) == {"a": 0.0, "b": 1.0}
    # a little-tried arm with a decent mean gets its exploration bonus
    policy = policy_from_totals("ucb", {"a": (10_000, 5000.0), "b": (3, 1.0)})
    assert policy.pull(["a", "b"]) == "b"


def test_rewards_are_clipped_and_unknown_names_fall_back():
    policy = policy_from_totals("nonsense", {"a": (10, 50.0), "b": (-3, -1.0)}, epsilon=0.0)
    assert policy.name == "epsilon_greedy"
    assert policy.rewards == {"a": 10.0, "b": 0.0} and policy.pulls["b"] == 0
    with pytest.raises(ValueError):
        policy.pull([])
    with pytest.raises(ValueError):
        policy_from_totals("ucb", {}, epsilon=2.0)
