"""Choosing a run's hyperparameters and its policy on validation, never on test.

``streamrec train`` with its defaults does what ``benchmarks/quality.py`` used to do by hand:

1. every model with a grid (``GRIDS``) is fitted once per grid point on the validation fit
   part and the best NDCG@k on the validation part wins; models without a grid use
   ``DEFAULT_PARAMS`` (their architecture and epochs; deep models stop early on their own);
2. the blend weights are searched coordinate-wise on the validation score rows, anchored on
   the best single model (weight 1), the others from ``BLEND_GRID`` — with the same
   rescaler and blend that serving runs (``ranking.scores``);
3. the MMR λ is chosen among ``MMR_GRID`` by evaluating the whole policy the way it is served
   (``trainer.policy_eval``); λ = 1 (no diversification) unless another value is better by
   more than ``MMR_MIN_GAIN`` (1 %, relative).

Parameters given explicitly (``--param``) are never searched over. A ``SearchBudget``
(``STREAMREC_TUNE_BUDGET_S``) bounds the whole search: when it runs out, each step keeps the
best configuration found so far, and the run's ``metrics.json`` and the ``train`` output say
where it stopped. The first point of each step always runs, so every model is fitted.
"""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from ranking.policy import Policy
from ranking.scores import rescale
from trainer.base import Recommender
from trainer.data.interactions import Interactions
from trainer.evaluation import ranking_metrics, relevance_matrix, top_k_items, top_metrics

log = logging.getLogger(__name__)

#: Searched on validation (values around the ones that won on MovieLens-100K). The corners
#: dropped (EASE without user weight, RP3beta α 1.0 or β 0.2) lost by 0.003–0.03 on ML-100K
#: validation; ``FULL_GRIDS`` still has them.
GRIDS: dict[str, dict[str, list]] = {
    "ease": {"lambda_": [200.0, 300.0, 500.0], "user_weight": [0.5], "dropout": [0.0, 0.5]},
    "rp3beta": {"alpha": [0.6, 0.8], "beta": [0.35, 0.5], "neighbors": [200]},
    "itemknn": {"neighbors": [100, 200], "shrink": [0.0, 20.0]},
}
#: Fixed architectures of the deep models, chosen so that ``streamrec train``'s default retrain
#: fits its time budget (docs/trainer.md: "What a retrain costs"). Mult-VAE: 5 members × 35
#: epochs at lr 4e-3 held the validation NDCG of 5 × 150 at 1e-3 (0.4773 / 0.4755 over two
#: seeds against 0.4775 / 0.4766) at a quarter of the epochs. The two-tower's softmax over the
#: batch's distinct items: validation 0.4063 → 0.4379, in 8 epochs (its validation loss is flat
#: after 6; 14 epochs until patience ran out gave the same 0.4379).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "ncf": {"loss": "bce", "negatives": 4, "batch_size": 1024, "lr": 2e-3, "epochs": 30, "patience": 5},
    "two_tower": {"epochs": 8, "patience": 3, "warm_epochs": 3, "distinct_classes": True},
    "lightfm": {"loss": "warp", "no_components": 64, "learning_rate": 0.05, "epochs": 30, "warm_epochs": 10},
    "multvae": {"latent_dim": 200, "dropout": 0.5, "beta": 0.2, "epochs": 35, "lr": 4e-3, "ensemble": 5,
                "warm_epochs": 20},
}
#: ``STREAMREC_TRAIN_PROFILE=full``: the models and grids before the time budget (Mult-VAE 5 × 150,
#: the two-tower's batch × batch softmax, LightFM 40 epochs, EASE 12 points, RP3beta 9), the
#: figures the budgeted defaults are compared with.
FULL_PARAMS: dict[str, dict[str, Any]] = {
    "ncf": DEFAULT_PARAMS["ncf"],
    "two_tower": {"epochs": 30, "patience": 5},
    "lightfm": {"loss": "warp", "no_components": 64, "learning_rate": 0.05, "epochs": 40},
    "multvae": {"latent_dim": 200, "dropout": 0.5, "beta": 0.2, "epochs": 150, "ensemble": 5},
}
FULL_GRIDS: dict[str, dict[str, list]] = {
    "ease": {"lambda_": [200.0, 300.0, 500.0], "user_weight": [0.0, 0.5], "dropout": [0.0, 0.5]},
    "rp3beta": {"alpha": [0.6, 0.8, 1.0], "beta": [0.2, 0.35, 0.5], "neighbors": [200]},
    "itemknn": GRIDS["itemknn"],
}
#: ``STREAMREC_TRAIN_PROFILE=fast``: cheaper still — Mult-VAE 3 × 60 epochs of 256 users (lr 3e-3)
#: and warm refits (``warm_epochs``) for every deep model.
FAST_PARAMS: dict[str, dict[str, Any]] = {
    **DEFAULT_PARAMS,
    "multvae": {"latent_dim": 200, "dropout": 0.5, "beta": 0.2, "epochs": 60, "batch_size": 256, "lr": 3e-3,
                "ensemble": 3, "warm_epochs": 20},
}
FAST_GRIDS = GRIDS
PROFILES = ("default", "fast", "full")


