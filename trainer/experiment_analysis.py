"""Experiment statistics that stay valid while someone watches: the mixture sequential
probability ratio test (mSPRT) and its always-valid confidence intervals.

A classical test checked every day declares a winner far more often than its α: every look is
another chance for noise to cross the line. The mSPRT (Johari, Koomen, Pekelis and Walsh,
"Always Valid Inference", 2017/2022) replaces the fixed-horizon statistic with a likelihood
ratio mixed over a normal prior N(0, τ²) on the effect θ = treatment − control. With the
estimate d and its variance V after any number of observations,

    Λ = sqrt(V / (V + τ²)) · exp( d² τ² / (2 V (V + τ²)) ),

and under "no effect" the chance that Λ *ever* reaches 1/α is at most α. Hence:

- the always-valid p-value after each look is ``min over looks of 1/Λ`` (never rises);
- the always-valid confidence interval for θ is ``d ± sqrt( V (V+τ²)/τ² · (2 log(1/α) + log((V+τ²)/V)) )``,
  and the running intersection of the intervals is valid as well.

τ is fixed before the data (it is not estimated from it, which would break the guarantee): about
the size of effect worth detecting. Rates (CTR, conversion) use the normal approximation of the
difference of two proportions; means (ratings) use Welch's variance. ``tests/unit/
test_experiment_analysis.py`` simulates traffic: an A/A test checked at every look declares a
winner in at most α of runs, and a 10% lift in CTR is detected.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Look:
    """One arm's cumulative figures at a look: successes (or sum) and trials (or count), and for
    means the sum of squares."""

    value: float
    n: float
    sum_sq: float | None = None  # means only

    def mean(self) -> float:
        return self.value / self.n if self.n else 0.0

    def variance_of_mean(self, kind: str) -> float:
        if self.n <= 1:
            return math.inf
        m = self.mean()
        if kind == "rate":
            return max(m * (1 - m), 1e-12) / self.n
        var = max((self.sum_sq - self.n * m * m) / (self.n - 1), 1e-12)  # sample variance
        return var / self.n


@dataclass(frozen=True)
class Comparison:
    control: float
    treatment: float
    diff: float
    lift: float | None  # relative to control
    ci: tuple[float, float]  # always-valid, for diff
    lift_ci: tuple[float, float] | None
    p_value: float  # always-valid
    significant: bool
    looks: int

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def mixture_ratio(d: float, v: float, tau: float) -> float:
    """Λ of the mSPRT for an estimate ``d`` with variance ``v`` (log-space to avoid overflow).

    >>> mixture_ratio(0.0, 1e-4, 0.01) < 1 < mixture_ratio(0.01, 1e-6, 0.01)
    True
    """
    if not math.isfinite(v) or v <= 0:
        return 0.0
    t2 = tau * tau
    log_ratio = 0.5 * math.log(v / (v + t2)) + d * d * t2 / (2 * v * (v + t2))
    return math.exp(min(log_ratio, 700.0))


def half_width(v: float, tau: float, alpha: float) -> float:
    if not math.isfinite(v) or v <= 0:
        return math.inf
    t2 = tau * tau
    return math.sqrt(v * (v + t2) / t2 * (2 * math.log(1 / alpha) + math.log((v + t2) / v)))


def compare(looks: list[tuple[Look, Look]], kind: str = "rate", tau: float = 0.01,
            alpha: float = 0.05) -> Comparison:
    """Treatment against control after a sequence of looks at cumulative figures (oldest first).

    >>> looks = [(Look(500 * i, 10_000 * i), Look(600 * i, 10_000 * i)) for i in range(1, 6)]
    >>> c = compare(looks, "rate", tau=0.01)
    >>> round(c.lift, 3), c.significant, c.ci[0] > 0
    (0.2, True, True)
    """
    if kind not in {"rate", "mean"}:
        raise ValueError(f"kind is 'rate' or 'mean', got {kind!r}")
    if not looks:
        raise ValueError("no looks to compare")
    p, lo, hi = 1.0, -math.inf, math.inf
    for ctl, trt in looks:
        d = trt.mean() - ctl.mean()
        v = ctl.variance_of_mean(kind) + trt.variance_of_mean(kind)
        lam = mixture_ratio(d, v, tau)
        p = min(p, 1.0 / lam if lam > 0 else 1.0)
        w = half_width(v, tau, alpha)
        lo, hi = max(lo, d - w), min(hi, d + w)  # the running intersection stays valid
    ctl, trt = looks[-1]
    base = ctl.mean()
    d = trt.mean() - base
    if lo > hi:  # the intersection emptied: only possible by chance, as rarely as α
        lo = hi = d
    lift = d / base if base else None
    lift_ci = (lo / base, hi / base) if base else None
    return Comparison(base, trt.mean(), d, lift, (lo, hi), lift_ci, min(p, 1.0), p <= alpha, len(looks))
