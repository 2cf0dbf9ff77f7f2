"""Reranking without models: RRF, applying reranker scores, pairs from feedback, the split by
query, the refusal below the minimum, the label warning, the before/after metrics and the
promotion decision."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ranking.rerank import apply_reranker, ndcg_at_k, query_from_items, reciprocal_rank, rrf
from schemas.errors import InvalidDataset
from trainer.reranker.evaluate import classification_metrics, ranking_metrics
from trainer.reranker.pairs import balance_warning, build_pairs, check_enough, split_by_query
from trainer.reranker.pipeline import _decide

TEXTS = {f"i{n}": f"text {n}" for n in range(20)}


# --- RRF and applying scores --------------------------------------------------------------------
def test_rrf_sums_reciprocal_ranks_over_rankings():
    fused = dict(rrf({"dense": ["a", "b", "c"], "bm25": ["c", "a"]}, k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert [i for i, _ in rrf({"dense": ["a", "b", "c"], "bm25": ["c", "a"]})] == ["a", "c", "b"]


def test_rrf_weights_a_repeated_item_and_empty_rankings():
    assert rrf({"x": ["a", "a", "b"]}, k=1) == [("a", 0.5), ("b", pytest.approx(1 / 4))]
    assert rrf({"x": [], "y": []}) == []
    assert [i for i, _ in rrf({"x": ["a", "b"], "y": ["b"]})][0] == "b"
    assert [i for i, _ in rrf({"x": ["a", "b"], "y": ["b"]}, weights={"x": 1.0, "y": 0.0})][0] == "a"
    with pytest.raises(ValueError):
        rrf({"x": ["a"]}, k=0)


def test_apply_reranker_reorders_only_the_top_n_and_keeps_both_scores():
    ranked = [(f"i{n}", 10.0 - n) for n in range(6)]
    out = apply_reranker(ranked, {"i0": 0.1, "i1": 0.9, "i2": 0.5, "i5": 1.0}, top_n=3)
    assert [r.item_id for r in out] == ["i1", "i2", "i0", "i3", "i4", "i5"]  # i5 is outside the top 3
    assert [r.reranker_score for r in out] == [0.9, 0.5, 0.1, None, None, None]
    assert [r.first_stage_score for r in out] == [9.0, 8.0, 10.0, 7.0, 6.0, 5.0]
    assert [r.first_stage_rank for r in out] == [1, 2, 0, 3, 4, 5]


def test_apply_reranker_puts_unscored_items_of_the_top_after_scored_ones():
    out = apply_reranker([("a", 3.0), ("b", 2.0), ("c", 1.0)], {"c": 0.2, "b": float("nan")}, top_n=3)
    assert [(r.item_id, r.reranker_score) for r in out] == [("c", 0.2), ("a", None), ("b", None)]


def test_ranking_metrics_of_lists():
    assert ndcg_at_k([1, 0, 0]) == 1.0 and ndcg_at_k([0, 0, 0]) == 0.0
    assert ndcg_at_k([0, 1], k=1) == 0.0
    assert reciprocal_rank([0, 1, 1]) == 0.5
    assert query_from_items([None, ""]) == ""


# --- pairs from feedback -----------------------------------------------------------------------
def frame(rows: list[dict]) -> pd.DataFrame:
    cols = ["type", "user_id", "item_id", "timestamp", "request_id", "position", "query"]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows])


def test_pairs_take_the_query_of_the_list_that_showed_the_item():
    ev = frame([
        {"type": "impression", "user_id": "u", "item_id": "i1", "timestamp": 1, "request_id": "r1", "position": 0, "query": "wings"},
        {"type": "impression", "user_id": "u", "item_id": "i2", "timestamp": 1, "request_id": "r1", "position": 1, "query": "wings"},
        {"type": "like", "user_id": "u", "item_id": "i2", "timestamp": 2, "request_id": "r1"},
        {"type": "dislike", "user_id": "u", "item_id": "i1", "timestamp": 3, "request_id": "r1"},
        {"type": "view", "user_id": "u", "item_id": "i3", "timestamp": 4},  # not feedback
        {"type": "like", "user_id": "u", "item_id": "i4", "timestamp": 5, "query": "direct"},  # its own query
    ])
    p = build_pairs(ev, TEXTS).sort_values("timestamp")
    assert p[["query", "item_id", "label", "list_id"]].values.tolist() == [
        ["wings", "i2", 1.0, "r1"], ["wings", "i1", 0.0, "r1"], ["direct", "i4", 1.0, "q:direct"]]
    assert p["position"].tolist()[:2] == [1.0, 0.0] and np.isnan(p["position"].tolist()[2])
    assert p["text"].tolist() == ["text 2", "text 1", "text 4"]


def test_the_last_feedback_on_an_item_of_a_list_wins():
    ev = frame([
        {"type": "like", "user_id": "u", "item_id": "i1", "timestamp": 1, "request_id": "r1", "query": "q"},
        {"type": "dislike", "user_id": "u", "item_id": "i1", "timestamp": 2, "request_id": "r1", "query": "q"},
    ])
    assert build_pairs(ev, TEXTS)["label"].tolist() == [0.0]


def test_a_home_list_without_a_query_takes_the_text_of_the_users_earlier_items():
    ev = frame([
        {"type": "view", "user_id": "u", "item_id": "i7", "timestamp": 1},
        {"type": "click", "user_id": "u", "item_id": "i8", "timestamp": 2},
        {"type": "impression", "user_id": "u", "item_id": "i1", "timestamp": 3, "request_id": "h1", "position": 0},
        {"type": "like", "user_id": "u", "item_id": "i1", "timestamp": 4, "request_id": "h1"},
        {"type": "view", "user_id": "u", "item_id": "i9", "timestamp": 9},  # after the list: not its query
    ])
    p = build_pairs(ev, TEXTS)
    assert p["query"].tolist() == [query_from_items(["text 8", "text 7"])]


def test_items_without_text_and_lists_without_query_are_dropped():
    ev = frame([
        {"type": "like", "user_id": "u", "item_id": "unknown", "timestamp": 1, "query": "q"},
        {"type": "like", "user_id": "v", "item_id": "i1", "timestamp": 1, "request_id": "r9"},  # no history
    ])
    assert build_pairs(ev, TEXTS).empty


def test_implicit_feedback_adds_clicks_and_skips():
    ev = frame([{"type": "impression", "user_id": "u", "item_id": f"i{n}", "timestamp": 1, "request_id": "r",
                 "position": n, "query": "q"} for n in range(4)]
               + [{"type": "click", "user_id": "u", "item_id": "i2", "timestamp": 2, "request_id": "r"}])
    assert build_pairs(ev, TEXTS).empty  # clicks count only when asked for
    p = build_pairs(ev, TEXTS, implicit=True).set_index("item_id")
    assert p["label"].to_dict() == {"i2": 1.0, "i0": 0.0, "i1": 0.0}  # i3 was below the click: not a skip
    assert p.loc["i0", "kind"] == "skip"


# --- split, refusal, warning ------------------------------------------------------------------
def test_split_by_query_is_seeded_and_never_shares_a_query():
    p = pd.DataFrame({"query": [f"q{n % 10}" for n in range(100)], "label": [1.0] * 100})
    tr, va = split_by_query(p, 0.2, seed=3)
    assert set(tr["query"]).isdisjoint(va["query"]) and va["query"].nunique() == 2 and len(tr) + len(va) == 100
    tr2, va2 = split_by_query(p, 0.2, seed=3)
    assert va2.equals(va)
    with pytest.raises(InvalidDataset, match="at least 2"):
        split_by_query(p[p["query"] == "q1"], 0.2)


def test_refusal_below_the_minimum_says_what_to_do():
    with pytest.raises(InvalidDataset, match=r"49 labelled pairs.*at least 50 needed.*--allow-small"):
        check_enough(pd.DataFrame({"label": [1.0] * 49}), 50)
    check_enough(pd.DataFrame({"label": [1.0] * 50}), 50)


def test_unbalanced_labels_warn():
    assert "unbalanced" in balance_warning(pd.DataFrame({"label": [0.0] * 19 + [1.0]}))
    assert balance_warning(pd.DataFrame({"label": [0.0, 1.0] * 5})) is None


# --- evaluation and decision ------------------------------------------------------------------
def test_reranked_lists_are_scored_against_the_first_stage():
    p = pd.DataFrame({"list_id": ["a"] * 3 + ["b"] * 2, "item_id": ["x", "y", "z", "x", "y"],
                      "label": [0, 0, 1, 1, 0], "position": [0, 1, 2, 1, 0], "timestamp": 0})
    first = ranking_metrics(p, None)
    assert first["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2) and first["lists"] == 2
    perfect = ranking_metrics(p, [0.1, 0.2, 0.9, 0.8, 0.1])
    assert perfect["ndcg@10"] == 1.0 and perfect["mrr"] == 1.0
    c = classification_metrics([1, 1, 0, 0], [0.9, 0.8, 0.7, 0.1])
    assert c["auc_roc"] == 1.0 and c["precision"] == pytest.approx(2 / 3) and c["recall"] == 1.0
    assert classification_metrics([1, 1], [0.9, 0.1])["auc_roc"] is None  # one class: no AUC


def test_promotion_needs_a_win_over_the_baseline():
    assert _decide({"ndcg@10": 0.8}, {"ndcg@10": 0.7}, "the first stage", 0.0)[0]
    ok, why = _decide({"ndcg@10": 0.7}, {"ndcg@10": 0.7}, "the serving reranker", 0.0)
    assert not ok and "does not beat the serving reranker" in why
    assert not _decide({"ndcg@10": 0.8}, {"ndcg@10": 0.7}, "x", 0.2)[0]
    # no list with a like in validation: AUC decides, against a coin for the first stage
    assert _decide({"ndcg@10": None, "auc_roc": 0.6}, {"ndcg@10": None}, "the first stage", 0.0)[0]
    assert not _decide({"ndcg@10": None, "auc_roc": None}, {"ndcg@10": None}, "x", 0.0)[0]


def test_nan_free_defaults():
    assert np.isfinite(ndcg_at_k([2, 1, 0], 10, all_gains=[2, 2, 1, 0]))


def test_the_fusion_weight_is_chosen_on_validation_lists():
    from trainer.reranker.evaluate import WEIGHT_GRID, choose_weight

    p = pd.DataFrame({"list_id": ["a"] * 3 + ["b"] * 3, "item_id": list("xyzuvw"), "label": [0, 0, 1, 1, 0, 0],
                      "position": [0, 1, 2, 0, 1, 2], "timestamp": 0})
    good = [0.2, 0.1, 0.9, 0.9, 0.6, 0.1]  # finds list a's like (shown last) and keeps list b's first
    weight, table = choose_weight(p, good)
    assert set(table) == set(WEIGHT_GRID) and table[weight] == max(table.values()) == 1.0
    best = [w for w, v in table.items() if v == 1.0]
    assert weight == min(best, key=lambda w: abs(w - 0.5)) and table[0.0] < 1.0  # the reranker is needed
    bad = [0.9, 0.8, 0.1, 0.1, 0.8, 0.9]  # reverses both lists: the first stage alone is best
    weight, table = choose_weight(p, bad)
    assert table[weight] == table[0.0] > table[1.0]
    # no list with a like: nothing to choose by, the preferred weight
    assert choose_weight(p.assign(label=0), good, prefer=0.5)[0] == 0.5


def test_the_gate_judges_a_weight_chosen_on_other_lists():
    """On noise, the best of 11 weights on the same lists beats the first stage by luck; the
    cross-fitted NDCG (each half at the weight the other half chose) does not."""
    from trainer.reranker.evaluate import choose_weight, cross_fitted_ndcg

    rng = np.random.default_rng(1)
    rows = [{"list_id": f"l{n}", "item_id": f"i{j}", "label": float(j == rng.integers(0, 3)), "position": j,
             "timestamp": 0} for n in range(40) for j in range(8)]
    p = pd.DataFrame(rows)
    p = p[p.groupby("list_id")["label"].transform("max") > 0]
    noise = rng.random(len(p))
    weight, table = choose_weight(p, noise)
    first = ranking_metrics(p, None)["ndcg@10"]
    assert table[weight] >= first  # weight 0 is the first stage: the in-sample best never loses
    assert cross_fitted_ndcg(p, noise) <= table[weight]
    perfect = p["label"].to_numpy()
    assert cross_fitted_ndcg(p, perfect) == 1.0
