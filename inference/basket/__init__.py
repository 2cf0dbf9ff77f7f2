"""Basket complements: "what goes with this basket", segment-aware, diversified, tunable.

Pure functions over plain inputs (``BasketSignals``), shared by the API route and the
offline evaluation; ``inference.basket.redis_signals`` is the only part that touches Redis.
"""
from inference.basket.engine import complements, reason, resolve_segments
from inference.basket.profiles import BasketParams, active, load_profiles, params_for, select_bucket, set_active
from inference.basket.signals import ANY, BasketSignals, Embeddings, ItemMeta

__all__ = [
    "ANY", "BasketParams", "BasketSignals", "Embeddings", "ItemMeta", "active", "complements",
    "load_profiles", "params_for", "reason", "resolve_segments", "select_bucket", "set_active",
]
