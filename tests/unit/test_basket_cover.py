"""Coverage-greedy assortment: the cover model (fit, save/load, serving), its known answer."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from inference.basket.serving import run_cover
from ranking.basket import BasketParams, BasketSignals, complements
from ranking.basket.cover import CoverModel, CoverState
from trainer.basket_cover import COVER_FILE, fit_cover_model, load_cover_model, save_cover_model
from trainer.basket_export import export_basket
from trainer.pairs import mine_pairs

# "bread" comes with milk+veg (6 baskets: milk and veg always together) or with beer (4):
# the two items bought most with bread are milk and veg, but they hit the same 6 baskets;
# milk + beer hits all 10.
TOY = [["bread", "milk", "veg"]] * 6 + [["bread", "beer"]] * 4


def toy_events(baskets=TOY) -> pd.DataFrame:
    return pd.DataFrame([(f"b{n}", it) for n, b in enumerate(baskets) for it in b], columns=["basket_id", "item_id"])


def toy_signals(cover: CoverModel | None) -> BasketSignals:
    pairs = mine_pairs(toy_events(), symmetric=True)
    return BasketSignals(pairs=pairs.forward, pairs_rev=pairs.reverse,
                         pop_global=toy_events()["item_id"].value_counts().astype(float).to_dict(), cover=cover)


def hits(picks: list[str], baskets=TOY, shown="bread") -> float:
    return float(np.mean([bool(set(picks) & (set(b) - {shown})) for b in baskets]))


def test_greedy_cover_beats_top_k_by_count_on_a_known_answer():
    cover = fit_cover_model(toy_events(), n_components=2, restarts=2, seed=0)
    sig = toy_signals(cover)
    by_count = [c.item_id for c in complements(["bread"], sig, BasketParams(W_POPG=0.0), [], k=2)]
    greedy = [c.item_id for c in complements(["bread"], sig, BasketParams(W_POPG=0.0, COVERAGE_GREEDY=True,
                                                                            W_COVER_GREEDY=3.0), [], k=2)]
    assert by_count == ["milk", "veg"] and hits(by_count) == 0.6
    assert greedy == ["milk", "beer"] and hits(greedy) == 1.0


def test_cover_state_gain_is_the_probability_of_a_new_hit():
    cover = fit_cover_model(toy_events(), n_components=2, restarts=1, seed=0)
    st = CoverState(cover, ["bread"], ["milk", "veg", "beer", "unknown"])
    g = dict(zip(["milk", "veg", "beer", "unknown"], st.gains()))
    assert g["milk"] == pytest.approx(0.6, abs=0.05) and g["beer"] == pytest.approx(0.4, abs=0.05)
    assert g["unknown"] == 0.0
    st.pick("milk")
    g = dict(zip(["milk", "veg", "beer"], st.gains()))
    assert g["veg"] < 0.1 < 0.25 < g["beer"]  # veg hits the baskets milk already hits (smoothing leaves a little)
    st.pick("beer")
    assert st.p_hit() > 0.9


def test_coverage_greedy_without_a_cover_model_leaves_the_ranking_as_is():
    sig = toy_signals(None)
    on = complements(["bread"], sig, BasketParams(COVERAGE_GREEDY=True), [], k=3)
    off = complements(["bread"], sig, BasketParams(), [], k=3)
    assert [c.item_id for c in on] == [c.item_id for c in off]


def test_cover_model_round_trip_export_and_serving(tmp_path):
    cover = fit_cover_model(toy_events(), n_components=2, restarts=1)
    save_cover_model(cover, tmp_path)
    back = load_cover_model(tmp_path)
    assert dict(back.index) == dict(cover.index)
    assert back.theta == pytest.approx(cover.theta, abs=1e-6) and back.weights == pytest.approx(cover.weights)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    export_basket(run_dir, toy_events(), ["bread", "milk", "veg", "beer"], None)
    assert (run_dir / COVER_FILE).exists()
    serving = SimpleNamespace(run=SimpleNamespace(path=run_dir, embeddings={}), run_id="r-cover", item_ids=[])
    assert sorted(run_cover(serving).index) == ["beer", "bread", "milk", "veg"]
    assert run_cover(None) is None
    assert load_cover_model(tmp_path / "nothing") is None


def test_cover_model_refuses_bad_input():
    with pytest.raises(ValueError):
        fit_cover_model(pd.DataFrame(columns=["basket_id", "item_id"]))
    with pytest.raises(ValueError):
        CoverModel({"a": 0}, np.array([1.0]), np.array([[0.5, 0.5]]))


def test_profiles_parse_the_coverage_knobs():
    from schemas.basket_profiles import load_profiles, params_for

    prec, div = (params_for(load_profiles()[n], 1) for n in ("precision", "diversity"))
    assert prec.COVERAGE_GREEDY and prec.W_COVER_GREEDY > 0 and div.COVERAGE_GREEDY
    with pytest.raises(ValueError):
        BasketParams.from_dict({"COVERAGE_GREEDY": 1})
