"""Off-policy estimates of a target policy's CTR from logged impressions with propensities.

The logs hold, for each served list (a request r), each position j: the item shown, the
propensity ``p_rj`` with which the logging policy put it there (``context.propensity``;
``ranking/exploration.py``), and the reward ``c_rj`` (1 if it was clicked). A deterministic
target policy would have shown ``t_rj`` at position j. Under the **item-position model** (the
click on position j depends on the user, the item and the position, not on the rest of the list;
Li et al., "Offline Evaluation of Ranking Policies with Click Models", KDD 2018), the target's
CTR (clicks per shown slot) is

    V = E_r[ (1/K_r) Σ_j P(click | t_rj at j) ],

and each logged slot where the logging policy happened to show ``t_rj`` at j is evidence about it,
weighted by ``w_rj = 1[item_rj = t_rj] / p_rj``:

- **IPS**: ``V̂ = mean_r (1/K_r) Σ_j w_rj c_rj``. Unbiased when every (item, position) the target
  uses has ``p > 0`` (exploration gives that within its pool), high variance when ``p`` is small.
- **SNIPS** (self-normalised): ``Σ_r Σ_j w c / Σ_r Σ_j w`` times the target's slots per list: a
  ratio, slightly biased, far less variable; its interval comes from the delta method.
- **DR** (doubly robust, Dudík et al. 2011): a reward model ``q̂(item, position)`` plus the IPS
  correction of its error, ``q̂(t_rj, j) + w_rj (c_rj − q̂(item_rj, j))``. Unbiased if either the
  propensities or the model are right; lower variance than IPS when the model is fair. The model
  (``PositionModel``: position effect × item attractiveness, shrunk to the mean) is cross-fitted:
  each half of the requests is predicted by the model fitted on the other half.

Requests are the independent units: every estimator's interval is a normal (CLT) interval over
per-request values, so slots of one list may be correlated. ``tests/unit/test_ope.py`` checks
known answers and, on simulated logs with a known true CTR, that the intervals cover it at close
to their nominal rate; ``benchmarks/ope_simulation.py`` prints the coverage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

ESTIMATORS = ("ips", "snips", "dr")


@dataclass(frozen=True)
class Logs:
    """Logged slots, one row per impression; ``request`` numbers the lists 0..n_requests-1.
    ``slots[r]`` is how many positions list r had (its CTR's denominator)."""

    request: np.ndarray  # int
    position: np.ndarray  # int, 0-based
    item: np.ndarray  # str (object)
    propensity: np.ndarray  # float in (0, 1]
    reward: np.ndarray  # float, usually 0/1
    n_requests: int
    slots: np.ndarray  # int per request

    @classmethod
    def build(cls, request, position, item, propensity, reward) -> "Logs":
        """Checked arrays; ``request`` may be any labels (numbered here in order of appearance)."""
        labels = np.asarray(request)
        _, req = np.unique(labels, return_inverse=True)
        position = np.asarray(position, dtype=np.int64)
        item = np.asarray(item, dtype=object)
        propensity = np.asarray(propensity, dtype=float)
        reward = np.asarray(reward, dtype=float)
        n = len(req)
        if not (len(position) == len(item) == len(propensity) == len(reward) == n):
            raise ValueError("request, position, item, propensity and reward must have one length")
        if n == 0:
            raise ValueError("no logged impressions")
        if np.any(position < 0):
            raise ValueError("positions are 0-based and >= 0")
        if np.any(~np.isfinite(propensity)) or np.any(propensity <= 0) or np.any(propensity > 1):
            raise ValueError("propensities must be in (0, 1]")
        n_req = int(req.max()) + 1
        slots = np.bincount(req, minlength=n_req)
        return cls(req.astype(np.int64), position, item, propensity, reward, n_req, slots)

    def target_matrix(self, targets: Sequence[Sequence[str]]) -> np.ndarray:
        """The target lists as an (n_requests, max logged slots) object array, None past a list's end."""
        if len(targets) != self.n_requests:
            raise ValueError(f"{len(targets)} target lists for {self.n_requests} requests")
        width = int(self.position.max()) + 1
        if all(len(t) >= width for t in targets):  # the usual case: one array operation
            return np.array([list(t)[:width] for t in targets], dtype=object).reshape(self.n_requests, width)
        out = np.full((self.n_requests, width), None, dtype=object)
        for r, t in enumerate(targets):
            t = list(t)[:width]
            out[r, : len(t)] = t
        return out

    def matches(self, targets: Sequence[Sequence[str]]) -> np.ndarray:
        """Per slot: whether the target's item at that position is the logged item."""
        return self.target_matrix(targets)[self.request, self.position] == self.item

    def target_slots(self, targets: Sequence[Sequence[str]]) -> np.ndarray:
        """Per request: how many of its logged positions the target fills."""
        return np.minimum(np.array([len(t) for t in targets]), self.slots)


@dataclass(frozen=True)
class Estimate:
    name: str
    value: float
    ci: tuple[float, float]
    se: float
    n_requests: int
    matched: int  # logged slots where target and logged item agree
    ess: float  # effective sample size of the weights, (Σw)² / Σw²

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _interval(per_request: np.ndarray, alpha: float) -> tuple[float, float, tuple[float, float]]:
    n = len(per_request)
    mean = float(per_request.mean())
    se = float(per_request.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    z = float(stats.norm.ppf(1 - alpha / 2))
    return mean, se, (mean - z * se, mean + z * se)


def _per_request(logs: Logs, values: np.ndarray) -> np.ndarray:
    """Σ_j values over each request's slots / K_r."""
    return np.bincount(logs.request, weights=values, minlength=logs.n_requests) / logs.slots


def _weights(logs: Logs, targets: Sequence[Sequence[str]]) -> tuple[np.ndarray, np.ndarray]:
    match = logs.matches(targets)
    return match, np.where(match, 1.0 / logs.propensity, 0.0)


def _ess(w: np.ndarray) -> float:
    s2 = float((w * w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def observed(logs: Logs, alpha: float = 0.05) -> Estimate:
    """The logging policy's own CTR (clicks per shown slot), with its interval.

    >>> logs = Logs.build([0, 0, 1, 1], [0, 1, 0, 1], ["a", "b", "a", "c"], [1, 1, 1, 1], [1, 0, 0, 0])
    >>> observed(logs).value
    0.25
    """
    mean, se, ci = _interval(_per_request(logs, logs.reward), alpha)
    return Estimate("logged", mean, ci, se, logs.n_requests, len(logs.item), float(len(logs.item)))


def ips(logs: Logs, targets: Sequence[Sequence[str]], alpha: float = 0.05) -> Estimate:
    """Inverse propensity scoring.

    >>> logs = Logs.build([0, 0, 1, 1], [0, 1, 0, 1], ["a", "b", "a", "c"], [0.5, 0.5, 0.5, 0.5], [1, 0, 0, 1])
    >>> ips(logs, [["a", "x"], ["y", "c"]]).value  # (1/0.5)/2 for each request
    1.0
    """
    match, w = _weights(logs, targets)
    mean, se, ci = _interval(_per_request(logs, w * logs.reward), alpha)
    return Estimate("ips", mean, ci, se, logs.n_requests, int(match.sum()), _ess(w))


def snips(logs: Logs, targets: Sequence[Sequence[str]], alpha: float = 0.05) -> Estimate:
    """Self-normalised IPS: per slot of the target, Σ w c / Σ w; its interval by the delta method.

    >>> logs = Logs.build([0, 0, 1, 1], [0, 1, 0, 1], ["a", "b", "a", "c"], [0.5, 0.5, 0.5, 0.5], [1, 0, 0, 1])
    >>> snips(logs, [["a", "x"], ["y", "c"]]).value  # half the matched slots clicked, full lists
    1.0
    """
    match, w = _weights(logs, targets)
    a = _per_request(logs, w * logs.reward)
    b = _per_request(logs, w)
    share = logs.target_slots(targets) / logs.slots  # the target's filled slots per logged slot
    if b.sum() <= 0:
        return Estimate("snips", math.nan, (math.nan, math.nan), math.inf, logs.n_requests, 0, 0.0)
    ratio = float(a.sum() / b.sum())
    value = ratio * float(share.mean())
    n = logs.n_requests
    # delta method for a ratio of means: var(a − R b) / (n · mean(b)²)
    resid = a - ratio * b
    se_ratio = float(resid.std(ddof=1) / (math.sqrt(n) * b.mean())) if n > 1 else math.inf
    se = se_ratio * float(share.mean())
    z = float(stats.norm.ppf(1 - alpha / 2))
    return Estimate("snips", value, (value - z * se, value + z * se), se, n, int(match.sum()), _ess(w))


class PositionModel:
    """Reward model q̂(item, position) = θ_position · α_item: the position's CTR relative to the
    mean, times the item's position-adjusted CTR shrunk toward the mean by ``prior`` pseudo-
    impressions (items seen rarely or never get the mean).

    >>> m = PositionModel().fit([0, 1, 0, 1], ["a", "a", "b", "b"], [1, 0, 0, 0])
    >>> m.predict(["a", "zz"], [0, 0]).round(3).tolist()
    [0.298, 0.273]
    """

    def __init__(self, prior: float = 20.0):
        self.prior = prior

    def fit(self, position, item, reward) -> "PositionModel":
        position = np.asarray(position, dtype=np.int64)
        item = np.asarray(item, dtype=object)
        reward = np.asarray(reward, dtype=float)
        self.mean = float(reward.mean()) if len(reward) else 0.0
        n_pos = int(position.max()) + 1 if len(position) else 1
        clicks = np.bincount(position, weights=reward, minlength=n_pos)
        shown = np.bincount(position, minlength=n_pos)
        rate = (clicks + self.prior * self.mean) / (shown + self.prior)
        self.theta = rate / self.mean if self.mean > 0 else np.ones(n_pos)
        codes, names = pd.factorize(item)
        exposure = np.bincount(codes, weights=self.theta[position], minlength=len(names))
        got = np.bincount(codes, weights=reward, minlength=len(names))
        self.alpha = dict(zip(names, (got + self.prior * self.mean) / (exposure + self.prior)))
        return self

    def predict(self, item, position) -> np.ndarray:
        position = np.asarray(position, dtype=np.int64)
        theta = np.where(position < len(self.theta), self.theta[np.minimum(position, len(self.theta) - 1)], self.theta[-1])
        alpha = pd.Series(np.asarray(item, dtype=object)).map(self.alpha).fillna(self.mean).to_numpy(dtype=float)
        return np.clip(theta * alpha, 0.0, 1.0)


def doubly_robust(logs: Logs, targets: Sequence[Sequence[str]], alpha: float = 0.05, folds: int = 2,
                  seed: int = 0, prior: float = 20.0) -> Estimate:
    """Doubly robust: the cross-fitted ``PositionModel``'s prediction for the target's list,
    corrected by the propensity-weighted error where the logs show the target's item.

    >>> logs = Logs.build([0, 0, 1, 1], [0, 1, 0, 1], ["a", "b", "a", "c"], [1.0, 1.0, 1.0, 1.0], [1, 0, 1, 0])
    >>> round(doubly_robust(logs, [["a", "b"], ["a", "c"]]).value, 6)  # target = logging: the observed CTR
    0.5
    """
    match, w = _weights(logs, targets)
    fold_of = np.random.default_rng(seed).integers(folds, size=logs.n_requests)
    slot_fold = fold_of[logs.request]
    correction = np.zeros(len(logs.item))
    direct = np.zeros(logs.n_requests)
    # the target's (item, position) pairs of every request, within its logged slots
    tm = logs.target_matrix(targets)
    t_req, t_pos = np.nonzero((tm != None) & (np.arange(tm.shape[1]) < logs.slots[:, None]))  # noqa: E711
    t_item = tm[t_req, t_pos]
    for f in range(folds):
        train = slot_fold != f
        if not train.any():  # a tiny log: fit on everything
            train = np.ones_like(train)
        model = PositionModel(prior).fit(logs.position[train], logs.item[train], logs.reward[train])
        here = slot_fold == f
        correction[here] = w[here] * (logs.reward[here] - model.predict(logs.item[here], logs.position[here]))
        mine = fold_of[t_req] == f if len(t_req) else np.zeros(0, dtype=bool)
        if mine.any():
            direct += np.bincount(t_req[mine], weights=model.predict(t_item[mine], t_pos[mine]), minlength=logs.n_requests)
    per_request = direct / logs.slots + _per_request(logs, correction)
    mean, se, ci = _interval(per_request, alpha)
    return Estimate("dr", mean, ci, se, logs.n_requests, int(match.sum()), _ess(w))


def estimate_all(logs: Logs, targets: Sequence[Sequence[str]], alpha: float = 0.05) -> dict[str, Estimate]:
    """The logging policy's CTR and the three estimates of the target's."""
    return {"logged": observed(logs, alpha), "ips": ips(logs, targets, alpha), "snips": snips(logs, targets, alpha),
            "dr": doubly_robust(logs, targets, alpha)}
