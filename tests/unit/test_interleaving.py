"""Team-draft interleaving and its statistics on simulated users: the list is deterministic per key
with no duplicates and fair drafting; a ranker that users prefer wins; rankers of equal quality
are declared different in at most α of experiments."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

import ranking.interleaving as interleaving
import trainer.interleaving_analysis as analysis
from ranking.interleaving import credit, credit_items, team_draft
from trainer.interleaving_analysis import analyse, analyse_outcomes

ALPHA = 0.05


@pytest.mark.parametrize("module", [interleaving, analysis])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_same_key_same_list_and_no_global_random_state():
    a, b = [f"a{i}" for i in range(20)], [f"a{i}" for i in range(19, -1, -1)]
    state = np.random.get_state()[1].copy()
    first = team_draft(a, b, 10, "req-42")
    assert first == team_draft(a, b, 10, "req-42")
    assert (np.random.get_state()[1] == state).all()
    keys = {tuple(team_draft(a, b, 10, f"req-{i}")) for i in range(30)}
    assert len(keys) > 1  # the coin differs between requests


def test_no_duplicates_and_balanced_teams():
    rng = np.random.default_rng(0)
    pool = [f"i{i}" for i in range(30)]
    for r in range(200):
        a = list(rng.permutation(pool)[:12])
        b = list(rng.permutation(pool)[:12])
        out = team_draft(a, b, 10, f"r{r}")
        items = [i for i, _ in out]
        assert len(items) == len(set(items)) == 10
        assert set(items) <= set(a) | set(b)
        n_a = sum(t == "A" for _, t in out)
        assert abs(n_a - (10 - n_a)) <= 1 or not (set(a) - set(items)) or not (set(b) - set(items))
        # each team's items keep that team's order
        for team, ranked in (("A", a), ("B", b)):
            mine = [i for i, t in out if t == team]
            assert mine == sorted(mine, key=ranked.index)


def test_short_lists_and_bad_k():
    assert team_draft([], [], 5, "r") == []
    assert [i for i, _ in team_draft(["a"], ["a"], 5, "r")] == ["a"]
    assert team_draft(["a", "b"], ["c"], 0, "r") == []
    with pytest.raises(ValueError):
        team_draft(["a"], ["b"], -1, "r")


def test_credit_counts_each_position_once_and_ignores_strangers():
    inter = [("a", "A"), ("b", "B"), ("c", "A")]
    assert credit(inter, [0, 0, 2]).a == 2
    assert credit(inter, [5, -1]).winner is None
    assert credit_items(inter, ["b"]).winner == "B"


def test_analyse_rejects_bad_input():
    with pytest.raises(ValueError):
        analyse(-1, 0)
    with pytest.raises(ValueError):
        analyse(1, 1, alpha=1.5)
    with pytest.raises(ValueError):
        analyse_outcomes(["C"])


# --- simulated users -----------------------------------------------------------------------
def _experiment(rng: np.random.Generator, noise_a: float, noise_b: float, lists: int, run: int,
                n_items: int = 40, k: int = 10) -> list:
    """One interleaving experiment: per request a user with hidden relevance of every item, two
    rankers that sort by relevance plus their own noise, and a position-based click model
    (examination 1/(1+pos), click given examined = relevance²). Returns the per-list winners of
    lists that got a click."""
    items = [f"i{j}" for j in range(n_items)]
    examine = 1.0 / (1.0 + np.arange(k))
    winners = []
    for r in range(lists):
        rel = rng.random(n_items)
        a = [items[j] for j in np.argsort(-(rel + noise_a * rng.standard_normal(n_items)))[:k]]
        b = [items[j] for j in np.argsort(-(rel + noise_b * rng.standard_normal(n_items)))[:k]]
        inter = team_draft(a, b, k, f"run{run}-req{r}")
        p_click = examine[: len(inter)] * np.array([rel[int(i[1:])] ** 2 for i, _ in inter])
        clicked = np.flatnonzero(rng.random(len(inter)) < p_click)
        outcome = credit(inter, clicked.tolist())
        if outcome.a or outcome.b:
            winners.append(outcome.winner)
    return winners


def test_the_ranker_users_prefer_wins():
    rng = np.random.default_rng(11)
    results = [analyse_outcomes(_experiment(rng, 0.1, 0.4, lists=300, run=i), ALPHA) for i in range(40)]
    detected = np.mean([r.winner == "A" for r in results])
    assert detected >= 0.9
    assert not any(r.winner == "B" for r in results)
    assert np.mean([r.win_rate for r in results]) > 0.6


@pytest.mark.parametrize("same_lists", [True, False])
def test_equal_rankers_rarely_declare_a_winner(same_lists):
    """A/A: identical lists (only the coin decides the teams), or two different rankers of the
    same quality. Either way a winner is declared in at most α of experiments."""
    rng = np.random.default_rng(5 if same_lists else 6)
    runs = 300
    declared = 0
    for i in range(runs):
        if same_lists:
            winners = _experiment_identical(rng, lists=200, run=i)
        else:
            winners = _experiment(rng, 0.3, 0.3, lists=200, run=i)
        declared += analyse_outcomes(winners, ALPHA).significant
    assert declared / runs <= ALPHA


def _experiment_identical(rng: np.random.Generator, lists: int, run: int, k: int = 10) -> list:
    ranked = [f"i{j}" for j in range(k)]
    examine = 1.0 / (1.0 + np.arange(k))
    winners = []
    for r in range(lists):
        inter = team_draft(ranked, ranked, k, f"aa{run}-{r}")
        clicked = np.flatnonzero(rng.random(k) < 0.5 * examine)
        outcome = credit(inter, clicked.tolist())
        if outcome.a or outcome.b:
            winners.append(outcome.winner)
    return winners
