"""LightFM (via ``lightfm-next``): a hybrid factorisation model over id and metadata features.

WARP loss by default. Each user is represented by an identity feature plus their
categorical metadata (``segment:…``, ``profession:…``), each item by its identity plus its
category tokens (``category:…``, ``subcategory:…``), so similar metadata shares signal and
new items with metadata are not blind. With ``patience``, a slice of the training
interactions is held out and training stops when its precision@10 stops improving (the
best epoch's model is kept).
"""
from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from trainer.base import Recommender
from trainer.data.interactions import Interactions
from trainer.models._features import item_tokens, user_tokens, vocabulary
from trainer.models._training import epoch_progress

log = logging.getLogger("streamrec.trainer.lightfm")


def feature_matrix(tokens: list[list[str]], vocab: dict[str, int], identity: bool, weight: float = 1.0) -> sp.csr_matrix:
    """Rows = entities: ``[identity | metadata tokens]``, each row normalised to sum 1 as
    LightFM recommends.

    >>> feature_matrix([["a"], []], {"a": 0}, identity=True).toarray().tolist()
    [[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]]
    """
    n = len(tokens)
    rows, cols, vals = [], [], []
    offset = n if identity else 0
    for r, toks in enumerate(tokens):
        if identity:
            rows.append(r), cols.append(r), vals.append(1.0)
        for t in toks:
            if t in vocab:
                rows.append(r), cols.append(offset + vocab[t]), vals.append(weight)
    m = sp.csr_matrix((vals, (rows, cols)), shape=(n, offset + len(vocab)), dtype=np.float32)
    sums = np.asarray(m.sum(axis=1)).ravel()
    return sp.diags(1.0 / np.maximum(sums, 1e-12)) @ m


