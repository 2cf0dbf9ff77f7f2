"""The basket service: complements of a basket, and catalog metadata of products.

One Redis round trip per basket (``inference.basket.redis_signals``); embeddings, segment
centroids, the cover model and the tuned policy (served by default as the ``tuned`` profile)
come from the serving run (``inference.basket.serving``); the policy itself is ``ranking.basket``. The routes only validate and shape the answer.
"""
from __future__ import annotations

from dataclasses import dataclass

from inference.basket import profiles
from inference.basket.redis_signals import fetch_meta, fetch_signals
from inference.basket.serving import run_cover, run_embeddings, run_policy
from inference.models import ModelRegistry
from inference.store import RedisStore
from ranking.basket import BasketSignals, ItemMeta, complements, reason, resolve_segments
from schemas.settings import Settings


class ProfilesUnusable(RuntimeError):
    """The basket profile file cannot be used (the route answers 503)."""


@dataclass
class Complement:
    item_id: str
    score: float
    reason: str
    meta: ItemMeta | None


@dataclass
class Complements:
    profile: str
    segments: list[tuple[str, float]]
    items: list[Complement]


class BasketService:
    def __init__(self, settings: Settings, store: RedisStore, models: ModelRegistry):
        self.settings, self.store, self.keys, self.models = settings, store, store.keys, models

    async def complements(self, items: list[str], profession: str | None, k: int) -> Complements:
        try:
            profiles.ensure_configured(self.settings.basket_profiles_file, self.settings.basket_profile)
            serving = self.models.current
            policy = run_policy(serving)
            name, params = profiles.active_params(len(items), policy.profile)
        except (ValueError, KeyError) as exc:
            raise ProfilesUnusable(f"basket profiles unusable: {exc}") from None
        emb, centroids = run_embeddings(serving)
        segments = resolve_segments(profession, items, BasketSignals(embeddings=emb), centroids, params)
        sig = await fetch_signals(self.store, self.keys, items, segments, params)
        sig.embeddings = emb
        sig.cover = run_cover(serving)
        sig.index, sig.item_count, sig.n_baskets = policy.index, policy.item_count, policy.n_baskets
        chosen = complements(items, sig, params, segments, k)
        return Complements(name, segments, [Complement(c.item_id, c.score, reason(c, segments), sig.meta.get(c.item_id))
                                            for c in chosen])

    async def meta(self, ids: list[str]) -> dict[str, ItemMeta]:
        return await fetch_meta(self.store, self.keys, ids)
