"""Home-list strategies: which policy a request is served, and that policy run on the user's state.

A strategy name resolves to a ``ranking.policy.Policy``:

- ``policy`` (the default strategy) and the serving run's policy name: the run's own policy,
  chosen on validation when it was trained (popularity while no run serves);
- ``popularity``: the live popularity lists (segment first, then global);
- a model of the run (``ease``, ``ncf``...): that model alone, with the run policy's λ, cap and fill;
- ``hybrid``: ``Settings.hybrid_weights`` over the run's models, the same blend as any policy;
- ``bandit`` is resolved by the route to one of the configured arms first.

``rank_home`` then runs ``ranking.home`` — the code path ``streamrec recommend`` and the
trainer's policy evaluation run — on the user's signals read from Redis (or their degraded
stand-in) and the run's candidate stage (``trainer.candidates``). Its only I/O is the item
metadata lookup between the two ranking steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.models import ServingRun
from inference.retrieval import ItemCatalog, UserContext
from inference.store import RedisStore
from ranking.exploration import exploration_pool, explore_payload
from ranking.filters import Filters
from ranking.home import HomeRequest, candidates, finish, meta_items, needs_meta
from ranking.policy import POPULARITY, Policy
from schemas.errors import ModelNotTrained
from schemas.settings import Settings

#: Model strategies the API always names (and answers 503 for while no run has them).
MODEL_STRATEGIES = ("ncf", "two_tower", "lightfm", "content")
SERVED_POLICY = "policy"
BUILTIN = (SERVED_POLICY, "popularity", "hybrid", "bandit")


def strategy_names() -> list[str]:
    """Every valid ``strategy`` value: the built-ins, the named models and the trainer's registry."""
    names = list(BUILTIN) + list(MODEL_STRATEGIES)
    try:
        from trainer.models import MODELS

        names += sorted(n for n in MODELS if n not in names)
    except Exception:  # noqa: BLE001 - the registry is optional for serving popularity
        pass
    return names


@dataclass
class HomeQuery:
    user_id: str
    k: int
    strategy: str
    explain: bool = False
    filters: Filters = field(default_factory=Filters)
    # inside an experiment (inference/experiments.py): the arm's name, run and policy parameters
    experiment: str | None = None
    arm: str | None = None
    run: str | None = None  # None: the serving run
    params: dict[str, Any] = field(default_factory=dict)
    tag: str = ""  # the arm's policy hash, part of the cache key

    @property
    def label(self) -> str | None:
        """What impressions and counters of this list are kept under: ``{experiment}.{arm}``."""
        return f"{self.experiment}.{self.arm}" if self.experiment else None


def served_name(strategy: str, serving: ServingRun | None) -> str:
    """The name a strategy is served (and cached) under: ``policy`` becomes the run's policy name.

    >>> served_name("policy", None), served_name("ease", None)
    ('popularity', 'ease')
    """
    if strategy == SERVED_POLICY:
        return serving.policy.name if serving is not None else POPULARITY
    return strategy


def resolve_policy(strategy: str, serving: ServingRun | None, settings: Settings) -> Policy:
    """The policy a (resolved) strategy name stands for with this run."""
    if strategy == POPULARITY or (serving is None and strategy in (SERVED_POLICY, "hybrid")):
        return Policy.popularity()
    if serving is None:
        raise ModelNotTrained(strategy)
    run_policy = serving.policy
    if strategy in (SERVED_POLICY, run_policy.name):
        return run_policy
    if strategy == "hybrid":
        weights = {m: w for m, w in settings.hybrid_weights.items() if m == POPULARITY or m in serving.models}
        return Policy.blend(weights, name="hybrid", mmr_lambda=settings.mmr_lambda, category_cap=settings.category_cap,
                            full_scoring_max_items=run_policy.full_scoring_max_items, candidates=settings.candidates_n)
    if strategy not in serving.models:
        raise ModelNotTrained(strategy)
    return Policy.single(strategy, mmr_lambda=run_policy.mmr_lambda, category_cap=run_policy.category_cap,
                         fill=run_policy.fill, rescale=run_policy.rescale, candidates=run_policy.candidates,
                         full_scoring_max_items=run_policy.full_scoring_max_items)


async def rank_home(q: HomeQuery, ctx: UserContext, serving: ServingRun | None, catalog: ItemCatalog,
                    store: RedisStore | None, settings: Settings, fallback: list[tuple[str, float]]) -> dict[str, Any]:
    """The response payload (without ``request_id``) of one home list (an experiment arm's
    ``params`` override fields of the policy its strategy stands for)."""
    policy = resolve_policy(q.strategy, serving, settings)
    if q.params:
        policy = policy.with_(**q.params)
    scorer = serving.scorer if serving is not None else None
    parts = scorer.parts(policy, ctx) if scorer is not None and policy.models else {}
    request = HomeRequest(k=q.k, filters=q.filters, explain=q.explain)
    pool = candidates(policy, ctx, parts, request, fallback)
    infos = await catalog.lookup(store, meta_items(pool, request)) if needs_meta(policy, ctx, request) else {}
    vectors = scorer.vectors([i for i, _ in pool.ranked[: q.k * 3]]) if scorer is not None and policy.mmr_lambda < 1.0 else {}
    served = finish(policy, pool, ctx, request, infos, vectors)
    items = [{"item_id": item, "score": round(float(score), 6), "reason": why}
             for (item, score), why in zip(served.items, served.reasons)]
    if settings.explore_epsilon or settings.explore_slots:  # exploration slots, with propensities (docs/off-policy.md)
        items = explore_payload(items, exploration_pool(pool, ctx, request, infos, settings.explore_pool),
                                settings.explore_epsilon, settings.explore_slots)
    return {
        "user_id": q.user_id,
        "strategy": q.strategy,
        "model_version": serving.run_id if serving is not None else None,
        "cached": False,
        "degraded": ctx.degraded,
        **({"experiment": q.experiment, "arm": q.arm} if q.experiment else {}),
        "items": items,
    }
