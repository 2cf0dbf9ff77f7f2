"""Content-based: TF-IDF over item title, text and category, cosine similarity.

A user's profile is the strength-weighted sum of the TF-IDF vectors of the items they
interacted with; items are scored by cosine with that profile. It needs item metadata,
and it is the model that can rank items nobody has interacted with yet.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from schemas.errors import InvalidDataset
from trainer.base import Recommender
from trainer.data.interactions import Interactions
from trainer.models._features import item_text


class ContentTFIDF(Recommender):
    name = "content"

    def __init__(self, max_features: int = 20000, ngram_max: int = 1, min_df: int = 1,
                 sublinear_tf: bool = True, embedding_dim: int = 128):
        self.max_features = max_features
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.embedding_dim = embedding_dim
        self.tfidf_: sp.csr_matrix | None = None

    def _fit(self, data: Interactions) -> None:
        docs = item_text(data.item_meta, data.item_ids)
        if not any(doc.strip() for doc in docs):
            raise InvalidDataset("the content model needs item metadata (title, text or category); none was given")
        vec = TfidfVectorizer(max_features=self.max_features, ngram_range=(1, self.ngram_max),
                              min_df=self.min_df, sublinear_tf=self.sublinear_tf)
        self.tfidf_ = normalize(vec.fit_transform(docs)).tocsr().astype(np.float32)

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        m = self._require().matrix[uidx].copy()
        m.data = np.maximum(m.data, 0)
        profiles = normalize(m @ self.tfidf_)
        return np.asarray((profiles @ self.tfidf_.T).toarray())

    def _item_similarities(self, i: int) -> np.ndarray:
        return np.asarray((self.tfidf_ @ self.tfidf_[i].T).toarray()).ravel()

    def item_embeddings(self) -> np.ndarray:
        """Dense item vectors for the FAISS index: the TF-IDF itself when the vocabulary is
        small, otherwise its ``embedding_dim``-component SVD (cosine is then approximate)."""
        if self.tfidf_.shape[1] <= self.embedding_dim:
            return self.tfidf_.toarray()
        from sklearn.decomposition import TruncatedSVD

        return TruncatedSVD(self.embedding_dim, random_state=0).fit_transform(self.tfidf_).astype(np.float32)

    def _state(self) -> dict[str, Any]:
        return {"tfidf": self.tfidf_}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.tfidf_ = state["tfidf"]
