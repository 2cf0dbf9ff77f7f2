"""RP3beta: three-step random walk user → item → user → item, popularity-discounted.

Paudel et al. (2017), the strong graph baseline of Dacrema et al. (2019).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from trainer.models._item_item import ItemItemModel, keep_top_k_per_column


class RP3Beta(ItemItemModel):
    """``W = (P_iu^α · P_ui^α) / pop^β``, columns pruned to ``neighbors``, rows re-normalised."""

    name = "rp3beta"

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, neighbors: int | None = 100,
                 binary: bool = True):
        self.alpha = alpha
        self.beta = beta
        self.neighbors = neighbors
        self.binary = binary

    def _learn_weights(self, x: sp.csr_matrix) -> sp.spmatrix:
        p_ui = normalize(x, norm="l1", axis=1)
        p_iu = normalize(x.T.tocsr(), norm="l1", axis=1)
        if self.alpha != 1.0:
            p_ui = p_ui.power(self.alpha)
            p_iu = p_iu.power(self.alpha)
        w = (p_iu @ p_ui).toarray()
        pop = np.asarray((x > 0).sum(axis=0)).ravel().astype(np.float64)
        w = w / np.power(np.maximum(pop, 1.0), self.beta)[None, :]
        np.fill_diagonal(w, 0.0)
        w = keep_top_k_per_column(w, self.neighbors).tocsr()
        return normalize(w, norm="l1", axis=1)