def profile(name: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list]]]:
    """(default params, grids) of a training profile: ``default``, ``fast`` or ``full``."""
    if name == "fast":
        return FAST_PARAMS, FAST_GRIDS
    if name == "full":
        return FULL_PARAMS, FULL_GRIDS
    return DEFAULT_PARAMS, GRIDS


BLEND_GRID = [0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
MMR_GRID = [1.0, 0.9, 0.8]
MMR_MIN_GAIN = 0.01  # relative validation gain a λ < 1 must bring over no diversification
#: Models that never enter a blend: popularity is the live signal's job, content is too weak to mix.
NOT_BLENDED = ("popularity",)


@dataclass
class SearchBudget:
    """Seconds the search may take (None: no limit); the notes say what was cut.

    >>> b = SearchBudget(10.0, clock=iter([0.0, 11.0]).__next__)
    >>> b.exhausted(), b.cut("ease grid", done=1, total=8), b.notes
    (True, True, ['ease grid: stopped after 1 of 8 points, the search budget of 10 s ran out'])
    """

    seconds: float | None = None
    clock: Callable[[], float] = time.monotonic
    notes: list[str] = field(default_factory=list)
    started: float | None = None  # on ``clock``; None: now. A fit worker gets the run's start (trainer.fit_pool)

    def __post_init__(self) -> None:
        if self.started is None:
            self.started = self.clock()

    def exhausted(self) -> bool:
        return self.seconds is not None and self.clock() - self.started > self.seconds

    def cut(self, step: str, done: int, total: int) -> bool:
        """Record that ``step`` stops after ``done`` of ``total`` points; True (for ``if ...: break``)."""
        note = f"{step}: stopped after {done} of {total} points, the search budget of {self.seconds:g} s ran out"
        self.notes.append(note)
        log.warning("%s", note)
        return True


UNLIMITED = SearchBudget()


def grid(space: Mapping[str, list]) -> list[dict]:
    """Every combination of a parameter grid.

    >>> grid({"a": [1, 2], "b": [0]})
    [{'a': 1, 'b': 0}, {'a': 2, 'b': 0}]
    """
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


class Precomputed(Recommender):
    """Fixed score rows (a blend under evaluation, nothing refitted)."""

    name = "precomputed"

    def __init__(self, scores: np.ndarray | None = None):
        self.scores = scores

    def _fit(self, data: Interactions) -> None:
        pass

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        return self.scores[uidx]


@dataclass
class Judged:
    """A validation part with its relevance matrix built once: a search measures dozens of
    candidates on the same part, and building the matrix was half of each measurement."""

    data: Interactions
    val: pd.DataFrame

    def __post_init__(self) -> None:
        self.rel, self.n_rel = relevance_matrix(self.data, self.val)
        self.users = np.flatnonzero(self.n_rel > 0)

    def ndcg(self, model: Recommender, k: int) -> float:
        if len(self.users) == 0:  # ranking_metrics says why
            return float(ranking_metrics(model, self.data, self.val, k)[f"ndcg@{k}"])
        top = top_k_items(model, self.users, k)
        return float(top_metrics(top, self.rel, self.n_rel, self.users, self.data.n_items, k)[f"ndcg@{k}"])


def ndcg(model: Recommender, data: Interactions, val: pd.DataFrame | Judged, k: int) -> float:
    if isinstance(val, Judged):
        return val.ndcg(model, k)
    return float(ranking_metrics(model, data, val, k)[f"ndcg@{k}"])


def search_params(name: str, given: dict[str, Any], fit: Callable[[dict], Recommender],
                  data: Interactions, val: pd.DataFrame, k: int,
                  budget: SearchBudget = UNLIMITED, train_profile: str = "default",
                  ) -> tuple[dict[str, Any], Recommender, dict]:
    """(chosen params, the model fitted with them, {str(params): val ndcg}) for one model."""
    defaults, grids = profile(train_profile)
    base = {**defaults.get(name, {}), **given}
    space = {p: v for p, v in grids.get(name, {}).items() if p not in given}
    trials: dict[str, float] = {}
    judged = val if isinstance(val, Judged) else Judged(data, val)
    best: tuple[float, dict, Recommender] | None = None
    points = grid(space) if space else [{}]
    for i, point in enumerate(points):
        if i > 0 and budget.exhausted() and budget.cut(f"{name} grid", i, len(points)):
            break
        params = {**base, **point}
        model = fit(params)
        score = ndcg(model, data, judged, k)
        trials[str(point)] = round(score, 5)
        log.info("  %s %s: validation ndcg@%d=%.4f", name, point or "(defaults)", k, score)
        if best is None or score > best[0]:
            best = (score, params, model)
    assert best is not None
    return best[1], best[2], trials


def search_blend(rows: Mapping[str, np.ndarray], data: Interactions, val: pd.DataFrame, k: int,
                 how: str = "zscore", rounds: int = 2,
                 budget: SearchBudget = UNLIMITED) -> tuple[dict[str, float], float]:
    """Blend weights by coordinate search on validation rows; (weights > 0, val ndcg)."""
    judged = val if isinstance(val, Judged) else Judged(data, val)
    scaled = {n: rescale(r, how) for n, r in rows.items()}  # once, not per trial: blend(rows, w, how) is Σ w·rescale

    def score(w: dict[str, float]) -> float:
        parts = [v * scaled[n] for n, v in w.items() if v != 0.0]
        total = sum(parts[1:], parts[0]) if parts else np.zeros_like(next(iter(scaled.values())))
        return ndcg(Precomputed(total).fit(data), data, judged, k)

    single = {n: score({n: 1.0}) for n in rows}
    anchor = max(single, key=single.get)
    weights = {n: (1.0 if n == anchor else 0.0) for n in rows}
    best = single[anchor]
    others = [n for n in rows if n != anchor]
    trials = [(r, name, value) for r in range(rounds if len(rows) > 1 else 0) for name in others for value in BLEND_GRID]
    for i, (r, name, value) in enumerate(trials):
        if budget.exhausted() and budget.cut("blend weights", i, len(trials)):
            break
        trial = {**weights, name: value}
        s = score(trial)
        if s > best + 1e-5:
            best, weights = s, trial
    log.info("  blend weights %s: validation ndcg@%d=%.4f", {n: w for n, w in weights.items() if w}, k, best)
    return {n: w for n, w in weights.items() if w > 0}, best


def choose_policy(rows: Mapping[str, np.ndarray], data: Interactions, val: pd.DataFrame, k: int,
                  evaluate: Callable[[Policy], float], base: Policy | None = None,
                  budget: SearchBudget = UNLIMITED) -> tuple[Policy, dict[str, Any]]:
    """The policy to serve: blend weights on validation rows, then λ through the served path."""
    blendable = {n: r for n, r in rows.items() if n not in NOT_BLENDED}
    if not blendable:
        return Policy.popularity(), {"reason": "no model to blend"}
    weights, blend_score = search_blend(blendable, data, val, k, budget=budget)
    template = base or Policy()
    name = "blend" if len(weights) > 1 else next(iter(weights))
    policy = Policy.blend(weights, name=name, rescale=template.rescale, candidates=template.candidates,
                          full_scoring_max_items=template.full_scoring_max_items, category_cap=template.category_cap,
                          fill=template.fill, mmr_lambda=1.0)
    by_lambda = {}
    for i, lam in enumerate(MMR_GRID):  # 1.0 (no diversification) first: it always runs
        if i > 0 and budget.exhausted() and budget.cut("MMR λ", i, len(MMR_GRID)):
            break
        by_lambda[lam] = evaluate(policy.with_(mmr_lambda=lam))
        log.info("  policy %s λ=%.2f: validation ndcg@%d=%.4f", name, lam, k, by_lambda[lam])
    # diversify only for a gain beyond noise (MMR costs a metadata read and vectors per request)
    best = max(by_lambda, key=by_lambda.get)
    lam = best if by_lambda[best] > by_lambda[1.0] * (1 + MMR_MIN_GAIN) else 1.0
    notes = {"chosen_on": "validation carved from the training data", "blend_validation_ndcg": round(blend_score, 5),
             "mmr_validation_ndcg": {str(x): round(v, 5) for x, v in by_lambda.items()}}
    return policy.with_(mmr_lambda=lam, notes=notes), notes
