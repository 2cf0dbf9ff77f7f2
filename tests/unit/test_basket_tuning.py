"""Basket policy tuning: co-occurrence is a point of the space, the tuned policy never loses to
it on validation, the hold-out, the run's stored policy, and the bounded large-basket path."""
import json
import random

import numpy as np
import pandas as pd

from ranking.basket import BasketParams, BasketSignals, complements
from ranking.basket.cocover import BasketIndex, cover_select
from ranking.basket.scoring import Candidate, pair_sources
from inference.basket.redis_signals import plan
from schemas.keys import Keys
from schemas.basket_profiles import params_for
from trainer.basket_eval import Model, cooccurrence_ranker, policy_ranker
from trainer.basket_export import export_basket, load_index, load_policy
from trainer.basket_signals import learn_stats
from trainer.basket_tuning import COOCCURRENCE, carve, not_worse, tune_policy
from trainer.data.baskets import Basket

GROUPS = [["milk", "bread", "butter", "jam"], ["beer", "chips", "salsa"], ["pasta", "sauce", "cheese", "wine"]]


def baskets(n=600, timed=True, seed=0):
    """Planted baskets: a popular staple in many baskets, plus two to four items of one group."""
    r = random.Random(seed)
    out = []
    for i in range(n):
        g = GROUPS[r.randrange(len(GROUPS))]
        items = r.sample(g, r.randint(2, len(g))) + (["bananas"] if r.random() < 0.5 else [])
        out.append(Basket(f"b{i}", list(dict.fromkeys(items)), segment=f"s{i % 2}", ts=float(i) if timed else None))
    return out


def test_the_cooccurrence_point_is_plain_cooccurrence():
    """Through the served path, the start of the search ranks exactly as the baseline."""
    st = learn_stats(baskets())
    model = Model(st.signals, stats=st)
    ours = policy_ranker(model, {"default": COOCCURRENCE}, "none", 10)
    base = cooccurrence_ranker(st, 10)
    r = random.Random(1)
    for b in baskets(80, seed=2):
        for m in (1, 2):
            shown = r.sample(b.items, min(m, len(b.items)))
            assert ours(shown, b) == base(shown), shown


def test_tuning_never_loses_to_cooccurrence_on_validation():
    res = tune_policy(baskets(), {}, "use_order", n_val=120, seed=0)
    assert res.trials[0].params == COOCCURRENCE
    assert not_worse(res.best, res.baseline)
    assert all(t.feasible == not_worse(t.metrics, {m: res.baseline[m] for m in t.metrics}) for t in res.trials)
    assert 10 <= len(res.trials) <= 120 and res.holdout.startswith("time")
    params_for(res.profile(), 1)  # a valid profile
    doc = res.summary()
    assert doc["validation"]["tuned"]["1"]["hit"] >= doc["validation"]["cooccurrence"]["1"]["hit"]


def test_holdout_is_the_latest_baskets_when_timed_else_seeded_random():
    fit, val, how = carve(baskets(), 50, 0)
    assert how.startswith("time") and [b.basket_id for b in val] == [f"b{i}" for i in range(550, 600)]
    untimed = baskets(timed=False)
    a, b = carve(untimed, 50, 3)[1], carve(untimed, 50, 3)[1]
    assert a == b and carve(untimed, 50, 4)[1] != a and carve(untimed, 50, 3)[2] == "random, seed 3"


def test_the_run_stores_a_tuned_policy_and_its_baskets(tmp_path):
    rows = [(b.basket_id, it, b.segment, pd.Timestamp(b.ts, unit="s", tz="UTC")) for b in baskets() for it in b.items]
    ev = pd.DataFrame(rows, columns=["basket_id", "item_id", "segment", "timestamp"])
    export_basket(tmp_path, ev, sorted(ev["item_id"].unique()), None, cover_components=0)
    doc = load_policy(tmp_path)
    assert doc["tuning"]["name"] == "tuned" and doc["tuning"]["segment_mode"] == "use_order"
    assert isinstance(params_for(doc["profile"], 2), BasketParams)
    index = load_index(tmp_path)
    assert index.n_baskets == 600 and index.counts()["bananas"] > 200
    json.dumps(doc)


