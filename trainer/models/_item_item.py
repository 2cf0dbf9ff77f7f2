"""Shared by the item-item models (ItemKNN, RP3beta, EASE): scores are ``X @ W``."""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from trainer.base import Recommender
from trainer.data.interactions import Interactions


def user_item_matrix(data: Interactions, binary: bool) -> sp.csr_matrix:
    """The matrix the item-item models learn from: 0/1, or the implicit strength (negative
    strengths, e.g. dislikes, are dropped: they are not co-occurrence)."""
    m = data.seen() if binary else data.matrix.copy()
    m.data = np.maximum(m.data, 0)
    m.eliminate_zeros()
    return m.tocsr().astype(np.float32)


def keep_top_k_per_column(w: np.ndarray | sp.spmatrix, k: int | None) -> sp.csc_matrix:
    """Keep the ``k`` largest weights of each column (the neighbours that predict that item).

    >>> keep_top_k_per_column(np.array([[0, 3.], [2, 1], [1, 2]]), 1).toarray().tolist()
    [[0.0, 3.0], [2.0, 0.0], [0.0, 0.0]]
    """
    dense = w.toarray() if sp.issparse(w) else np.asarray(w)
    if k is None or k >= dense.shape[0]:
        return sp.csc_matrix(dense)
    idx = np.argpartition(-dense, k - 1, axis=0)[:k]
    vals = np.take_along_axis(dense, idx, axis=0)
    cols = np.broadcast_to(np.arange(dense.shape[1]), idx.shape)
    out = sp.csc_matrix((vals.ravel(), (idx.ravel(), cols.ravel())), shape=dense.shape)
    out.eliminate_zeros()
    return out


class ItemItemModel(Recommender):
    """Base of models whose whole state is an item × item weight matrix ``W``."""

    binary: bool = True
    weights_: Any = None
    _x: sp.csr_matrix | None = None

    def _learn_weights(self, x: sp.csr_matrix) -> np.ndarray | sp.spmatrix:
        raise NotImplementedError

    def _fit(self, data: Interactions) -> None:
        self._x = user_item_matrix(data, self.binary)
        w = self._learn_weights(self._x)
        self.weights_ = w.astype(np.float32) if not sp.issparse(w) else sp.csr_matrix(w, dtype=np.float32)

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        if self._x is None:
            self._x = user_item_matrix(self._require(), self.binary)
        s = self._x[uidx] @ self.weights_
        return s.toarray() if sp.issparse(s) else np.asarray(s)

    def _item_similarities(self, i: int) -> np.ndarray | None:
        w = self.weights_
        row = w[i].toarray().ravel() if sp.issparse(w) else np.asarray(w[i]).ravel()
        return row

    def _state(self) -> dict[str, Any]:
        return {"weights": self.weights_}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.weights_ = state["weights"]
        self._x = None
