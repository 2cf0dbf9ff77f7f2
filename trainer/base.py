"""The one recommender contract every model implements.

A model implements three things:

- ``_fit(data)``: learn from an ``Interactions``;
- ``_score_users(uidx)``: a dense ``len(uidx) × n_items`` score matrix;
- ``_state()`` / ``_load_state(state)``: what ``save``/``load`` persist (beside the
  constructor parameters, which the base records itself).

Everything users call (``recommend``, ``score``, ``similar_items``, ``save``/``load``)
is written once here, on top of those, in external ids. Models with embeddings override
``item_embeddings`` (and ``user_embeddings``); ``similar_items`` then uses cosine over them.
"""
from __future__ import annotations

import inspect
import json
import pickle
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from trainer.data.interactions import Interactions


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise indices and values of the k largest scores, best first.

    >>> idx, val = top_k(np.array([[0.1, 0.9, 0.5]]), 2)
    >>> idx.tolist(), val.tolist()
    ([[1, 2]], [[0.9, 0.5]])
    """
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


class Recommender(ABC):
    """Base of every model. Hyperparameters are constructor arguments, recorded by ``get_params``."""

    name: ClassVar[str] = "base"
    #: True when ``score`` predicts a rating-like value (RMSE is then meaningful).
    predicts_ratings: ClassVar[bool] = False

    data: Interactions | None = None

    # --- to implement --------------------------------------------------------------
    @abstractmethod
    def _fit(self, data: Interactions) -> None: ...

    @abstractmethod
    def _score_users(self, uidx: np.ndarray) -> np.ndarray: ...

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass

    def item_embeddings(self) -> np.ndarray | None:
        """``n_items × d`` item vectors where the model has them (not normalised)."""
        return None

    def user_embeddings(self) -> np.ndarray | None:
        return None

    # --- the contract ------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def fit(self, data: Interactions) -> "Recommender":
        self.data = data
        self._fit(data)
        return self

    @property
    def item_ids(self) -> np.ndarray:
        return self._require().item_ids

    def score_matrix(self, uidx: np.ndarray, exclude_seen: bool = False) -> np.ndarray:
        """Scores of users (by index) for every item; seen items at -inf when asked."""
        data = self._require()
        scores = np.asarray(self._score_users(np.asarray(uidx)), dtype=np.float32).copy()
        if exclude_seen:
            seen = data.matrix[uidx]
            rows = np.repeat(np.arange(len(uidx)), np.diff(seen.indptr))
            scores[rows, seen.indices] = -np.inf
        return scores

    def recommend(
        self, users: Sequence[str], k: int = 10, exclude_seen: bool = True, batch: int = 1024
    ) -> list[tuple[list[str], list[float]]]:
        """Top-k items per user, in external ids. Unknown users get an empty list."""
        data = self._require()
        out: list[tuple[list[str], list[float]]] = [([], []) for _ in users]
        known = [(pos, data.user_index[u]) for pos, u in enumerate(users) if u in data.user_index]
        for start in range(0, len(known), batch):
            chunk = known[start : start + batch]
            uidx = np.array([u for _, u in chunk])
            idx, val = top_k(self.score_matrix(uidx, exclude_seen), k)
            for row, (pos, _) in enumerate(chunk):
                keep = np.isfinite(val[row])
                out[pos] = (data.item_ids[idx[row][keep]].tolist(), val[row][keep].astype(float).tolist())
        return out

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Score of each (user, item); NaN where the user or item is unknown."""
        data = self._require()
        res = np.full(len(pairs), np.nan, dtype=np.float64)
        by_user: dict[int, list[tuple[int, int]]] = {}
        for pos, (u, i) in enumerate(pairs):
            if u in data.user_index and i in data.item_index:
                by_user.setdefault(data.user_index[u], []).append((pos, data.item_index[i]))
        users = list(by_user)
        for start in range(0, len(users), 1024):
            chunk = users[start : start + 1024]
            scores = self.score_matrix(np.array(chunk))
            for row, u in enumerate(chunk):
                for pos, i in by_user[u]:
                    res[pos] = scores[row, i]
        return res

    def similar_items(self, item: str, k: int = 10) -> tuple[list[str], list[float]]:
        """Most similar items by cosine over item embeddings (the item itself excluded)."""
        data = self._require()
        if item not in data.item_index:
            return [], []
        i = data.item_index[item]
        sims = self._item_similarities(i)
        if sims is None:
            return [], []
        sims = np.asarray(sims, dtype=np.float32).copy()
        sims[i] = -np.inf
        idx, val = top_k(sims[None, :], k)
        keep = np.isfinite(val[0])
        return data.item_ids[idx[0][keep]].tolist(), val[0][keep].astype(float).tolist()

    def _item_similarities(self, i: int) -> np.ndarray | None:
        """Similarity of item ``i`` to every item: cosine over ``item_embeddings`` by default.
        Item-item models (EASE, ItemKNN, TF-IDF) override this with their own weights."""
        emb = self.item_embeddings()
        if emb is None:
            return None
        norm = normalize_rows(emb)
        return norm @ norm[i]

    # --- persistence ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "params.json").write_text(json.dumps({"model": self.name, **self.get_params()}, default=str, indent=2))
        data = self._require()
        state = {"data": data, "model": self._state()}
        with open(path / "model.pkl", "wb") as fh:
            pickle.dump(state, fh, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path: Path) -> "Recommender":
        path = Path(path)
        params = json.loads((path / "params.json").read_text())
        params.pop("model", None)
        obj = cls(**params)
        with open(path / "model.pkl", "rb") as fh:
            state = pickle.load(fh)
        obj.data = state["data"]
        obj._load_state(state["model"])
        return obj

    def _require(self) -> Interactions:
        if self.data is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        return self.data


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """L2-normalise rows (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(n, 1e-12)
