"""The ``bandit`` strategy: pick an arm (a strategy) per request from ``sr:bandit:{policy}``.

The stream agents keep ``{arm}:pulls`` and ``{arm}:rewards`` in that hash (impressions are
pulls; clicks, downloads... within the reward window are rewards). Every policy here is a few
lines of arithmetic on those totals, done in the open (no library object rebuilt from its
private state), refreshed from Redis about once a second:

- ``epsilon_greedy``: with probability ε a uniformly random arm, otherwise the arm with the
  highest mean reward (the first in the given order on a tie);
- ``ucb`` (UCB1, Auer et al. 2002): every arm once, then the highest
  ``mean + sqrt(2 ln N / n_arm)``; deterministic for given totals;
- ``thompson``: a draw from each arm's Beta(1 + rewards, 1 + pulls − rewards), the highest wins.

Rewards are clipped to [0, pulls] (a reward is a Bernoulli outcome of a pull). Besides the
choice, each policy gives the **probability** with which it chooses each arm; the impressions of
a bandit-served list log it as their propensity (docs/off-policy.md). For Thompson sampling that
probability has no closed form and is estimated once per refresh from 4,000 joint draws.

>>> p = policy_from_totals("epsilon_greedy", {"a": (100, 10.0), "b": (100, 50.0)}, epsilon=0.0, seed=1)
>>> p.pull(["a", "b"])
'b'
>>> policy_from_totals("epsilon_greedy", {"a": (100, 10.0), "b": (100, 50.0)}, epsilon=0.2).probabilities(["a", "b"])
{'a': 0.1, 'b': 0.9}
>>> parse_totals({b"a:pulls": b"4", b"a:rewards": b"1.5", b"junk": b"x"})
{'a': (4, 1.5)}
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Sequence

import numpy as np

from inference.store import RedisStore
from schemas.errors import StoreUnavailable

POLICIES = ("epsilon_greedy", "ucb", "thompson")
THOMPSON_DRAWS = 4000  # Monte Carlo draws for the choice probabilities: error about 0.008 at worst


def parse_totals(raw: dict) -> dict[str, tuple[int, float]]:
    out: dict[str, list[float]] = {}
    for key, val in (raw or {}).items():
        key = key.decode() if isinstance(key, bytes) else str(key)
        arm, _, what = key.rpartition(":")
        if what not in ("pulls", "rewards") or not arm:
            continue
        try:
            num = float(val)
        except (TypeError, ValueError):
            continue
        slot = out.setdefault(arm, [0.0, 0.0])
        slot[0 if what == "pulls" else 1] = num
    return {arm: (int(p), r) for arm, (p, r) in out.items()}


class BanditPolicy:
    """One policy over fixed totals: ``pull(arms)`` chooses, ``probabilities(arms)`` says how likely
    each choice is. Arms absent from the totals count as never pulled."""

    def __init__(self, name: str, totals: dict[str, tuple[int, float]], epsilon: float = 0.1,
                 seed: int | None = None):
        if name not in POLICIES:
            raise ValueError(f"unknown bandit policy {name!r}: one of {', '.join(POLICIES)}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.name, self.epsilon = name, epsilon
        self.rng = np.random.default_rng(seed)
        self.pulls: dict[str, int] = {}
        self.rewards: dict[str, float] = {}
        for arm, (pulls, rewards) in totals.items():
            pulls = max(int(pulls), 0)
            self.pulls[arm] = pulls
            self.rewards[arm] = min(max(float(rewards), 0.0), float(pulls))
        self._thompson_cache: dict[tuple[str, ...], dict[str, float]] = {}

    def _stats(self, arms: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        n = np.array([self.pulls.get(a, 0) for a in arms], dtype=float)
        r = np.array([self.rewards.get(a, 0.0) for a in arms], dtype=float)
        return n, r

    def _ucb_choice(self, arms: Sequence[str]) -> int:
        n, r = self._stats(arms)
        untried = np.flatnonzero(n == 0)
        if len(untried):
            return int(untried[0])
        bound = r / n + np.sqrt(2.0 * math.log(n.sum()) / n)
        return int(np.argmax(bound))

    def _greedy_choice(self, arms: Sequence[str]) -> int:
        n, r = self._stats(arms)
        means = np.divide(r, n, out=np.zeros_like(r), where=n > 0)
        return int(np.argmax(means))

    def _beta_draws(self, arms: Sequence[str], size: int | None) -> np.ndarray:
        n, r = self._stats(arms)
        shape = (len(arms),) if size is None else (size, len(arms))
        return self.rng.beta(1.0 + r, 1.0 + n - r, size=shape)

    def pull(self, arms: Sequence[str]) -> str:
        arms = list(arms)
        if not arms:
            raise ValueError("no arms to choose from")
        if self.name == "ucb":
            return arms[self._ucb_choice(arms)]
        if self.name == "thompson":
            return arms[int(np.argmax(self._beta_draws(arms, None)))]
        if self.rng.random() < self.epsilon:
            return arms[int(self.rng.integers(len(arms)))]
        return arms[self._greedy_choice(arms)]

    def probabilities(self, arms: Sequence[str]) -> dict[str, float]:
        """P(pull(arms) returns each arm) under the current totals."""
        arms = list(arms)
        if not arms:
            return {}
        k = len(arms)
        if self.name == "ucb":
            best = self._ucb_choice(arms)
            return {a: float(i == best) for i, a in enumerate(arms)}
        if self.name == "epsilon_greedy":
            best = self._greedy_choice(arms)
            return {a: self.epsilon / k + (1.0 - self.epsilon) * (i == best) for i, a in enumerate(arms)}
        key = tuple(arms)
        got = self._thompson_cache.get(key)
        if got is None:
            wins = np.bincount(np.argmax(self._beta_draws(arms, THOMPSON_DRAWS), axis=1), minlength=k)
            got = {a: float(w) / THOMPSON_DRAWS for a, w in zip(arms, wins)}
            self._thompson_cache[key] = got
        return got


def policy_from_totals(name: str, totals: dict[str, tuple[int, float]], epsilon: float = 0.1,
                       seed: int | None = None) -> BanditPolicy:
    """A policy whose per-arm state is the stored totals (an unknown name: ``epsilon_greedy``)."""
    return BanditPolicy(name if name in POLICIES else "epsilon_greedy", totals, epsilon, seed)


class BanditChooser:
    """Chooses arms for the ``bandit`` strategy; the policy state is refreshed lazily."""

    def __init__(self, store: RedisStore, policy: str = "epsilon_greedy", epsilon: float = 0.1, refresh_s: float = 1.0):
        self.store = store
        self.policy_name = policy if policy in POLICIES else "epsilon_greedy"
        self.epsilon = epsilon
        self.refresh_s = refresh_s
        self.totals: dict[str, tuple[int, float]] = {}
        self._policy = policy_from_totals(self.policy_name, {}, epsilon)
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        if time.monotonic() - self._at < self.refresh_s or self._lock.locked():
            return
        async with self._lock:
            self._at = time.monotonic()
            try:
                raw = await self.store.call(lambda c: c.hgetall(self.store.keys.bandit(self.policy_name)))
            except StoreUnavailable:
                return  # keep the last state: the bandit still answers while Redis is away
            self.totals = parse_totals(raw)
            self._policy = policy_from_totals(self.policy_name, self.totals, self.epsilon)

    async def choose(self, arms: list[str]) -> str:
        await self._refresh()
        return self._policy.pull(list(arms))

    async def choose_with_probability(self, arms: list[str]) -> tuple[str, float]:
        """The chosen arm and the probability the policy had of choosing it (its propensity)."""
        await self._refresh()
        arm = self._policy.pull(list(arms))
        # Thompson's probabilities are estimated: an arm drawn although its estimate is 0 gets the
        # estimate's resolution (a propensity must be > 0)
        return arm, max(self._policy.probabilities(arms).get(arm, 0.0), 1.0 / THOMPSON_DRAWS)

    def probabilities(self, arms: list[str]) -> dict[str, float]:
        """Choice probabilities under the last refreshed state (no Redis call)."""
        return self._policy.probabilities(arms)

    def describe(self) -> dict:
        return {"policy": self.policy_name, "arms": {a: {"pulls": p, "rewards": r} for a, (p, r) in self.totals.items()}}
