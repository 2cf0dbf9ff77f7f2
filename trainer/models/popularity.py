"""Most popular items first: the floor every other model must beat."""
from __future__ import annotations

from typing import Any

import numpy as np

from trainer.base import Recommender
from trainer.data.interactions import Interactions


class Popularity(Recommender):
    """Score of an item = how many users interacted with it (``weighted=True``: the summed
    implicit strength instead). The same list for everyone, seen items removed."""

    name = "popularity"

    def __init__(self, weighted: bool = False):
        self.weighted = weighted
        self.counts_: np.ndarray | None = None

    def _fit(self, data: Interactions) -> None:
        m = data.matrix.copy()
        m.data = np.maximum(m.data, 0) if self.weighted else (m.data > 0).astype(np.float32)  # dislikes don't count
        self.counts_ = np.asarray(m.sum(axis=0)).ravel().astype(np.float32)

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.counts_, (len(uidx), len(self.counts_)))

    def _state(self) -> dict[str, Any]:
        return {"counts": self.counts_}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.counts_ = state["counts"]
