"""ItemKNN: items that co-occur with what the user already has, by (shrunk) cosine."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from trainer.models._item_item import ItemItemModel, keep_top_k_per_column


class ItemKNN(ItemItemModel):
    """``W[i, j] = |U_i ∩ U_j| / (|U_i|^α |U_j|^(1-α) + shrink)``, each column pruned to its
    ``neighbors`` largest weights; ``score(u, j) = Σ_{i ∈ u} W[i, j]``. α = 0.5 is cosine."""

    name = "itemknn"

    def __init__(self, neighbors: int | None = 100, shrink: float = 10.0, alpha: float = 0.5,
                 binary: bool = True):
        self.neighbors = neighbors
        self.shrink = shrink
        self.alpha = alpha
        self.binary = binary

    def _learn_weights(self, x: sp.csr_matrix) -> sp.spmatrix:
        co = (x.T @ x).toarray().astype(np.float64)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        denom = np.outer(norms ** (2 * self.alpha), norms ** (2 * (1 - self.alpha))) + self.shrink
        w = co / np.maximum(denom, 1e-12)
        np.fill_diagonal(w, 0.0)
        return keep_top_k_per_column(w, self.neighbors)
