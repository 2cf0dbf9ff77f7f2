"""EASE: the closed-form shallow autoencoder of Steck (2019).

``B = I - P · diag(1 / diag(P))`` with ``P = (XᵀX + λI)⁻¹``, diagonal forced to zero;
``score = X B``. One matrix inverse over items, no epochs; a very strong baseline on
MovieLens-sized catalogues (memory is ``n_items²``).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from trainer.models._item_item import ItemItemModel


class EASE(ItemItemModel):
    name = "ease"

    def __init__(self, lambda_: float = 500.0, binary: bool = True):
        self.lambda_ = lambda_
        self.binary = binary

    def _learn_weights(self, x: sp.csr_matrix) -> np.ndarray:
        g = (x.T @ x).toarray().astype(np.float64)
        g[np.diag_indices_from(g)] += self.lambda_
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        return b
