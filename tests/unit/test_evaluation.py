"""Splits and metrics against hand-computed answers."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trainer.base import Recommender
from trainer.data.interactions import Interactions
from trainer.evaluation import evaluate, evaluate_many, format_table, ranking_metrics, rmse, sampled_ranking_metrics
from trainer.splits import leave_last_out, random_split, train_val_test_split


class FixedScores(Recommender):
    """Scores every user with the same fixed vector (items ranked i0 > i1 > ...)."""

    name = "fixed"

    def __init__(self, scores=None):
        self.scores = scores

    def _fit(self, data):
        pass

    def _score_users(self, uidx):
        return np.tile(np.asarray(self.scores, dtype=np.float32), (len(uidx), 1))


def _events(pairs):
    return pd.DataFrame(pairs, columns=["user_id", "item_id"]).assign(timestamp=range(len(pairs)))


@pytest.fixture
def tiny():
    # u1 saw i0; its test items are i1 (rank 1 of unseen) and i4 (rank 4); u2 saw i1, test i5 (never ranked in top 3)
    train = Interactions.from_events(_events([("u1", "i0"), ("u2", "i1"), ("u3", "i2"), ("u3", "i3"),
                                              ("u3", "i4"), ("u3", "i5")]))
    test = _events([("u1", "i1"), ("u1", "i4"), ("u2", "i5")])
    model = FixedScores([6, 5, 4, 3, 2, 1]).fit(train)
    return model, train, test


def test_full_ranking_metrics_known_answer(tiny):
    model, train, test = tiny
    m = ranking_metrics(model, train, test, k=3)
    # u1 top3 (i0 seen): i1 i2 i3 -> one hit at rank 1; u2 top3: i0 i2 i3 -> no hit
    assert m["users"] == 2
    assert m["precision@3"] == pytest.approx((1 / 3 + 0) / 2)
    assert m["recall@3"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["hit_rate@3"] == pytest.approx(0.5)
    assert m["mrr@3"] == pytest.approx(0.5)
    idcg_u1 = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((1 / idcg_u1) / 2)
    assert m["map@3"] == pytest.approx((1 / 2) / 2)
    assert m["coverage@3"] == pytest.approx(4 / 6)


def test_test_items_unknown_to_train_count_as_misses(tiny):
    model, train, _ = tiny
    m = ranking_metrics(model, train, _events([("u1", "i1"), ("u1", "new")]), k=3)
    assert m["recall@3"] == pytest.approx(0.5)


def test_sampled_metrics_oracle_and_constant(tiny):
    _, train, test = tiny
    # test items score 9, 8, 7; the only unseen item that can outrank one is i4 (8) for u2's i5
    oracle = FixedScores([0, 9, 0, 0, 8, 7]).fit(train)
    assert sampled_ranking_metrics(oracle, train, test, k=2, n_negatives=3)["sampled_hit_rate@2"] == 1.0
    constant = FixedScores([1] * 6).fit(train)  # ties count against the model
    assert sampled_ranking_metrics(constant, train, test, k=1, n_negatives=3)["sampled_hit_rate@1"] == 0.0


def test_rmse_and_evaluate_keys(tiny):
    model, train, test = tiny
    rated = test.assign(value=[5.0, 2.0, 1.0])  # predictions for i1, i4, i5 are 5, 2, 1
    assert rmse(model, rated) == pytest.approx(0.0)
    model.predicts_ratings = True
    metrics = evaluate(model, train, rated, k=3, n_negatives=3)
    assert {"ndcg@3", "sampled_ndcg@3", "rmse"} <= set(metrics)
    table = evaluate_many({"fixed": model}, train, rated, k=3, n_negatives=3)
    assert "| fixed |" in format_table(table, ["precision@3", "ndcg@3"])


def test_no_known_user_is_a_clear_error(tiny):
    model, train, _ = tiny
    with pytest.raises(ValueError, match="no test user"):
        ranking_metrics(model, train, _events([("ghost", "i1")]), k=3)


def _many(n_users=30, per_user=20, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(f"u{u}", f"i{i}", int(t)) for u in range(n_users)
            for t, i in enumerate(rng.choice(100, per_user, replace=False))]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_random_split_is_per_user_disjoint_and_seeded():
    ev = _many()
    train, test = random_split(ev, 0.75, seed=42)
    assert len(train) + len(test) == len(ev)
    assert (train.groupby("user_id").size() == 15).all() and (test.groupby("user_id").size() == 5).all()
    assert not set(map(tuple, train[["user_id", "item_id"]].values)) & set(map(tuple, test[["user_id", "item_id"]].values))
    again, _ = random_split(ev, 0.75, seed=42)
    pd.testing.assert_frame_equal(train, again)
    other, _ = random_split(ev, 0.75, seed=7)
    assert not train.equals(other)


def test_train_val_test_72_8_20():
    train, val, test = train_val_test_split(_many(per_user=50))
    assert (len(train), len(val), len(test)) == (30 * 36, 30 * 4, 30 * 10)


def test_leave_last_out_takes_the_latest_event():
    ev = _many()
    train, test = leave_last_out(ev)
    assert len(test) == 30 and len(train) == len(ev) - 30
    latest = ev.loc[ev.groupby("user_id")["timestamp"].idxmax()].set_index("user_id")["item_id"]
    assert (test.set_index("user_id")["item_id"].sort_index() == latest.sort_index()).all()


def test_bad_ratios_rejected():
    from trainer.splits import stratified_split

    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(_many(), [0.5, 0.2])
