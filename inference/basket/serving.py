"""The one place the basket route touches the serving run: item embeddings, segment
centroids, the cover model and the tuned policy, cached per run (a reload brings a new run
object, hence a new cache entry)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ranking.basket.cocover import BasketIndex
from ranking.basket.cover import CoverModel
from ranking.basket.signals import Embeddings

#: Embeddings used for W_EMB, MMR similarity and segment detection, best first.
PREFERENCE = ("lightfm", "two_tower", "ncf", "content")

log = logging.getLogger(__name__)

_cache: dict[str, tuple[Embeddings | None, dict[str, np.ndarray]]] = {}


def run_embeddings(serving: Any | None) -> tuple[Embeddings | None, dict[str, np.ndarray]]:
    """(item embeddings, segment centroids) of the serving run; (None, {}) without a run.

    ``serving`` is ``inference.models.ServingRun`` (``.run.embeddings``, ``.run.path``,
    ``.item_ids``). Without a trained run the W_EMB terms simply drop out.
    """
    if serving is None:
        return None, {}
    key = f"{serving.run_id}@{id(serving)}"
    if key not in _cache:
        _cache.clear()  # one serving run at a time
        embs = getattr(serving.run, "embeddings", {}) or {}
        recorded = _centroid_model(Path(serving.run.path))
        name = recorded if recorded in embs else next((n for n in PREFERENCE if n in embs), next(iter(sorted(embs)), None))
        emb = None
        if name is not None:
            vecs = np.asarray(embs[name], dtype=np.float32)
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
            emb = Embeddings({str(i): n for n, i in enumerate(serving.item_ids)}, vecs)
        centroids: dict[str, np.ndarray] = {}
        try:
            from trainer.basket_export import load_segment_centroids

            centroids = load_segment_centroids(Path(serving.run.path))
            if recorded is not None and recorded != name:
                centroids = {}  # computed in another model's space: not comparable
            if emb is not None:
                centroids = {k: v for k, v in centroids.items() if v.shape == (emb.vectors.shape[1],)}
        except (OSError, ValueError, KeyError):
            centroids = {}
        _cache[key] = (emb, centroids)
    return _cache[key]


def _centroid_model(run_dir: Path) -> str | None:
    try:
        from trainer.basket_export import segment_centroids_model

        return segment_centroids_model(run_dir)
    except (OSError, ValueError, KeyError):
        return None


_cover_cache: dict[str, CoverModel | None] = {}


def run_cover(serving: Any | None) -> CoverModel | None:
    """The serving run's basket cover model (``basket_cover.npz``), cached per run; None
    without a run or when the run has none (COVERAGE_GREEDY then leaves the ranking as is)."""
    if serving is None:
        return None
    key = f"{serving.run_id}@{id(serving)}"
    if key not in _cover_cache:
        _cover_cache.clear()  # one serving run at a time
        try:
            from trainer.basket_cover import load_cover_model

            _cover_cache[key] = load_cover_model(Path(serving.run.path))
        except (OSError, ValueError, KeyError):
            _cover_cache[key] = None
    return _cover_cache[key]


@dataclass
class RunPolicy:
    """The serving run's tuned basket policy (a profile, ``schemas.basket_profiles``) and what
    it reads besides Redis: the run's training baskets and each item's basket count."""

    profile: dict | None = None
    index: BasketIndex | None = None
    item_count: dict[str, float] = field(default_factory=dict)
    n_baskets: float = 0.0


_policy_cache: dict[str, RunPolicy] = {}


def run_policy(serving: Any | None) -> RunPolicy:
    """The serving run's ``basket_policy.json`` and ``basket_index.npz``, cached per run; an
    empty ``RunPolicy`` without a run or when the run has none (the shipped profiles serve)."""
    if serving is None:
        return RunPolicy()
    key = f"{serving.run_id}@{id(serving)}"
    if key not in _policy_cache:
        _policy_cache.clear()  # one serving run at a time
        try:
            from trainer.basket_export import load_index, load_policy

            doc, index = load_policy(Path(serving.run.path)), load_index(Path(serving.run.path))
            got = RunPolicy((doc or {}).get("profile"), index)
            if index is not None:
                got.item_count, got.n_baskets = index.counts(), float(index.n_baskets)
            _policy_cache[key] = got
        except (OSError, ValueError, KeyError) as exc:
            log.warning("basket policy of run %s not usable: %s", serving.run_id, exc)
            _policy_cache[key] = RunPolicy()
    return _policy_cache[key]
