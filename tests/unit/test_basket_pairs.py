"""Offline pair mining, its run export, and the basket file parsers."""
import pandas as pd

from trainer.basket_export import export_basket, load_segment_centroids
from trainer.data.baskets import iter_basket_lines, read_any
from trainer.pairs import load_pairs, mine_pairs

EV = pd.DataFrame({
    "basket_id": ["b1", "b1", "b1", "b2", "b2", "b3", "b3"],
    "item_id": ["a", "b", "c", "a", "b", "a", "c"],
    "segment": ["plumber", "plumber", "plumber", "painter", "painter", "", ""],
    "timestamp": [1, 2, 3, 1, 2, 2, 1],
})


def test_counts_per_segment_and_any_like_the_stream():
    p = mine_pairs(EV)
    assert p.forward["ANY"]["a"] == {"b": 2.0, "c": 2.0}
    assert p.forward["plumber"]["a"] == {"b": 1.0, "c": 1.0}
    assert p.forward["painter"]["b"] == {"a": 1.0}
    assert p.reverse["ANY"]["b"] == {"a": 2.0, "c": 1.0}
    assert p.segments == ["painter", "plumber"]


def test_min_count_and_top_k():
    p = mine_pairs(EV, min_count=2)
    assert p.forward["ANY"] == {"a": {"b": 2.0, "c": 2.0}, "b": {"a": 2.0}, "c": {"a": 2.0}}
    assert list(mine_pairs(EV, top_k=1).forward["ANY"]["a"]) == ["b"]  # ties by id


def test_directional_pairs_follow_time_without_symmetrisation():
    p = mine_pairs(EV, symmetric=False)
    assert p.forward["ANY"]["a"] == {"b": 2.0, "c": 1.0}  # in b3, c came before a
    assert p.forward["ANY"]["c"] == {"a": 1.0}
    assert p.reverse["ANY"]["a"] == {"c": 1.0}


def test_export_into_a_run_and_back(tmp_path):
    import numpy as np

    export_basket(tmp_path, EV, ["a", "b", "c"], np.eye(3, dtype=np.float32))
    assert load_pairs(tmp_path).forward == mine_pairs(EV).forward
    assert set(load_segment_centroids(tmp_path)) == {"plumber", "painter"}
    assert load_pairs(tmp_path / "nope") is None


def test_basket_files(tmp_path):
    f = tmp_path / "b.csv"
    f.write_text("whole milk,rolls/buns,whole milk\n\ncitrus fruit\n")
    bs = read_any(f)
    assert [(b.basket_id, b.items) for b in bs] == [("b1", ["whole_milk", "rolls_buns"]), ("b3", ["citrus_fruit"])]
    lines = tmp_path / "l.csv"
    lines.write_text("basket_id,item_id,segment,timestamp,price\nB2,SKU-1,plumber,2026-01-01T00:00:00Z,3\n"
                     "B1,x,,5,1\nB2,SKU-2,plumber,100,2\n,lost,,,\n")
    got = {b.basket_id: b for b in iter_basket_lines(lines)}
    assert got["B2"].items == ["SKU-1", "SKU-2"] and got["B2"].segment == "plumber"
    assert got["B2"].ts == 1767225600.0 and got["B1"].ts == 5.0
