"""What only some models do: training histories, losses, devices, metadata needs."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from schemas.errors import InvalidDataset
from trainer.data.interactions import Interactions
from trainer.device import pick_device
from trainer.models import make_model
from trainer.models.testing import FAST_PARAMS, synthetic_events, synthetic_interactions


@pytest.fixture(scope="module")
def data():
    return synthetic_interactions()


def test_ncf_logs_history_and_keeps_best_weights(data):
    params = {**FAST_PARAMS["ncf"], "epochs": 8, "val_fraction": 0.2, "patience": 2, "lr": 0.05}
    model = make_model("ncf", **params).fit(data)
    hist = model.history_
    assert 1 <= len(hist) <= 8 and all(np.isfinite(h["train_loss"]) for h in hist)
    assert np.isfinite(model.seconds_per_epoch)
    # the kept weights are those of the best validation epoch, not the last one
    best = min(hist, key=lambda h: h["val_loss"])
    assert model.best_epoch_ == best["epoch"]
    assert model.best_val_loss_ == pytest.approx(best["val_loss"], rel=1e-4)


def test_ncf_mse_on_ratings_predicts_ratings(data):
    model = make_model("ncf", **{**FAST_PARAMS["ncf"], "loss": "mse", "target": "value", "negatives": 0,
                                 "epochs": 40, "lr": 1e-2}).fit(data)
    assert model.predicts_ratings
    pred = model.score([("u0", data.events.item_id[0])])[0]
    assert 1.0 < pred < 7.0


def test_ncf_rejects_unknown_loss():
    with pytest.raises(ValueError, match="bce"):
        make_model("ncf", loss="hinge")


def test_two_tower_sampled_softmax_and_features(data):
    model = make_model("two_tower", **{**FAST_PARAMS["two_tower"], "softmax": "sampled", "num_sampled": 8}).fit(data)
    emb = model.item_embeddings()
    assert emb.shape == (data.n_items, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-4)


def test_two_tower_without_metadata(data):
    plain = Interactions.from_events(synthetic_events())
    model = make_model("two_tower", **FAST_PARAMS["two_tower"]).fit(plain)
    assert len(model.recommend(["u0"], k=3)[0][0]) == 3


def test_lightfm_patience_stops_and_uses_features(data):
    model = make_model("lightfm", no_components=8, epochs=40, patience=2, val_fraction=0.3).fit(data)
    assert len(model.history_) <= 40 and "val_precision@10" in model.history_[0]
    assert model.item_features_.shape[0] == data.n_items and model.user_features_ is not None


def test_content_needs_item_metadata():
    with pytest.raises(InvalidDataset, match="metadata"):
        make_model("content").fit(Interactions.from_events(synthetic_events()))


def test_blend_rejects_nested_blends():
    with pytest.raises(ValueError, match="blend"):
        make_model("blend", components=[{"model": "blend"}])


def test_device_falls_back_to_cpu_with_a_warning(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="CUDA"):
        assert pick_device("cuda").type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pick_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        pick_device("tpu")


def test_dislikes_do_not_count_as_co_occurrence():
    ev = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "y"],
                       "type": ["view", "dislike", "view", "view"], "timestamp": [1, 2, 3, 4]})
    model = make_model("itemknn", shrink=0.0, binary=False).fit(Interactions.from_events(ev))
    assert model.weights_.toarray()[0, 1] > 0  # only b's co-occurrence counts


def test_ease_options_change_the_weights_and_validate(data):
    plain = make_model("ease", lambda_=5.0).fit(data).weights_
    tuned = make_model("ease", lambda_=5.0, dropout=0.5, user_weight=0.5).fit(data).weights_
    assert not np.allclose(plain, tuned) and np.allclose(np.diag(tuned), 0)
    with pytest.raises(ValueError, match="dropout"):
        make_model("ease", dropout=1.0)


def test_blend_of_fitted_models_matches_a_fitted_blend(data):
    from trainer.models.blend import Blend

    spec = FAST_PARAMS["blend"]["components"]
    fitted = [(make_model(c["model"], **c["params"]).fit(data), c["weight"]) for c in spec]
    users = np.arange(data.n_users)
    a = Blend.of(fitted).score_matrix(users)
    b = make_model("blend", components=spec).fit(data).score_matrix(users)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="same Interactions"):
        Blend.of([(fitted[0][0], 1.0), (make_model("popularity").fit(synthetic_interactions(seed=1)), 1.0)])


def test_popularity_ignores_dislikes():
    ev = pd.DataFrame({"user_id": ["a", "b", "c", "a"], "item_id": ["x", "x", "x", "y"],
                       "type": ["dislike", "dislike", "dislike", "view"], "timestamp": [1, 2, 3, 4]})
    model = make_model("popularity").fit(Interactions.from_events(ev))
    assert model.recommend(["b"], k=1, exclude_seen=False)[0][0] == ["y"]
