"""The experiment statistics on simulated traffic with known effects: an A/A test watched at
every look declares a winner in at most α of runs; a 10% lift in CTR is detected; and the
assignment is sticky, balanced and moves the fewest users when shares change."""
from __future__ import annotations

import numpy as np
import pytest

from ranking.experiments import Experiment, assign, assign_any, check_namespaces, moved, reshare
from trainer.experiment_analysis import Look, compare

ALPHA = 0.05


def simulate(p_control: float, p_treatment: float, runs: int, looks: int, per_look: int, seed: int) -> list[bool]:
    """For each run: did the test, checked after every look, ever declare a winner?"""
    rng = np.random.default_rng(seed)
    ctl = rng.binomial(per_look, p_control, size=(runs, looks)).cumsum(axis=1)
    trt = rng.binomial(per_look, p_treatment, size=(runs, looks)).cumsum(axis=1)
    n = per_look * np.arange(1, looks + 1)
    out = []
    for r in range(runs):
        seq = [(Look(ctl[r, i], n[i]), Look(trt[r, i], n[i])) for i in range(looks)]
        out.append(compare(seq, "rate", tau=0.005, alpha=ALPHA).significant)
    return out


def test_an_aa_test_watched_at_every_look_rarely_declares_a_winner():
    wins = simulate(0.05, 0.05, runs=400, looks=30, per_look=2000, seed=7)
    # at most α: the mSPRT's guarantee holds for any number of looks (a z-test checked 30 times
    # would declare a winner in about a quarter of these runs)
    assert np.mean(wins) <= ALPHA


def test_a_ten_percent_lift_in_ctr_is_detected():
    wins = simulate(0.05, 0.055, runs=100, looks=40, per_look=5000, seed=11)
    assert np.mean(wins) >= 0.9


def test_the_interval_covers_the_true_lift_and_shrinks():
    rng = np.random.default_rng(3)
    seq, c_sum, t_sum, n = [], 0, 0, 0
    for _ in range(20):
        n += 10_000
        c_sum += rng.binomial(10_000, 0.10)
        t_sum += rng.binomial(10_000, 0.11)
        seq.append((Look(c_sum, n), Look(t_sum, n)))
    early, late = compare(seq[:3]), compare(seq)
    assert late.ci[0] <= 0.01 <= late.ci[1]
    assert late.ci[1] - late.ci[0] < early.ci[1] - early.ci[0]
    assert late.p_value <= early.p_value  # always-valid p-values never rise


def test_means_use_welch_variance():
    rng = np.random.default_rng(5)
    a, b = rng.normal(3.5, 1.0, 4000), rng.normal(3.7, 1.2, 4000)
    seq = [(Look(a[:m].sum(), m, (a[:m] ** 2).sum()), Look(b[:m].sum(), m, (b[:m] ** 2).sum()))
           for m in range(500, 4001, 500)]
    c = compare(seq, "mean", tau=0.1)
    assert c.significant and c.ci[0] <= 0.2 <= c.ci[1]
    with pytest.raises(ValueError):
        compare(seq, "median")


def test_assignment_is_sticky_balanced_and_exclusive_within_a_namespace():
    exp = Experiment.create("home-ranker", {"control": 0.5, "treatment": 0.5}, salt="2026-11")
    users = [f"user-{i}" for i in range(20_000)]
    arms = [assign(exp, u).name for u in users]
    assert arms == [assign(exp, u).name for u in users]
    assert abs(arms.count("treatment") / len(users) - 0.5) < 0.02
    # two experiments in one namespace never share a user
    a = Experiment.create("a", {"c": 0.5, "t": 0.5}, traffic=(0.0, 0.5), namespace="home")
    b = Experiment.create("b", {"c": 0.5, "t": 0.5}, traffic=(0.5, 1.0), namespace="home")
    check_namespaces([a, b])
    taken = [assign(a, u) is not None for u in users], [assign(b, u) is not None for u in users]
    assert not any(x and y for x, y in zip(*taken))
    assert abs(sum(taken[0]) / len(users) - 0.5) < 0.02
    assert assign_any([a, b], users[0]) is not None
    # an audience and a schedule
    aud = Experiment.create("seg", {"c": 1.0}, audience=frozenset({"artist"}), start=100.0, stop=200.0)
    assert assign(aud, "u", segment="artist", now=150.0) is not None
    assert assign(aud, "u", segment="engineer", now=150.0) is None and assign(aud, "u", "artist", now=250.0) is None


def test_resharing_moves_only_the_users_it_must():
    exp = Experiment.create("e", {"control": 0.5, "b": 0.3, "c": 0.2})
    new = reshare(exp, {"control": 0.2, "b": 0.3, "c": 0.5})
    assert moved(exp, new) == pytest.approx(0.3)  # half of |−0.3| + |0| + |+0.3|
    users = [f"u{i}" for i in range(20_000)]
    changed = sum(assign(exp, u).name != assign(new, u).name for u in users) / len(users)
    assert changed == pytest.approx(0.3, abs=0.02)
    assert [a.name for a in new.arms] == ["control", "b", "c"]
    assert abs(sum(assign(new, u).name == "c" for u in users) / len(users) - 0.5) < 0.02
    with pytest.raises(ValueError, match="add up to 1"):
        reshare(exp, {"control": 0.5})
