"""The home policy in ranking/ and the candidate stage in trainer/candidates.py."""
import numpy as np
import pandas as pd
import pytest

from ranking.filters import Filters, ItemInfo
from ranking.home import HomeRequest, ModelScores, candidates, rank
from ranking.policy import InvalidPolicy, Policy
from ranking.scores import blend
from ranking.signals import UserSignals
from trainer.candidates import PolicyScorer, candidate_recall
from trainer.data.interactions import Interactions
from trainer.models import make_model
from trainer.signals import OfflineSignals

ITEMS = [f"i{j}" for j in range(30)]


def rows(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.normal(size=30), "b": rng.normal(size=30) * 50 + 3}


def test_the_served_blend_is_the_matrix_blend():
    r = rows()
    policy = Policy.blend({"a": 1.0, "b": 0.5})
    parts = {m: ModelScores(ITEMS, v, full=True) for m, v in r.items()}
    served = rank(policy, UserSignals("u"), parts, HomeRequest(k=10), {}, {})
    mixed = blend({m: v[None, :] for m, v in r.items()}, policy.weights)[0]
    assert [i for i, _ in served.items] == [ITEMS[p] for p in np.argsort(-mixed, kind="stable")[:10]]
    assert served.label == "a+b"


def test_seen_items_leave_before_the_pool_is_cut():
    score = np.arange(30, 0, -1, dtype=float)  # i0 best
    seen = {f"i{j}" for j in range(25)}  # a heavy user: the 25 best are seen
    sig = UserSignals("u", seen=seen)
    pool = candidates(Policy.single("a"), sig, {"a": ModelScores(ITEMS, score, full=True)}, HomeRequest(k=5))
    assert [i for i, _ in pool.ranked] == [f"i{j}" for j in range(25, 30)]
    keep = candidates(Policy.single("a"), sig, {"a": ModelScores(ITEMS, score, full=True)},
                      HomeRequest(k=5, filters=Filters(exclude_seen=False)))
    assert keep.ranked[0][0] == "i0"


def test_candidate_sets_that_differ_blend_over_their_union():
    parts = {"a": ModelScores(["x", "y", "w"], np.array([3.0, 2.5, 0.0])),
             "b": ModelScores(["y", "z"], np.array([5.0, 1.0]))}
    got = rank(Policy.blend({"a": 1.0, "b": 1.0}), UserSignals("u"), parts, HomeRequest(k=4), {}, {})
    # y is good in both; x is good in a and at b's floor; w and z are worst in one, at the floor of the other
    assert [i for i, _ in got.items][:2] == ["y", "x"] and set(i for i, _ in got.items) == {"w", "x", "y", "z"}


def test_no_model_score_is_popularity_in_its_order_then_filled():
    sig = UserSignals("u", seen={"p1"}, pop_global=[("p1", 9.0), ("p2", 5.0)], pop_segment=[("s1", 1.0)],
                      segment="nurses")
    got = rank(Policy.blend({"a": 1.0}), sig, {"a": None}, HomeRequest(k=2, explain=True), {}, {})
    assert [i for i, _ in got.items] == ["s1", "p2"] and got.label is None
    assert got.reasons[0] == "popular in your segment (nurses)"


def test_mmr_and_category_cap_come_from_the_policy():
    score = np.linspace(1, 0, 30)
    infos = {i: ItemInfo(category="same" if j < 20 else f"c{j}") for j, i in enumerate(ITEMS)}
    parts = {"a": ModelScores(ITEMS, score, full=True)}
    capped = rank(Policy.single("a", category_cap=2), UserSignals("u"), parts, HomeRequest(k=5), infos, {})
    assert sum(infos[i].category == "same" for i, _ in capped.items) == 2
    plain = rank(Policy.single("a"), UserSignals("u"), parts, HomeRequest(k=5), infos, {})
    assert [i for i, _ in plain.items] == ITEMS[:5]


def test_policy_documents_round_trip_and_bad_ones_say_why():
    p = Policy.blend({"ease": 1.0, "multvae": 0.3}, mmr_lambda=0.9, category_cap=3)
    assert Policy.from_dict(p.to_dict()) == p
    with pytest.raises(InvalidPolicy, match="unknown policy field"):
        Policy.from_dict({"name": "x", "colour": "red"})
    with pytest.raises(InvalidPolicy, match="mmr_lambda"):
        Policy(name="x", mmr_lambda=2.0)
    with pytest.raises(InvalidPolicy, match="weight"):
        Policy.from_dict({"name": "x", "components": [{"model": "ease", "weight": -1}]})
    assert p.restricted_to({"ease"}).models == ["ease"]


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    ev = pd.DataFrame([(f"u{u}", f"i{(u % 3) * 10 + j}", t) for u in range(30) for t, j in
                       enumerate(rng.choice(10, 6, replace=False))], columns=["user_id", "item_id", "timestamp"])
    data = Interactions.from_events(ev)
    return data, {"ease": make_model("ease", lambda_=10.0).fit(data), "itemknn": make_model("itemknn").fit(data)}


def test_the_candidate_stage_keeps_the_models_full_ranking(fitted):
    data, models = fitted
    scorer = PolicyScorer(models, [str(i) for i in data.item_ids], {})
    signals = OfflineSignals(data)
    users = [signals.user(u) for u in ("u0", "u1", "u2")]
    policy = Policy.blend({"ease": 1.0, "itemknn": 0.5})
    assert candidate_recall(scorer, policy, users) == 1.0
    assert candidate_recall(scorer, policy.with_(full_scoring_max_items=0, candidates=5), users, k=3) == 1.0
    assert candidate_recall(scorer, policy.with_(full_scoring_max_items=0, candidates=3), users) < 1.0  # 3 < k
    part = scorer.model_scores("ease", policy.with_(full_scoring_max_items=0, candidates=3), users[0])
    assert not part.full and len(part.items) == 3 + len(users[0].seen)


def test_a_cold_user_is_scored_by_their_recent_items(fitted):
    data, models = fitted
    emb = np.eye(len(data.item_ids), dtype=np.float32)
    scorer = PolicyScorer(models, [str(i) for i in data.item_ids], {"ease": emb})
    cold = UserSignals("stranger", recent=["i3"])
    part = scorer.model_scores("ease", Policy.single("ease"), cold)
    assert part is not None and part.items[int(np.argmax(part.scores))] == "i3"
    assert scorer.model_scores("itemknn", Policy.single("itemknn"), UserSignals("nobody")) is None
