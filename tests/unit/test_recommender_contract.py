"""Every model in MODELS walks through the same contract on a dataset with a known answer."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trainer.models import MODELS, load_model, make_model
from trainer.models.testing import FAST_PARAMS, group_of_item, group_of_user, synthetic_interactions

GROUP_MODELS = sorted(n for n in MODELS if n != "popularity")  # popularity is the same list for all


@pytest.fixture(scope="module")
def data():
    return synthetic_interactions()


@pytest.fixture(scope="module")
def fitted(data):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = make_model(name, **FAST_PARAMS.get(name, {})).fit(data)
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(MODELS))
def test_recommend_excludes_seen_and_unknown_users_get_nothing(name, data, fitted):
    model = fitted(name)
    users = ["u0", "u25", "nobody"]
    recs = model.recommend(users, k=5)
    assert len(recs) == 3
    assert recs[2] == ([], [])
    for u, (items, scores) in zip(users[:2], recs[:2]):
        seen = set(data.events.loc[data.events.user_id == u, "item_id"])
        assert len(items) == 5 and not seen & set(items)
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("name", GROUP_MODELS)
def test_known_answer_users_get_their_own_group(name, data, fitted):
    model = fitted(name)
    users = list(data.user_ids)
    recs = model.recommend(users, k=3)
    same = [group_of_item(i) == group_of_user(u) for u, (items, _) in zip(users, recs) for i in items]
    assert np.mean(same) >= 0.9, f"{name}: only {np.mean(same):.0%} of recommendations in the user's group"


def test_popularity_known_answer(data, fitted):
    model = fitted("popularity")
    counts = data.events.groupby("item_id")["user_id"].nunique()
    top = counts.idxmax()
    user = next(u for u in data.user_ids if top not in set(data.events.loc[data.events.user_id == u, "item_id"]))
    assert model.recommend([user], k=1)[0][0] == [top]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_score_pairs_and_unknowns(name, fitted):
    model = fitted(name)
    scores = model.score([("u0", "i3"), ("u0", "nope"), ("ghost", "i3"), ("u30", "i20")])
    assert scores.shape == (4,)
    assert np.isfinite(scores[[0, 3]]).all() and np.isnan(scores[[1, 2]]).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_roundtrip(name, data, fitted, tmp_path):
    model = fitted(name)
    model.save(tmp_path / name)
    params = json.loads((tmp_path / name / "params.json").read_text())
    assert params.pop("model") == name
    assert params == json.loads(json.dumps(model.get_params()))  # every hyperparameter recorded
    again = load_model(tmp_path / name)
    assert type(again) is type(model)
    users = np.arange(data.n_users)
    np.testing.assert_allclose(again.score_matrix(users), model.score_matrix(users), rtol=1e-5, atol=1e-6)
    assert again.similar_items("i1", 3) == model.similar_items("i1", 3)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_params_rebuild_an_equal_model(name, fitted):
    model = fitted(name)
    clone = make_model(name, **model.get_params())
    assert clone.get_params() == model.get_params()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_embeddings_and_similar_items(name, data, fitted):
    model = fitted(name)
    emb = model.item_embeddings()
    if emb is not None:
        assert emb.shape[0] == data.n_items and np.isfinite(emb).all()
    uemb = model.user_embeddings()
    if uemb is not None:
        assert uemb.shape[0] == data.n_users
    items, sims = model.similar_items("i2", 4)
    assert "i2" not in items
    if name != "popularity":
        assert len(items) == 4
        assert sum(group_of_item(i) == 0 for i in items) >= 3, f"{name}: {items}"
    assert model.similar_items("unknown", 4) == ([], [])


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="known models"):
        make_model("nope")


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="fit"):
        make_model("ease").recommend(["u0"])