def test_conditional_cover_reads_at_most_its_budget_of_baskets_the_latest():
    """Old baskets say y comes in the baskets x covers, the latest twenty that it does not: with
    a budget of 20 baskets only the latest are read."""
    idx = BasketIndex.from_baskets([["a", "x", "y"]] * 100 + [["a", "y"]] * 20)
    pool = [Candidate("x", 1.0), Candidate("y", 0.99), Candidate("z", 0.5)]
    assert [c.item_id for c in cover_select(pool, ["a"], idx, 2, rho=1.0, per_item=20)] == ["x", "y"]
    assert [c.item_id for c in cover_select(pool, ["a"], idx, 2, rho=1.0, per_item=1000)] == ["x", "z"]
    assert list(idx.baskets_of("a", 3)) == [117, 118, 119]


def test_a_fifty_item_basket_reads_bounded_lists():
    items = [f"i{j}" for j in range(200)]
    r = random.Random(0)
    bs = [r.sample(items, 30) for _ in range(300)]
    idx = BasketIndex.from_baskets(bs)
    pairs = {a: {b: float(r.randint(1, 50)) for b in r.sample(items, 150)} for a in items}
    sig = BasketSignals(pairs={"ANY": pairs}, pop_global={i: 1.0 for i in items}, index=idx,
                        item_count=idx.counts(), n_baskets=300.0)
    p = BasketParams(TOP_PAIRS=100, PAIRS_PER_BASKET=1000, COCOVER_RHO=0.5, COCOVER_BASKETS=500,
                     PAIR_NORM="conditional", W_REV=0.0)
    got = complements(items[:50], sig, p, [], 10)
    assert len(got) == 10 and not {c.item_id for c in got} & set(items[:50])
    # pairs: 1000 in all, 20 per basket item (not 100); the cover's baskets: 10 per basket item
    assert pair_sources([], p, 50) == [("ANY", 1.0, 20)] and pair_sources([], p, 2) == [("ANY", 1.0, 100)]
    assert plan(Keys("sr:"), items[:50], [], p)[0][3] == 20 and len(plan(Keys("sr:"), items[:50], [], p)) == 51


def test_link_normalisations_order_candidates_differently():
    sig = BasketSignals(pairs={"ANY": {"a": {"pop": 50.0, "rare": 10.0}}}, item_count={"a": 60.0, "pop": 1000.0, "rare": 12.0},
                        n_baskets=5000.0)
    base = {**COOCCURRENCE, "W_POPG": 0.0}
    order = {norm: [c.item_id for c in complements(["a"], sig, BasketParams(**{**base, "PAIR_NORM": norm}), [], 2)]
             for norm in ("raw", "conditional", "cosine", "lift", "pmi", "jaccard")}
    assert order["raw"] == order["conditional"] == ["pop", "rare"]
    assert order["lift"] == order["pmi"] == order["cosine"] == order["jaccard"] == ["rare", "pop"]
    assert np.isfinite([c.score for c in complements(["a"], sig, BasketParams(**{**base, "POP_DAMPING": 0.35}), [], 2)]).all()


def test_validation_grows_with_the_data_on_small_catalogs_only():
    """500 baskets by default; a small catalog takes up to a quarter of its 2+-item baskets
    (at most 1,500); a large one keeps 500; an explicit size is kept as asked."""
    from trainer.basket_tuning import validation_size

    def make(n, n_items, singles=0):
        return ([Basket(f"b{i}", [f"i{i % n_items}", f"i{(i + 1) % n_items}"]) for i in range(n)]
                + [Basket(f"s{i}", ["i0"]) for i in range(singles)])

    assert validation_size(make(1000, 100)) == 500  # a quarter is 250: the default holds
    assert validation_size(make(4000, 100, singles=3000)) == 1000  # singles do not count
    assert validation_size(make(20000, 100)) == 1500
    assert validation_size(make(20000, 6000)) == 500  # a large catalog keeps its time
    assert validation_size(make(20000, 100), 300) == 300
    res = tune_policy(baskets(3000, timed=False), {}, "none", seed=1)
    assert res.n_val == 750 and res.holdout == "random, seed 1"
