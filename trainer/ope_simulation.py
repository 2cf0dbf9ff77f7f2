"""Simulated logged traffic with a known truth, for validating ``trainer/ope.py``
(``tests/unit/test_ope.py``, ``benchmarks/ope_simulation.py``).

Each request is a fresh user with a hidden attractiveness ``a(u, i)`` for every item; a click on
position j happens with probability ``θ_j · a(u, i)`` (the position-based click model, so the
item-position assumption of the estimators holds). The logging policy ranks by a noisy view of
``a`` and explores exactly as ``ranking/exploration.py`` does (explored positions drawn from its
next candidates together with the explored positions' own items; propensities from
``slot_probabilities``), vectorised here for speed (``ranking.exploration.explore`` itself is
checked against the same probabilities in ``tests/unit/test_exploration.py``). The target
policy ranks by a less (or more) noisy view. Its true CTR is the exact expectation
``mean_u (1/K) Σ_j θ_j a(u, t_j)`` over a large independent population.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ranking.exploration import slot_probabilities
from trainer.ope import Logs

THETA = np.array([1.0, 0.7, 0.5, 0.35, 0.25, 0.2, 0.16, 0.13, 0.11, 0.1])


@dataclass(frozen=True)
class World:
    n_items: int = 30
    k: int = 4
    dim: int = 4
    logging_noise: float = 1.5
    target_noise: float = 0.5
    seed: int = 0

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return rng.normal(size=(self.n_items, self.dim)), rng.normal(0.0, 0.7, self.n_items)

    def attractiveness(self, rng: np.random.Generator, n: int) -> np.ndarray:
        vec, bias = self.items()
        users = rng.normal(size=(n, self.dim))
        return 1.0 / (1.0 + np.exp(-(0.8 * users @ vec.T + bias - 3.0)))

    def rank(self, rng: np.random.Generator, a: np.ndarray, noise: float) -> np.ndarray:
        """Item indices, best first, by logit(a) plus per-(user, item) noise."""
        score = np.log(a / (1 - a)) + noise * rng.normal(size=a.shape)
        return np.argsort(-score, axis=1)

    def true_ctr(self, noise: float, n: int = 200_000, seed: int = 12345) -> float:
        rng = np.random.default_rng(seed)
        a = self.attractiveness(rng, n)
        top = self.rank(rng, a, noise)[:, : self.k]
        return float((np.take_along_axis(a, top, axis=1) * THETA[: self.k]).mean())


def simulate(world: World, n_requests: int, epsilon: float, pool: int | None, seed: int,
             target_noise: float | None = None) -> tuple[Logs, list[list[str]]]:
    """Logs of ``n_requests`` served lists (exploration ``epsilon`` per slot over the logging
    policy's next ``pool`` candidates; None: all the rest) and the target's list per request."""
    rng = np.random.default_rng(seed)
    k = world.k
    a = world.attractiveness(rng, n_requests)
    ranked = world.rank(rng, a, world.logging_noise)
    r = (world.n_items - k) if pool is None else min(pool, world.n_items - k)
    det, rest = ranked[:, :k], ranked[:, k : k + r]
    explored = rng.random((n_requests, k)) < epsilon
    # the urn: the pool and the explored positions' own items; a uniform sample, in random order
    urn = np.concatenate([rest, det], axis=1)
    member = np.concatenate([np.ones((n_requests, r), dtype=bool), explored], axis=1)
    keys = np.where(member, rng.random(urn.shape), -1.0)
    order = np.argsort(-keys, axis=1)
    rank_in_e = np.cumsum(explored, axis=1) - 1
    picks = np.take_along_axis(urn, np.take_along_axis(order, np.maximum(rank_in_e, 0), axis=1), axis=1)
    shown = np.where(explored, picks, det)
    own, from_pool, other = slot_probabilities(k, r, epsilon)
    in_pool = (shown[:, :, None] == rest[:, None, :]).any(axis=2)
    prop = np.where(shown == det, own, np.where(in_pool, from_pool, other))
    p_click = THETA[:k] * np.take_along_axis(a, shown, axis=1)
    clicks = (rng.random((n_requests, k)) < p_click).astype(float)
    target = world.rank(rng, a, world.target_noise if target_noise is None else target_noise)[:, :k]
    names = np.array([f"i{j}" for j in range(world.n_items)], dtype=object)
    logs = Logs.build(np.repeat(np.arange(n_requests), k), np.tile(np.arange(k), n_requests),
                      names[shown.ravel()], prop.ravel(), clicks.ravel())
    return logs, names[target].tolist()
