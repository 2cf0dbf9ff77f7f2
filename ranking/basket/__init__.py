"""The basket policy: "what goes with this basket", segment-aware, diversified, tunable.

Pure functions over plain inputs (``BasketSignals``), shared by the API route and the
offline evaluation (``trainer.basket_eval``), so the ranking evaluated is the ranking served:

- ``signals``: the plain inputs (pairs, popularity, item metadata, embeddings);
- ``segments``: which segments a basket looks like;
- ``scoring``: the candidate pool and the linear blend (pairs, embeddings, popularity,
  coverage, the private-label boost);
- ``cover``: the Bernoulli-mixture cover model behind coverage-greedy picks;
- ``assortment``: pair quota, category cap, MMR and coverage gain over the scored pool;
- ``engine``: all of it end to end (``complements``) and the reason in words (``reason``).

The knobs (``BasketParams``) and their buckets by basket size are the profile file's format,
``schemas.basket_profiles``; they are re-exported here. Reading signals from Redis and the
active profile are the API's (``inference.basket``).
"""
from ranking.basket.engine import complements, reason, resolve_segments
from ranking.basket.scoring import Candidate
from ranking.basket.signals import ANY, BasketSignals, Embeddings, ItemMeta
from schemas.basket_profiles import BasketParams, params_for, select_bucket

__all__ = [
    "ANY", "BasketParams", "BasketSignals", "Candidate", "Embeddings", "ItemMeta", "complements", "params_for",
    "reason", "resolve_segments", "select_bucket",
]
