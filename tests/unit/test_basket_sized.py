"""Size-weighted co-occurrence (``PAIR_SIZE_POWER``): power 0 is the plain count, a positive
power prefers partners of small baskets, the work is bounded, and the tuner searches it."""
from ranking.basket import BasketParams, BasketSignals, complements
from ranking.basket.cocover import BasketIndex
from ranking.basket.sized import sized_pairs
from trainer.basket_signals import learn_stats
from trainer.basket_tuning import COOCCURRENCE, REFINE, SEARCH
from trainer.data.baskets import Basket

# "jam" comes with milk in three small baskets; "veg" in four large ones (with filler items)
BASKETS = ([["milk", "jam"]] * 3
           + [["milk", "veg"] + [f"x{i}{j}" for j in range(8)] for i in range(4)]
           + [["bread", "jam"], ["bread", "veg"]])


def test_power_zero_counts_as_the_streams_cooccurrence():
    st = learn_stats([Basket(f"b{i}", b) for i, b in enumerate(BASKETS)])
    idx = st.signals.index
    for item in ("milk", "jam", "veg", "bread"):
        assert sized_pairs(idx, item, 0.0, 1000) == dict(st.signals.pairs["ANY"][item])


def test_a_positive_power_prefers_the_partner_of_small_baskets():
    idx = BasketIndex.from_baskets(BASKETS)
    sig = BasketSignals(pairs={"ANY": {"milk": {"veg": 4.0, "jam": 3.0}}}, index=idx,
                        item_count=idx.counts(), n_baskets=float(idx.n_baskets))
    plain = BasketParams(**{**COOCCURRENCE, "PAIR_SIZE_POWER": 0.0})
    sized = BasketParams(**{**COOCCURRENCE, "PAIR_SIZE_POWER": 1.0})
    assert [c.item_id for c in complements(["milk"], sig, plain, [], k=2)] == ["veg", "jam"]
    assert [c.item_id for c in complements(["milk"], sig, sized, [], k=2)][0] == "jam"
    # without the run's baskets the stream's counts serve as before
    sig.index = None
    assert [c.item_id for c in complements(["milk"], sig, sized, [], k=2)] == ["veg", "jam"]


def test_reads_at_most_the_budget_of_baskets_the_latest():
    idx = BasketIndex.from_baskets(BASKETS)
    # the latest 2 baskets holding milk are the last two large ones: jam is not in them
    assert set(sized_pairs(idx, "milk", 1.0, 2)) == {"veg"} | {f"x{i}{j}" for i in (2, 3) for j in range(8)}
    assert list(sized_pairs(idx, "milk", 1.0, 100, top_n=1)) == ["jam"]
    assert sized_pairs(idx, "unknown", 1.0, 100) == {}


def test_the_tuner_searches_it_from_plain_cooccurrence():
    assert COOCCURRENCE["PAIR_SIZE_POWER"] == 0.0
    assert dict(SEARCH)["PAIR_SIZE_POWER"][0] == 0.0 and "PAIR_SIZE_POWER" in REFINE


def test_the_tuners_memo_gives_the_same_lists_and_keeps_the_latest_few():
    from ranking.basket.sized import SizedMemo

    plain, kept = BasketIndex.from_baskets(BASKETS), BasketIndex.from_baskets(BASKETS)
    kept.memo = SizedMemo(size=3)
    for _ in range(2):
        for item in ("milk", "jam", "veg", "bread"):
            for power, limit, top_n in ((0.5, 100, None), (1.0, 2, 5)):
                assert sized_pairs(kept, item, power, limit, top_n) == sized_pairs(plain, item, power, limit, top_n)
    assert len(kept.memo) == 3 and kept.memo.get(("bread", 1.0, 2, 5)) is not None
    assert kept.memo.get(("milk", 0.5, 100, None)) is None  # the oldest went first
