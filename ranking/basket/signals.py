"""The plain inputs of basket scoring: what Redis (or an offline run) knows about a basket.

Everything is a dict of scores keyed by item id, so the same scoring runs on the Redis
answers at serving time and on offline-mined pairs in ``eval-basket``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
    from ranking.basket.cocover import BasketIndex
    from ranking.basket.cover import CoverModel

ANY = "ANY"
Scores = dict[str, float]


@dataclass
class ItemMeta:
    title: str = ""
    category: str = ""
    private_label: bool = False


@dataclass
class Embeddings:
    """L2-normalised item vectors with their id index (from the serving run's LightFM)."""

    index: Mapping[str, int]
    vectors: np.ndarray

    def rows(self, items: list[str]) -> np.ndarray:
        idx = [self.index[i] for i in items if i in self.index]
        return self.vectors[idx] if idx else np.zeros((0, self.vectors.shape[1]), dtype=np.float32)

    def get(self, item: str) -> np.ndarray | None:
        i = self.index.get(item)
        return None if i is None else self.vectors[i]


@dataclass
class BasketSignals:
    """``pairs[segment][basket_item]`` → {candidate: score}; ``pairs_rev`` likewise (the
    candidates are the predecessors of the basket item); popularity per segment and global."""

    pairs: dict[str, dict[str, Scores]] = field(default_factory=dict)
    pairs_rev: dict[str, dict[str, Scores]] = field(default_factory=dict)
    pop_seg: dict[str, Scores] = field(default_factory=dict)
    pop_global: Scores = field(default_factory=dict)
    meta: dict[str, ItemMeta] = field(default_factory=dict)
    embeddings: Embeddings | None = None
    cover: "CoverModel | None" = None  # the run's basket mixture, for COVERAGE_GREEDY
    item_count: Scores = field(default_factory=dict)  # training baskets holding each item (PAIR_NORM)
    n_baskets: float = 0.0  # training baskets in all (lift, pmi)
    index: "BasketIndex | None" = None  # the run's training baskets, for the conditional cover (COCOVER_RHO)
