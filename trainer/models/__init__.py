"""Every model streamrec can train, by the name the CLI and ``params.json`` use.

``MODELS`` maps name → class; ``make_model(name, **params)`` builds one. All classes
implement ``trainer.base.Recommender``; hyperparameters are constructor arguments.
"""
from __future__ import annotations

from typing import Any

from trainer.base import Recommender
from trainer.models.blend import Blend
from trainer.models.content import ContentTFIDF
from trainer.models.ease import EASE
from trainer.models.itemknn import ItemKNN
from trainer.models.lightfm_model import LightFMModel
from trainer.models.multvae import MultVAE
from trainer.models.ncf import NCF
from trainer.models.popularity import Popularity
from trainer.models.rp3beta import RP3Beta
from trainer.models.two_tower import TwoTower

MODELS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (NCF, TwoTower, LightFMModel, ContentTFIDF, Popularity, ItemKNN, RP3Beta, EASE, MultVAE, Blend)
}


def make_model(name: str, **params: Any) -> Recommender:
    """A fresh, unfitted model by name.

    >>> make_model("ease", lambda_=300.0).get_params()
    {'lambda_': 300.0, 'dropout': 0.0, 'user_weight': 0.0, 'binary': True}
    """
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}") from None
    return cls(**params)


def load_model(path) -> Recommender:
    """Load a saved model whatever its class (``params.json`` names it)."""
    import json
    from pathlib import Path

    name = json.loads((Path(path) / "params.json").read_text()).get("model")
    if name not in MODELS:
        raise ValueError(f"{path}: params.json names unknown model {name!r}")
    return MODELS[name].load(path)


__all__ = ["MODELS", "make_model", "load_model", "Recommender", "NCF", "TwoTower", "LightFMModel", "ContentTFIDF",
           "Popularity", "ItemKNN", "RP3Beta", "EASE", "MultVAE", "Blend"]
