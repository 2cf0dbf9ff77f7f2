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

import numpy as np
from scipy import stats


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


# --- CUPED ----------------------------------------------------------------------------------
# Controlled-experiment Using Pre-Experiment Data (Deng, Xu, Kohavi and Walker, WSDM 2013). Each
# user's metric Y during the experiment is partly predictable from the same user's activity X
# before it (which the treatment cannot have touched). Y' = Y − θ (X − mean X), θ = cov(X, Y) /
# var(X), keeps every arm's mean (X's mean is subtracted, and X is independent of the arm by
# randomisation) but removes the part of the variance X explains: var(Y') = var(Y) (1 − ρ²).
# θ is pooled over both arms, so the adjustment is the same function for everyone.


@dataclass(frozen=True)
class CupedResult:
    theta: float
    control: float  # the control arm's mean (unchanged by the adjustment, up to noise)
    treatment: float
    diff: float  # treatment − control, CUPED-adjusted
    ci: tuple[float, float]  # fixed-horizon, normal approximation
    p_value: float
    diff_raw: float  # the same without CUPED
    ci_raw: tuple[float, float]
    variance_reduction: float  # 1 − var(diff) / var(diff_raw)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def cuped_theta(y, x) -> float:
    """θ = cov(X, Y) / var(X); 0 when X does not vary (then CUPED changes nothing).

    >>> cuped_theta([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    0.5
    """
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    if y.shape != x.shape or y.ndim != 1:
        raise ValueError(f"y and x must be 1-d and of one length, got {y.shape} and {x.shape}")
    if len(y) < 2:
        return 0.0
    var = x.var(ddof=1)
    return float(np.cov(x, y, ddof=1)[0, 1] / var) if var > 0 else 0.0


def cuped_adjust(y, x, theta: float, x_mean: float):
    """Y − θ (X − x_mean), as a numpy array."""
    return np.asarray(y, dtype=float) - theta * (np.asarray(x, dtype=float) - x_mean)


def cuped_compare(y_control, x_control, y_treatment, x_treatment, alpha: float = 0.05) -> CupedResult:
    """Treatment against control on per-user values ``y`` with pre-experiment covariates ``x``
    (e.g. each user's clicks or sessions in the weeks before the start; 0 for new users).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> xc, xt = rng.poisson(5, 5000).astype(float), rng.poisson(5, 5000).astype(float)
    >>> yc, yt = xc + rng.normal(0, 1, 5000), xt + 0.1 + rng.normal(0, 1, 5000)
    >>> r = cuped_compare(yc, xc, yt, xt)
    >>> r.ci[0] < 0.1 < r.ci[1], r.variance_reduction > 0.7
    (True, True)
    """
    yc, xc = np.asarray(y_control, dtype=float), np.asarray(x_control, dtype=float)
    yt, xt = np.asarray(y_treatment, dtype=float), np.asarray(x_treatment, dtype=float)
    if yc.shape != xc.shape or yt.shape != xt.shape:
        raise ValueError("each arm needs one covariate per value")
    if len(yc) < 2 or len(yt) < 2:
        raise ValueError("each arm needs at least two users")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y_all, x_all = np.concatenate([yc, yt]), np.concatenate([xc, xt])
    theta = cuped_theta(y_all, x_all)
    x_mean = float(x_all.mean())
    ac, at = cuped_adjust(yc, xc, theta, x_mean), cuped_adjust(yt, xt, theta, x_mean)
    z = float(stats.norm.ppf(1 - alpha / 2))

    def diff_and_var(c, t):
        return float(t.mean() - c.mean()), float(c.var(ddof=1) / len(c) + t.var(ddof=1) / len(t))

    d, v = diff_and_var(ac, at)
    d_raw, v_raw = diff_and_var(yc, yt)
    se, se_raw = math.sqrt(v), math.sqrt(v_raw)
    p = float(2 * stats.norm.sf(abs(d) / se)) if se > 0 else (1.0 if d == 0 else 0.0)
    return CupedResult(theta, float(ac.mean()), float(at.mean()), d, (d - z * se, d + z * se), p, d_raw,
                       (d_raw - z * se_raw, d_raw + z * se_raw), 1 - v / v_raw if v_raw > 0 else 0.0)
