"""The ``bandit`` strategy: pick an arm (a strategy) per request from ``sr:bandit:{policy}``.

The stream agents keep ``{arm}:pulls`` and ``{arm}:rewards`` in that hash (impressions are
pulls; clicks, downloads... within the reward window are rewards). Here a river policy is
rebuilt from those totals about once a second and asked to pull; river's policies keep
their per-arm statistics in ``_rewards`` / ``_counts``, which is what is restored.

>>> p = policy_from_totals("epsilon_greedy", {"a": (100, 10.0), "b": (100, 50.0)}, epsilon=0.0, seed=1)
>>> p.pull(["a", "b"])
'b'
>>> parse_totals({b"a:pulls": b"4", b"a:rewards": b"1.5", b"junk": b"x"})
{'a': (4, 1.5)}
"""
from __future__ import annotations

import asyncio
import time

from river import bandit, proba, stats

from inference.store import RedisStore
from schemas.errors import StoreUnavailable

POLICIES = ("epsilon_greedy", "ucb", "thompson")


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


def policy_from_totals(name: str, totals: dict[str, tuple[int, float]], epsilon: float = 0.1, seed: int | None = None):
    """A river policy whose per-arm state equals the stored totals."""
    if name == "ucb":
        policy = bandit.UCB(delta=1.0, seed=seed)
    elif name == "thompson":
        policy = bandit.ThompsonSampling(reward_obj=proba.Beta(), seed=seed)
    else:
        policy = bandit.EpsilonGreedy(epsilon=epsilon, seed=seed)
    for arm, (pulls, rewards) in totals.items():
        pulls = max(int(pulls), 0)
        rewards = min(max(float(rewards), 0.0), float(pulls)) if pulls else 0.0
        if name == "thompson":
            policy._rewards[arm] = proba.Beta(alpha=1 + rewards, beta=1 + pulls - rewards)
        else:
            mean = stats.Mean()
            mean.n = pulls
            mean._mean = rewards / pulls if pulls else 0.0
            policy._rewards[arm] = mean
        policy._counts[arm] = pulls
        policy._n += pulls
    return policy


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

    def describe(self) -> dict:
        return {"policy": self.policy_name, "arms": {a: {"pulls": p, "rewards": r} for a, (p, r) in self.totals.items()}}
