"""EASE: the closed-form shallow autoencoder of Steck (2019), with two optional refinements.

``B = I - P · diag(1 / diag(P))`` with ``P = (Xᵀ W X + Λ)⁻¹``, diagonal forced to zero;
``score = X B``. One matrix inverse over items, no epochs; a very strong baseline on
MovieLens-sized catalogues (memory is ``n_items²``).

- ``Λ = λ I`` is plain EASE. ``dropout = p > 0`` adds ``p / (1 - p) · diag(XᵀX)``, the
  regulariser that input dropout implies (Steck 2020, "Autoencoders that don't overfit
  towards the identity"): popular items are regularised more.
- ``user_weight = a > 0`` weights each user's co-occurrences by ``|u|^-a`` (normalised to
  mean 1), so a few very active users do not dominate the item-item statistics.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from trainer.models._item_item import ItemItemModel


class EASE(ItemItemModel):
    name = "ease"

    def __init__(self, lambda_: float = 500.0, dropout: float = 0.0, user_weight: float = 0.0,
                 binary: bool = True):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ease dropout must be in [0, 1), got {dropout}")
        self.lambda_ = lambda_
        self.dropout = dropout
        self.user_weight = user_weight
        self.binary = binary

    def _learn_weights(self, x: sp.csr_matrix) -> np.ndarray:
        x = x.astype(np.float64)
        if self.user_weight:
            act = np.maximum(np.asarray((x > 0).sum(axis=1)).ravel(), 1.0)
            w = act ** -self.user_weight
            g = (x.T @ sp.diags(w / w.mean()) @ x).toarray()
        else:
            g = (x.T @ x).toarray()
        diag = np.diag(g).copy()
        g[np.diag_indices_from(g)] += self.lambda_ + self.dropout / (1.0 - self.dropout) * diag
        p = np.linalg.inv(g)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        return b
