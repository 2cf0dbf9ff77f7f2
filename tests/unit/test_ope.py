"""Off-policy estimators: known answers on small logs, and on simulated logs with a known true CTR
(trainer/ope_simulation.py) the estimates are unbiased and their 95% intervals cover the truth
at close to the nominal rate."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

import trainer.ope as ope
from trainer.ope import Logs, doubly_robust, estimate_all, ips, observed, snips
from trainer.ope_simulation import World, simulate


def test_doctests():
    assert doctest.testmod(ope).failed == 0


def _small():
    # two lists of three; the second slot of list 0 was explored (p=0.1)
    return Logs.build(["r1"] * 3 + ["r2"] * 3, [0, 1, 2] * 2, ["a", "x", "c", "a", "b", "c"],
                      [0.9, 0.1, 0.9, 0.9, 0.9, 0.9], [0, 1, 0, 1, 0, 0])


def test_a_target_equal_to_the_logged_lists_gets_the_observed_ctr():
    logs = Logs.build(np.repeat(np.arange(50), 3), np.tile(np.arange(3), 50), [f"i{j}" for j in range(150)],
                      np.ones(150), (np.arange(150) % 7 == 0).astype(float))
    targets = [[f"i{3 * r + j}" for j in range(3)] for r in range(50)]
    want = observed(logs).value
    for est in (ips(logs, targets), snips(logs, targets), doubly_robust(logs, targets)):
        assert est.value == pytest.approx(want)


def test_known_answers_on_a_small_log():
    logs = _small()
    targets = [["a", "x", "c"], ["b", "a", "c"]]
    # list 1: x at 1 matched with p=0.1 and clicked: (1/0.1)/3; list 2: nothing of the target clicked
    assert ips(logs, targets).value == pytest.approx((10 / 3 + 0) / 2)
    # snips: Σwc / Σw = 10 / (1/0.9 + 10 + 1/0.9 + 1/0.9), times full lists
    assert snips(logs, targets).value == pytest.approx(10 / (10 + 3 / 0.9))
    assert ips(logs, targets).matched == 4


def test_no_support_means_no_ips_evidence():
    logs = _small()
    targets = [["q", "r", "s"], ["q", "r", "s"]]
    assert ips(logs, targets).value == 0.0
    assert np.isnan(snips(logs, targets).value)
    assert doubly_robust(logs, targets).matched == 0  # DR falls back on its model alone


def test_bad_logs_are_refused():
    with pytest.raises(ValueError):
        Logs.build([0], [0], ["a"], [0.0], [1])
    with pytest.raises(ValueError):
        Logs.build([0, 1], [0], ["a"], [1.0], [1])
    with pytest.raises(ValueError):
        Logs.build([], [], [], [], [])
    with pytest.raises(ValueError):
        ips(_small(), [["a"]])


def test_estimates_cover_the_simulated_truth():
    world = World()
    truth = world.true_ctr(world.target_noise)
    logged_truth = world.true_ctr(world.logging_noise)
    assert truth > logged_truth * 1.1  # the target is a better policy: a real difference to find
    runs = 80
    covered = {k: 0 for k in ("ips", "snips", "dr")}
    values = {k: [] for k in covered}
    for seed in range(runs):
        logs, targets = simulate(world, 5000, epsilon=0.2, pool=None, seed=seed)
        est = estimate_all(logs, targets)
        for k in covered:
            covered[k] += est[k].ci[0] <= truth <= est[k].ci[1]
            values[k].append(est[k].value)
    for k in covered:
        v = np.array(values[k])
        assert abs(v.mean() - truth) < 3 * v.std() / np.sqrt(runs), k  # no detectable bias
        assert 0.85 <= covered[k] / runs <= 1.0, (k, covered[k])  # nominal 0.95
    # the self-normalised and doubly robust estimates vary less than plain IPS
    assert np.std(values["dr"]) < np.std(values["ips"])
    assert np.std(values["snips"]) < np.std(values["ips"])
