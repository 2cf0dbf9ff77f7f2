"""Coverage-greedy assortment: pick the list that most likely holds *at least one* wanted item.

Hit@K asks whether any of the K suggestions is in the rest of the basket, so K items that all
come together (whole milk, other vegetables, rolls/buns) waste slots: once one of them is
shown, the others mostly hit the same baskets. The expected coverage needs a model of which
items come *together*, not just how often each comes with the basket. A basket-index
conditional cover (the training baskets holding the shown items, greedily covered) over-fits
the few hundred baskets it conditions on (it lost to plain co-occurrence on our validation
split, see README, section basket); a **mixture of independent Bernoullis** over the training
baskets (``trainer.basket_cover``) is the smoothed version of the same idea and small enough to
ship in the run (``basket_cover.npz``: Z weights and a Z × items matrix).

With component weights π and item probabilities θ, the shown items S give the posterior
``P(z | S) ∝ π_z Π_{s∈S} θ_zs``; a list L misses the basket with probability
``Σ_z P(z | S) Π_{j∈L} (1 − θ_zj)``. Its complement is monotone submodular in L, so the greedy
pick (largest marginal gain ``Σ_z P(z | S) Π_{j∈L}(1 − θ_zj) θ_zc``) is within (1 − 1/e) of the
best list. ``CoverState`` keeps ``P(z | S) Π (1 − θ)`` up to date as the assortment picks.

>>> m = CoverModel({"milk": 0, "veg": 1, "beer": 2}, np.array([0.5, 0.5]),
...                np.array([[0.9, 0.9, 0.05], [0.1, 0.1, 0.9]]))
>>> st = CoverState(m, [], ["milk", "veg", "beer"])
>>> st.gains().round(3).tolist()
[0.5, 0.5, 0.475]
>>> st.pick("milk"); st.gains()[1:].round(3).tolist()  # veg now mostly hits the baskets milk hits
[0.09, 0.408]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np


@dataclass
class CoverModel:
    """A Bernoulli mixture over baskets: ``weights`` (Z,), ``theta`` (Z, items) in (0, 1)."""

    index: Mapping[str, int]
    weights: np.ndarray
    theta: np.ndarray

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.theta = np.clip(np.asarray(self.theta, dtype=np.float64), 1e-9, 1 - 1e-9)
        if self.theta.ndim != 2 or self.theta.shape != (len(self.weights), len(self.index)):
            raise ValueError(f"cover model: theta {self.theta.shape} does not match "
                             f"{len(self.weights)} components x {len(self.index)} items")

    def posterior(self, shown: Sequence[str], size_power: float = 0.0) -> np.ndarray:
        """P(z | the basket holds ``shown``); items the model does not know are ignored.

        ``size_power`` > 0 divides by the component's expected basket size to that power: when
        the shown items are a random part of the basket (a basket in progress, or
        eval-basket's draw), a given item is less likely to be *the* one shown in a large
        basket (1 the exact correction for one shown item under this model's independence).

        >>> m = CoverModel({"a": 0}, np.array([0.5, 0.5]), np.array([[0.8], [0.2]]))
        >>> m.posterior(["a"]).round(2).tolist(), m.posterior(["unknown"]).round(2).tolist()
        ([0.8, 0.2], [0.5, 0.5])
        """
        cols = [self.index[s] for s in dict.fromkeys(shown) if s in self.index]
        logp = np.log(np.maximum(self.weights, 1e-300)) + np.log(self.theta[:, cols]).sum(axis=1)
        if size_power and cols:
            logp -= size_power * len(cols) * np.log(np.maximum(self.theta.sum(axis=1), 1.0))
        post = np.exp(logp - logp.max())
        return post / post.sum()


class CoverState:
    """Marginal coverage gains of a candidate pool while a list is picked from it."""

    def __init__(self, model: CoverModel, shown: Sequence[str], pool: Sequence[str], size_power: float = 0.0):
        self.model = model
        rows = np.array([model.index.get(c, -1) for c in pool], dtype=np.int64)
        self.known = rows >= 0
        # pool columns of theta (unknown items: zero probability, so zero gain)
        self.theta = np.where(self.known[None, :], model.theta[:, np.maximum(rows, 0)], 0.0)
        self.pos = {c: n for n, c in enumerate(pool)}
        self.miss = model.posterior(shown, size_power)  # P(z | S) × P(no pick so far is in the basket | z)

    def gains(self) -> np.ndarray:
        """For each pool item, the probability it is in the basket while no pick so far is."""
        return self.miss @ self.theta

    def pick(self, item: str) -> None:
        n = self.pos.get(item)
        if n is not None:
            self.miss = self.miss * (1.0 - self.theta[:, n])

    def p_hit(self) -> float:
        """Probability that at least one pick so far is in the basket (under the model)."""
        return float(1.0 - self.miss.sum())