class LightFMModel(Recommender):
    name = "lightfm"

    def __init__(
        self,
        no_components: int = 64,
        loss: str = "warp",
        learning_rate: float = 0.05,
        epochs: int = 30,
        warm_epochs: int = 10,
        threads: int = 1,
        patience: int | None = None,
        val_fraction: float = 0.1,
        item_alpha: float = 0.0,
        user_alpha: float = 0.0,
        max_sampled: int = 10,
        use_user_features: bool = True,
        use_item_features: bool = True,
        seed: int = 0,
        verbose: bool = False,
    ):
        self.no_components = no_components
        self.loss = loss
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.warm_epochs = warm_epochs
        self.threads = threads
        self.patience = patience
        self.val_fraction = val_fraction
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.max_sampled = max_sampled
        self.use_user_features = use_user_features
        self.use_item_features = use_item_features
        self.seed = seed
        self.verbose = verbose
        self.model_ = None
        self.user_features_: sp.csr_matrix | None = None
        self.item_features_: sp.csr_matrix | None = None
        self.history_: list[dict[str, float]] = []

    def _features(self, data: Interactions) -> tuple[sp.csr_matrix | None, sp.csr_matrix | None]:
        uf = itf = None
        if self.use_user_features:
            toks = user_tokens(data)
            if any(toks):
                uf = feature_matrix(toks, vocabulary(toks), identity=True).tocsr()
        if self.use_item_features:
            toks = item_tokens(data)
            if any(toks):
                itf = feature_matrix(toks, vocabulary(toks), identity=True).tocsr()
        return uf, itf

    def _fit(self, data: Interactions) -> None:
        from lightfm import LightFM

        self.user_features_, self.item_features_ = self._features(data)
        x = data.seen().tocoo()
        keep = data.matrix.tocoo().data > 0
        rows, cols = x.row[keep], x.col[keep]
        rng = np.random.default_rng(self.seed)
        val = None
        if self.patience is not None and self.val_fraction > 0 and len(rows) >= 20:
            hold = rng.random(len(rows)) < self.val_fraction
            val = sp.csr_matrix((np.ones(hold.sum(), np.float32), (rows[hold], cols[hold])), shape=x.shape)
            rows, cols = rows[~hold], cols[~hold]
        train = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=x.shape)
        model = LightFM(no_components=self.no_components, loss=self.loss, learning_rate=self.learning_rate,
                        item_alpha=self.item_alpha, user_alpha=self.user_alpha, max_sampled=self.max_sampled,
                        random_state=self.seed)
        best, best_score, bad = None, -np.inf, 0
        self.history_ = []
        with epoch_progress("lightfm", self.epochs, self.verbose) as advance:
            for epoch in range(self.epochs):
                t0 = time.perf_counter()
                model.fit_partial(train, user_features=self.user_features_, item_features=self.item_features_,
                                  epochs=1, num_threads=self.threads)
                entry = {"epoch": epoch + 1, "seconds": time.perf_counter() - t0}
                if val is not None:
                    self.model_ = model
                    entry["val_precision@10"] = self._val_precision(train.tocsr(), val)
                    log.info("lightfm epoch %d val_precision@10=%.4f", epoch + 1, entry["val_precision@10"])
                    if entry["val_precision@10"] > best_score:
                        best, best_score, bad = copy.deepcopy(model), entry["val_precision@10"], 0
                    else:
                        bad += 1
                self.history_.append(entry)
                advance(**{k: v for k, v in entry.items() if k != "epoch"})
                if val is not None and bad >= self.patience:
                    break
        self.model_ = best if best is not None else model

    def _fit_warm(self, data: Interactions, previous: "LightFMModel") -> None:
        """Continue ``previous``'s model for ``warm_epochs`` when users, items and features are
        the same (a run's refit on a superset of its validation data); from scratch otherwise
        (LightFM's matrices cannot grow new rows)."""
        users, items = self._features(data)
        shape = lambda m: None if m is None else m.shape  # noqa: E731
        same = (previous.model_ is not None and np.array_equal(previous._require().user_ids, data.user_ids)
                and np.array_equal(previous._require().item_ids, data.item_ids)
                and shape(users) == shape(previous.user_features_) and shape(items) == shape(previous.item_features_))
        self.warm_started_ = bool(same)
        if not same:
            self._fit(data)
            return
        self.user_features_, self.item_features_ = users, items
        x = data.seen().tocoo()
        keep = data.matrix.tocoo().data > 0
        train = sp.coo_matrix((np.ones(int(keep.sum()), np.float32), (x.row[keep], x.col[keep])), shape=x.shape)
        model = copy.deepcopy(previous.model_)
        self.history_ = []
        for epoch in range(self.warm_epochs):
            t0 = time.perf_counter()
            model.fit_partial(train, user_features=users, item_features=items, epochs=1, num_threads=self.threads)
            self.history_.append({"epoch": epoch + 1, "seconds": time.perf_counter() - t0, "warm": True})
        self.model_ = model

    def _val_precision(self, train: sp.csr_matrix, val: sp.csr_matrix, k: int = 10) -> float:
        users = np.flatnonzero(np.diff(val.indptr) > 0)
        scores = self._raw_scores(users)
        seen = train[users]
        scores[np.repeat(np.arange(len(users)), np.diff(seen.indptr)), seen.indices] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        hits = np.take_along_axis(val[users].toarray() > 0, top, axis=1)
        return float(hits.sum(axis=1).mean() / k)

    def _representations(self):
        ib, ie = self.model_.get_item_representations(self.item_features_)
        ub, ue = self.model_.get_user_representations(self.user_features_)
        return ub, ue, ib, ie

    def _raw_scores(self, uidx: np.ndarray) -> np.ndarray:
        ub, ue, ib, ie = self._representations()
        return (ue[uidx] @ ie.T + ub[uidx, None] + ib[None, :]).astype(np.float32)

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        return self._raw_scores(uidx)

    def item_embeddings(self) -> np.ndarray:
        return self._representations()[3]

    def user_embeddings(self) -> np.ndarray:
        return self._representations()[1]

    def _state(self) -> dict[str, Any]:
        return {"model": self.model_, "user_features": self.user_features_, "item_features": self.item_features_,
                "history": self.history_}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.model_ = state["model"]
        self.user_features_ = state["user_features"]
        self.item_features_ = state["item_features"]
        self.history_ = state.get("history", [])
