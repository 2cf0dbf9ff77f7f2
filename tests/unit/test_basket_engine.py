"""Basket engine: profiles, buckets, segment detection, pool, scoring terms, assortment."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from inference.basket import profiles
from inference.basket.serving import run_embeddings
from ranking.basket import BasketParams, BasketSignals, Embeddings, ItemMeta, complements, resolve_segments
from ranking.basket.scoring import score_candidates
from schemas import basket_profiles


def test_shipped_profiles_have_every_knob_in_default():
    raw = json.loads(basket_profiles.SHIPPED.read_text())
    knobs = set(BasketParams.__dataclass_fields__)
    for name in ("precision", "diversity"):
        assert knobs <= set(raw[name]["default"]), knobs - set(raw[name]["default"])


def test_bucket_selection_and_override():
    prof = {"default": {"W_POPG": 0.1}, "1": {"W_POPG": 0.5}, "4+": {"CAP_PER_GAMME": 3}}
    assert [basket_profiles.select_bucket(prof, n) for n in (1, 2, 3, 4, 9)] == ["1", "default", "default", "4+", "4+"]
    p = basket_profiles.params_for(prof, 5)
    assert (p.W_POPG, p.CAP_PER_GAMME) == (0.1, 3)


@pytest.mark.parametrize("bad", [
    {"p": {"1": {}}},  # no default
    {"p": {"default": {"NOPE": 1}}},
    {"p": {"default": {"W_PAIR": "high"}}},
    {"p": {"default": {"MMR_LAMBDA": 2}}},
    {"p": {"default": {}, "x": {}}},
])
def test_bad_profile_files_are_refused_with_a_reason(tmp_path, bad):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError):
        basket_profiles.load_profiles(path)


def test_set_active_and_active(tmp_path):
    profiles.configure(None, "precision")
    assert profiles.set_active("diversity") == "diversity" and profiles.active() == "diversity"
    with pytest.raises(KeyError):
        profiles.set_active("nope")
    assert profiles.active() == "diversity"
    profiles.configure(None, "tuned")  # the settings' default, which other tests expect


SIG = BasketSignals(
    pairs={"ANY": {"a": {"b": 10.0, "c": 5.0, "x": 1.0}, "x": {"c": 4.0}},
           "seg1": {"a": {"d": 3.0}}},
    pairs_rev={"ANY": {"a": {"e": 10.0}}},
    pop_global={"p": 100.0, "b": 50.0, "a": 90.0},
    pop_seg={"seg1": {"q": 10.0}},
    meta={"b": ItemMeta(category="k1"), "c": ItemMeta(category="k1"), "p": ItemMeta(category="k2", private_label=True),
          "e": ItemMeta(category="k3"), "x": ItemMeta(private_label=True)},
)


def test_pool_excludes_basket_and_mixes_sources():
    got = {c.item_id for c in score_candidates(["a", "x"], SIG, BasketParams(), [])}
    assert got == {"b", "c", "e", "p"}  # pairs, reverse pairs, popularity; a and x are in the basket


def test_segment_pairs_and_segment_popularity_join_the_pool():
    got = {c.item_id: c for c in score_candidates(["a"], SIG, BasketParams(W_POPP=1.0), [("seg1", 1.0)])}
    assert {"d", "q"} <= set(got)
    assert got["d"].pair == 1.0 and got["b"].pair == 0.5  # segment list at 1, ANY lists at PAIR_ANY_WEIGHT
    assert got["q"].popp == 1.0


def test_coverage_bonus_rewards_items_linked_to_several_basket_items():
    p = BasketParams(W_COVERAGE=1.0, W_POPG=0.0)
    got = {c.item_id: c for c in score_candidates(["a", "x"], SIG, p, [])}
    assert got["c"].coverage == 1.0 and got["b"].coverage == 0.5


def test_private_label_boost_grows_with_the_baskets_private_label_share():
    p = BasketParams(W_PL_BASE=0.1, W_PL_PER_BASK_PL=1.0, W_POPG=0.0)
    plain = {c.item_id: c for c in score_candidates(["a"], SIG, p, [])}
    pl_basket = {c.item_id: c for c in score_candidates(["a", "x"], SIG, p, [])}
    assert plain["p"].private_label == pytest.approx(0.1)
    assert pl_basket["p"].private_label == pytest.approx(0.6)
    assert plain["b"].private_label == 0


def test_embedding_term_and_its_absence():
    emb = Embeddings({"a": 0, "b": 1, "c": 2}, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32))
    sig = BasketSignals(pairs=SIG.pairs, pop_global=SIG.pop_global, embeddings=emb)
    got = {c.item_id: c for c in score_candidates(["a"], sig, BasketParams(W_EMB=1.0), [])}
    assert got["c"].emb == pytest.approx(1.0) and got["b"].emb == pytest.approx(0.0)
    without = {c.item_id: c for c in score_candidates(["a"], SIG, BasketParams(W_EMB=1.0), [])}
    assert all(c.emb == 0 for c in without.values())


def test_category_cap_mmr_and_pair_quota():
    capped = complements(["a"], SIG, BasketParams(CAP_PER_GAMME=1, W_POPG=0.0), [], k=3)
    assert [c.item_id for c in capped][:2] == ["b", "e"]  # c shares b's category
    quota = complements(["a"], SIG, BasketParams(PAIR_QUOTA=0, W_POPG=5.0), [], k=1)
    assert quota[0].item_id == "p"
    quota = complements(["a"], SIG, BasketParams(PAIR_QUOTA=1, W_POPG=5.0), [], k=1)
    assert quota[0].from_pairs


def test_segment_detection_from_embeddings():
    emb = Embeddings({"pipe": 0, "brush": 1}, np.array([[1.0, 0.0], [0.0, 1.0]], np.float32))
    cents = {"plumber": np.array([1.0, 0.1]), "painter": np.array([0.1, 1.0])}
    p = BasketParams(SEG_TOP_K=2, SEG_TEMPERATURE=0.05, SEG_MIN_MASS=0.1)
    sig = BasketSignals(embeddings=emb)
    assert resolve_segments(None, ["pipe"], sig, cents, p)[0][0] == "plumber"
    assert resolve_segments("painter", ["pipe"], sig, cents, p) == [("painter", 1.0)]
    assert resolve_segments(None, ["pipe"], BasketSignals(), cents, p) == []
    mixed = resolve_segments(None, ["pipe", "brush"], sig, cents, BasketParams(SEG_TOP_K=2, SEG_TEMPERATURE=1.0))
    assert {s for s, _ in mixed} == {"plumber", "painter"} and sum(w for _, w in mixed) == pytest.approx(1.0)


def test_serving_run_access(tmp_path):
    from trainer.basket_export import save_segment_centroids

    save_segment_centroids({"plumber": np.array([1.0, 0.0], np.float32)}, tmp_path)
    run = SimpleNamespace(embeddings={"lightfm": np.array([[2.0, 0.0], [0.0, 3.0]])}, path=tmp_path)
    serving = SimpleNamespace(run=run, run_id="r1", item_ids=["a", "b"])
    emb, cents = run_embeddings(serving)
    assert emb.get("b").tolist() == [0.0, 1.0] and list(cents) == ["plumber"]
    assert run_embeddings(None) == (None, {})


def test_pool_similarities_match_the_plain_function():
    """The basket's MMR reads rows of the home policy's similarity matrix (one implementation)."""
    from ranking.basket.scoring import pool_similarities
    from ranking.diversity import similarity_matrix

    emb = Embeddings({"a": 0, "b": 1}, np.array([[1.0, 0.0], [0.6, 0.8]], np.float32))
    sig = BasketSignals(meta={"a": ItemMeta(category="x"), "c": ItemMeta(category="x"), "d": ItemMeta()}, embeddings=emb)
    pool = ["a", "b", "c", "d"]
    fast = pool_similarities(sig, pool)
    plain = similarity_matrix(pool, {"a": emb.vectors[0], "b": emb.vectors[1]}, {"a": "x", "c": "x", "d": None})
    for n, item in enumerate(pool):
        assert fast.row(n).tolist() == pytest.approx(plain[n].tolist())


def test_large_baskets_keep_the_pair_quota_within_the_assortment_head():
    pairs = {"ANY": {"a": {f"p{j}": 1.0 for j in range(5)}}}
    pop = {f"q{j}": 1000.0 - j for j in range(500)}
    got = complements(["a"], BasketSignals(pairs=pairs, pop_global=pop), BasketParams(W_POPG=50.0, PAIR_QUOTA=3), [], k=5)
    assert sum(c.from_pairs for c in got) == 3


def test_serving_uses_the_model_the_centroids_were_computed_with(tmp_path):
    from trainer.basket_export import save_segment_centroids

    save_segment_centroids({"plumber": np.array([0.0, 1.0], np.float32)}, tmp_path, model="ease_like")
    run = SimpleNamespace(embeddings={"lightfm": np.eye(2), "ease_like": np.array([[0.0, 1.0], [1.0, 0.0]])}, path=tmp_path)
    emb, cents = run_embeddings(SimpleNamespace(run=run, run_id="r2", item_ids=["a", "b"]))
    assert emb.get("a").tolist() == [0.0, 1.0] and list(cents) == ["plumber"]
