"""The verdicts: a finding is a condition that should be alerted on; no finding, no alert.

A metric drop must be both large (relative drop above the threshold) and significant (a
one-sided two-proportion z-test for rates, Welch's t-test for means), on enough samples in each
window: a large drop on a handful of impressions is noise, a significant 1% drop is not news.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from schemas.alerts import AlertKind


@dataclass(frozen=True)
class Finding:
    kind: AlertKind
    metric: str
    arm: str | None
    message: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def episode(self) -> str:
        return f"{self.kind.value}:{self.metric}:{self.arm or '-'}"


@dataclass(frozen=True)
class Rate:
    """Successes over trials in a window (clicks over impressions)."""

    hits: int
    trials: int

    @property
    def value(self) -> float:
        return self.hits / self.trials if self.trials else 0.0


def rate_drop(metric: str, arm: str, recent: Rate, baseline: Rate, *, drop: float, alpha: float,
              min_samples: int) -> Finding | None:
    """A rate that fell by more than ``drop`` (relative), significantly, on enough trials.

    >>> base, now = Rate(1000, 20_000), Rate(420, 10_000)  # 5% -> 4.2%: 16% lower
    >>> rate_drop("ctr", "policy", now, base, drop=0.05, alpha=0.05, min_samples=1000).figures["change"]
    -0.16
    >>> rate_drop("ctr", "policy", Rate(49, 1000), base, drop=0.05, alpha=0.05, min_samples=1000) is None  # 2% lower
    True
    >>> rate_drop("ctr", "policy", Rate(20, 500), base, drop=0.05, alpha=0.05, min_samples=1000) is None  # too few
    True
    """
    if recent.trials < min_samples or baseline.trials < min_samples or baseline.value <= 0:
        return None
    change = recent.value / baseline.value - 1.0
    if change > -drop:
        return None
    # one-sided: is the recent rate smaller than the baseline's?
    _, p = proportions_ztest([recent.hits, baseline.hits], [recent.trials, baseline.trials], alternative="smaller")
    if not p < alpha:
        return None
    figures = {"recent": round(recent.value, 6), "baseline": round(baseline.value, 6), "change": round(change, 4),
               "p_value": float(p), "recent_samples": recent.trials, "baseline_samples": baseline.trials}
    return Finding(AlertKind.metric_drop, metric, arm,
                   f"{metric} of {arm} fell {-change:.1%}: {recent.value:.4f} against {baseline.value:.4f} "
                   f"(p = {p:.2g}, {recent.trials} and {baseline.trials} samples)", figures)


@dataclass(frozen=True)
class Mean:
    mean: float
    std: float
    n: int


def mean_drop(metric: str, arm: str, recent: Mean, baseline: Mean, *, drop: float, alpha: float,
              min_samples: int) -> Finding | None:
    """A mean (a rating) that fell by more than ``drop`` (relative), significant by Welch's t-test.

    >>> mean_drop("rating", "policy", Mean(3.6, 1.0, 2000), Mean(4.0, 1.0, 8000), drop=0.05, alpha=0.05,
    ...           min_samples=100).figures["change"]
    -0.1
    """
    if recent.n < min_samples or baseline.n < min_samples or baseline.mean <= 0:
        return None
    change = recent.mean / baseline.mean - 1.0
    if change > -drop:
        return None
    t, p_two = stats.ttest_ind_from_stats(recent.mean, recent.std, recent.n, baseline.mean, baseline.std,
                                          baseline.n, equal_var=False)
    p = p_two / 2 if t < 0 else 1 - p_two / 2  # one-sided: recent < baseline
    if not p < alpha:
        return None
    figures = {"recent": recent.mean, "baseline": baseline.mean, "change": round(change, 4), "p_value": float(p),
               "recent_samples": recent.n, "baseline_samples": baseline.n}
    return Finding(AlertKind.metric_drop, metric, arm,
                   f"{metric} of {arm} fell {-change:.1%}: {recent.mean:.3f} against {baseline.mean:.3f} (p = {p:.2g})",
                   figures)


def volume_drop(events_so_far: int, baseline_per_day: float, day_fraction: float, *, drop: float,
                min_expected: float = 100.0) -> Finding | None:
    """Fewer events today than the baseline days had by this time of day, by more than ``drop``.

    >>> volume_drop(300, 2400.0, 0.5, drop=0.5).figures["change"]
    -0.75
    >>> volume_drop(900, 2400.0, 0.5, drop=0.5) is None
    True
    """
    expected = baseline_per_day * day_fraction
    if expected < min_expected:
        return None  # too early in the day, or too little traffic, to tell
    change = events_so_far / expected - 1.0
    if change > -drop:
        return None
    return Finding(AlertKind.volume_drop, "events", None,
                   f"{events_so_far} events today against {expected:.0f} expected by now ({-change:.0%} fewer)",
                   {"recent": events_so_far, "expected": round(expected, 1), "change": round(change, 4)})


def above(kind: AlertKind, metric: str, value: float, bound: float, what: str) -> Finding | None:
    """A figure over its bound (DLQ rate, records behind, days since a promotion).

    >>> above(AlertKind.consumer_lag, "records_behind", 25_000, 10_000, "records behind").message
    'records behind: 25000 (bound 10000)'
    """
    if value <= bound:
        return None
    shown = f"{value:.2%}" if metric.endswith("rate") else f"{value:g}"
    bound_shown = f"{bound:.2%}" if metric.endswith("rate") else f"{bound:g}"
    return Finding(kind, metric, None, f"{what}: {shown} (bound {bound_shown})", {"value": value, "bound": bound})
