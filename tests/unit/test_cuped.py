"""CUPED on simulated experiments with a known effect: the adjusted estimate stays unbiased, its
variance drops by about ρ², its interval covers the truth at the nominal rate, and a covariate
unrelated to the metric changes (almost) nothing."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

import trainer.experiment_analysis as experiment_analysis
from trainer.experiment_analysis import cuped_compare, cuped_theta

EFFECT = 0.2


def test_doctests():
    assert doctest.testmod(experiment_analysis).failed == 0


def _users(rng: np.random.Generator, n: int, effect: float, rho_noise: float = 1.0):
    """Users' pre-period activity X (Poisson 4) and in-experiment metric Y = X·0.8 + effect + noise."""
    x = rng.poisson(4.0, n).astype(float)
    y = 0.8 * x + effect + rng.normal(0.0, rho_noise, n)
    return y, x


def test_unbiased_lower_variance_and_covering():
    rng = np.random.default_rng(21)
    runs, n = 400, 2000
    diffs, raws, covered = [], [], 0
    reductions = []
    for _ in range(runs):
        yc, xc = _users(rng, n, 0.0)
        yt, xt = _users(rng, n, EFFECT)
        r = cuped_compare(yc, xc, yt, xt)
        diffs.append(r.diff)
        raws.append(r.diff_raw)
        reductions.append(r.variance_reduction)
        covered += r.ci[0] <= EFFECT <= r.ci[1]
    diffs, raws = np.array(diffs), np.array(raws)
    # unbiased: the mean estimate is within 3 standard errors of the truth
    assert abs(diffs.mean() - EFFECT) < 3 * diffs.std() / np.sqrt(runs)
    # var(X)·0.8² = 2.56 of var(Y) = 3.56 is explained: ρ² ≈ 0.72
    rho2 = 0.64 * 4 / (0.64 * 4 + 1)
    assert diffs.var() / raws.var() == pytest.approx(1 - rho2, abs=0.08)
    assert np.mean(reductions) == pytest.approx(rho2, abs=0.03)
    assert 0.92 <= covered / runs <= 0.98  # nominal 95%


def test_a_useless_covariate_changes_almost_nothing():
    rng = np.random.default_rng(3)
    yc, yt = rng.normal(1, 1, 3000), rng.normal(1.1, 1, 3000)
    xc, xt = rng.normal(0, 1, 3000), rng.normal(0, 1, 3000)
    r = cuped_compare(yc, xc, yt, xt)
    assert abs(r.variance_reduction) < 0.01
    assert r.diff == pytest.approx(r.diff_raw, abs=0.01)


def test_constant_covariate_and_bad_input():
    assert cuped_theta([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == 0.0
    with pytest.raises(ValueError):
        cuped_theta([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        cuped_compare([1.0], [1.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        cuped_compare([1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0])
