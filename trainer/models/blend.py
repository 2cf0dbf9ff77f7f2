"""A score-level ensemble as one model: several models fitted on the same data, their per-user
scores rescaled and added with weights by ``ranking.scores.blend`` — the blend every policy uses.

Standardising each model's row of scores (z-score over the user's items) puts an EASE
score, a cosine and a logit on one scale before they are mixed; the weights are then the
only thing to tune. Components are plain ``{"model": name, "weight": w, "params": {...}}``
dicts so they are recorded in ``params.json`` like any hyperparameter.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ranking.scores import blend
from trainer.base import Recommender
from trainer.data.interactions import Interactions

DEFAULT_COMPONENTS: list[dict[str, Any]] = [
    {"model": "ease", "weight": 1.0, "params": {"lambda_": 400.0}},
    {"model": "rp3beta", "weight": 0.5, "params": {}},
]


class Blend(Recommender):
    name = "blend"

    def __init__(self, components: list[dict[str, Any]] | None = None, normalize: str = "zscore"):
        self.components = [dict(c) for c in (components or DEFAULT_COMPONENTS)]
        self.normalize = normalize
        for c in self.components:
            if "model" not in c:
                raise ValueError(f"blend component {c!r} has no 'model'")
            if c["model"] == "blend":
                raise ValueError("a blend cannot contain a blend")
        self.models_: list[Recommender] = []

    @classmethod
    def of(cls, fitted: list[tuple[Recommender, float]], normalize: str = "zscore") -> "Blend":
        """A blend of models already fitted on the same data (nothing is trained again)."""
        if not fitted:
            raise ValueError("a blend needs at least one model")
        data = fitted[0][0]._require()
        if any(m._require() is not data for m, _ in fitted):
            raise ValueError("blended models must be fitted on the same Interactions")
        blend = cls([{"model": m.name, "weight": float(w), "params": m.get_params()} for m, w in fitted], normalize)
        blend.models_ = [m for m, _ in fitted]
        blend.data = data
        return blend

    def _build(self) -> list[Recommender]:
        from trainer.models import make_model

        return [make_model(c["model"], **c.get("params", {})) for c in self.components]

    def _fit(self, data: Interactions) -> None:
        self.models_ = [m.fit(data) for m in self._build()]

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        # the policies' blend (ranking.scores), so a blend model ranks as a served blend does
        rows = {str(i): model._score_users(uidx) for i, model in enumerate(self.models_)}
        weights = {str(i): float(c.get("weight", 1.0)) for i, c in enumerate(self.components)}
        return blend(rows, weights, self.normalize).astype(np.float32)

    def _item_similarities(self, i: int) -> np.ndarray | None:
        for model in self.models_:
            sims = model._item_similarities(i)
            if sims is not None:
                return sims
        return None

    def item_embeddings(self) -> np.ndarray | None:
        for model in self.models_:
            emb = model.item_embeddings()
            if emb is not None:
                return emb
        return None

    def _state(self) -> dict[str, Any]:
        return {"states": [m._state() for m in self.models_]}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.models_ = self._build()
        for model, st in zip(self.models_, state["states"]):
            model.data = self.data
            model._load_state(st)
