"""Warm starts (trainer/models/_warm.py): a fit that continues from an earlier fit, rows carried
over by id, new users and items given fresh rows; what a run's refit and ``--incremental`` use."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trainer.data.interactions import Interactions
from trainer.models import make_model
from trainer.models._warm import can_warm_start, index_map, warm_fit
from trainer.models.testing import FAST_PARAMS, item_meta, synthetic_events, user_meta

WARM = ("multvae", "two_tower", "lightfm")


def _data(events: pd.DataFrame) -> Interactions:
    return Interactions.from_events(events, item_meta=item_meta(), user_meta=user_meta())


@pytest.fixture(scope="module")
def old_and_new():
    events = synthetic_events()
    old = _data(events)
    # a new item i_new liked by group alpha's users, and a new user u_new who likes alpha films
    extra = [{"user_id": f"u{u}", "item_id": "i_new", "timestamp": 1_800_000_000 + u, "type": "rate", "value": 5.0}
             for u in range(0, 20, 2)]
    extra += [{"user_id": "u_new", "item_id": f"i{i}", "timestamp": 1_800_000_100 + i, "type": "rate", "value": 5.0}
              for i in (0, 1, 2)]
    new = _data(pd.concat([events, pd.DataFrame(extra)], ignore_index=True))
    return old, new


def test_index_map_pairs_ids_both_hold():
    new, old = index_map(np.array(["a", "b", "c"]), np.array(["c", "x", "a"]))
    assert new.tolist() == [0, 2] and old.tolist() == [2, 0]


@pytest.mark.parametrize("name", ["multvae", "two_tower"])
def test_rows_of_known_ids_are_carried_and_new_ids_get_rows(name, old_and_new):
    old, new = old_and_new
    before = make_model(name, **FAST_PARAMS[name]).fit(old)
    after = warm_fit(make_model(name, **{**FAST_PARAMS[name], "warm_epochs": 0}), new, before)
    assert after.data is new and after.item_embeddings().shape[0] == new.n_items
    # no epoch: every known item keeps its vector (same id, other index possible)
    new_pos, old_pos = index_map(old.item_ids, new.item_ids)
    np.testing.assert_allclose(after.item_embeddings()[new_pos], before.item_embeddings()[old_pos], rtol=1e-5)
    assert np.isfinite(after.score_matrix(np.arange(new.n_users))).all()


@pytest.mark.parametrize("name", WARM)
def test_warm_update_learns_the_new_item_and_serves_the_new_user(name, old_and_new):
    old, new = old_and_new
    before = make_model(name, **FAST_PARAMS[name]).fit(old)
    params = {**FAST_PARAMS[name], "warm_epochs": 30 if name != "lightfm" else 10}
    after = warm_fit(make_model(name, **params), new, before)
    assert can_warm_start(make_model(name), before)
    scores = after.score([("u1", "i_new"), ("u_new", "i3")])
    assert np.isfinite(scores).all()
    (items, _), = after.recommend(["u_new"], k=5)
    assert len(items) == 5 and not {"i0", "i1", "i2"} & set(items)


def test_models_without_a_warm_start_are_fitted_from_scratch(old_and_new):
    old, new = old_and_new
    before = make_model("ease", **FAST_PARAMS["ease"]).fit(old)
    assert not can_warm_start(make_model("ease"), before)
    after = warm_fit(make_model("ease", **FAST_PARAMS["ease"]), new, before)
    assert after.data is new and "i_new" in after.recommend(["u3"], k=30)[0][0]


def test_two_tower_distinct_item_softmax_learns_the_tastes(old_and_new):
    old, _ = old_and_new
    model = make_model("two_tower", **{**FAST_PARAMS["two_tower"], "distinct_classes": True}).fit(old)
    (items, _), = model.recommend(["u1"], k=5)
    assert sum(int(i[1:]) < 15 for i in items) >= 4  # u1 is of the alpha group (items i0..i14)
