"""Dataset sources, filters, strengths and the Parquet snapshot."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas.errors import InvalidDataset
from schemas.settings import DEFAULT_STRENGTHS, Settings
from trainer.data.dataset import build_interactions
from trainer.data.filters import Filters, apply_filters
from trainer.data.snapshot import Snapshot
from trainer.data.sources import load_source, sniff_format

SHARED_ML100K = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "ml-100k" / "u.data"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_reads_epoch_and_iso_times_and_defaults_the_type(tmp_path):
    f = write(tmp_path / "ev.csv", "user_id,item_id,timestamp,value\nu1,i1,10,\nu1,i2,1970-01-01T00:00:20Z,4\n")
    src = load_source(f)
    assert src.events["timestamp"].tolist() == [10.0, 20.0]
    assert src.events["type"].tolist() == ["view", "rate"]
    assert src.report.rows == 2 and not src.report.dropped


def test_csv_bad_rows_are_dropped_and_counted_not_fatal(tmp_path):
    f = write(tmp_path / "ev.csv", "user_id,item_id,timestamp,type\nu1,i1,10,click\n,i2,11,view\nu2,i3,yesterday,view\n")
    src = load_source(f)
    assert src.events["user_id"].tolist() == ["u1"]
    assert sum(src.report.dropped.values()) == 2
    assert "unreadable timestamp" in src.report.describe()


def test_csv_without_required_columns_says_what_is_missing(tmp_path):
    f = write(tmp_path / "ev.csv", "user,item\nu1,i1\n")
    with pytest.raises(InvalidDataset, match="user_id"):
        load_source(f)


def test_empty_or_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidDataset, match="empty"):
        load_source(write(tmp_path / "ev.csv", ""))
    with pytest.raises(InvalidDataset, match="no such file"):
        load_source(tmp_path / "nope.csv")


def test_movielens_formats_and_item_metadata(tmp_path):
    write(tmp_path / "u.data", "1\t10\t5\t881250949\n2\t10\t3\t881250950\n")
    write(tmp_path / "u.item", "10|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0\n")
    src = load_source(tmp_path / "u.data")
    assert sniff_format(tmp_path / "u.data") == "movielens"
    assert src.events["type"].unique().tolist() == ["rate"]
    assert src.events["value"].tolist() == [5.0, 3.0]
    assert src.item_meta.loc["10", "title"] == "Toy Story (1995)"
    assert src.item_meta.loc["10", "category"] == "Animation|Children's|Comedy"

    dat = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    assert load_source(dat).events["item_id"].tolist() == ["1193", "661"]


def test_strengths_from_settings_and_dislikes_cancel_a_pair():
    ev = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u2"],
        "item_id": ["a", "b", "b", "a", "c"],
        "timestamp": [1.0, 2, 3, 4, 5],
        "type": ["click", "view", "dislike", "impression", "download"],
        "value": np.nan,
    })
    data = build_interactions(ev, DEFAULT_STRENGTHS)
    dense = pd.DataFrame(data.matrix.toarray(), index=data.user_ids, columns=data.item_ids)
    assert dense.loc["u1", "a"] == 2.0  # click
    assert dense.loc["u2", "c"] == 3.0  # download
    assert "b" not in data.item_index  # view (1) + dislike (-2) is not a positive
    assert dense.loc["u2", "a"] == 0.0  # an impression carries no signal

    custom = build_interactions(ev, {**DEFAULT_STRENGTHS, "click": 7.0})
    assert custom.matrix[custom.user_index["u1"], custom.item_index["a"]] == 7.0


def test_filters_min_counts_and_max_items():
    ev = pd.DataFrame({"user_id": list("aaaabbc"), "item_id": list("wxyzwxw")})
    assert sorted(apply_filters(ev, Filters(min_item_interactions=2)).item_id.unique()) == ["w", "x"]
    kept = apply_filters(ev, Filters(min_user_interactions=2, min_item_interactions=2))
    assert set(kept.user_id) == {"a", "b"} and set(kept.item_id) == {"w", "x"}
    assert set(apply_filters(ev, Filters(max_items=1)).item_id) == {"w"}


def test_filters_that_leave_nothing_raise_a_clear_error():
    ev = pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "type": ["view"], "timestamp": [1.0], "value": [np.nan]})
    with pytest.raises(InvalidDataset, match="min_user_interactions"):
        build_interactions(ev, DEFAULT_STRENGTHS, Filters(min_user_interactions=5))


def test_cold_catalog_items_are_indexed_only_when_asked():
    ev = pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "type": ["view"], "timestamp": [1.0], "value": [np.nan]})
    meta = pd.DataFrame({"title": ["X", "Y"]}, index=pd.Index(["x", "y"], name="item_id"))
    assert build_interactions(ev, DEFAULT_STRENGTHS, item_meta=meta).item_ids.tolist() == ["x"]
    warm_and_cold = build_interactions(ev, DEFAULT_STRENGTHS, item_meta=meta, include_cold_items=True)
    assert warm_and_cold.item_ids.tolist() == ["x", "y"]


def rec(n: int, user: str = "u1") -> dict:
    return {"event_id": f"e{n}", "user_id": user, "item_id": f"i{n}", "timestamp": float(n), "type": "view",
            "value": None, "strategy": None, "basket_id": None, "profession": None, "topic": "t", "partition": 0,
            "offset": n}


def test_snapshot_appends_parts_commits_offsets_and_dedupes(tmp_path):
    snap = Snapshot(tmp_path / "snap")
    assert not snap.exists()
    snap.append([rec(0), rec(1)], "t", {0: 2})
    snap.append([rec(2), rec(1)], "t", {0: 4}, skipped={"malformed JSON": 1})  # e1 again: a producer retry
    assert snap.offsets("t") == {0: 4}
    assert snap.offsets("other") == {}
    frame = snap.frame()
    assert frame["event_id"].tolist() == ["e0", "e1", "e2"]
    src = snap.read()
    assert list(src.events.columns)[:5] == ["user_id", "item_id", "timestamp", "type", "value"]
    assert src.offsets == {"t": {"0": 4}}
    assert src.report.dropped == {"skipped at replay: malformed JSON": 1}


def test_snapshot_ignores_an_orphan_part_from_an_interrupted_replay(tmp_path):
    snap = Snapshot(tmp_path / "snap")
    snap.append([rec(0)], "t", {0: 1})
    orphan = snap.path / "part-000002.parquet"
    orphan.write_bytes(b"half-written")  # the replay died before committing the manifest
    assert len(snap.frame()) == 1
    snap.append([rec(1)], "t", {0: 2})  # the next replay overwrites it
    assert snap.frame()["event_id"].tolist() == ["e0", "e1"]


def test_snapshot_is_a_source_for_training(tmp_path):
    snap = Snapshot(tmp_path / "snap")
    snap.append([rec(n, f"u{n % 3}") for n in range(9)], "t", {0: 9})
    src = load_source(snap.path)
    data = build_interactions(src.events, Settings().event_strengths)
    assert data.n_users == 3 and data.n_items == 9


def test_missing_snapshot_says_to_replay(tmp_path):
    with pytest.raises(InvalidDataset, match="streamrec replay"):
        Snapshot(tmp_path / "none").read()


@pytest.mark.skipif(not SHARED_ML100K.exists(), reason="MovieLens-100K not found at ../shared/data/ml-100k")
def test_movielens_100k_loads_whole():
    src = load_source(SHARED_ML100K)
    assert len(src.events) == 100_000
    assert src.item_meta is not None and len(src.item_meta) == 1682


def test_item_and_user_metadata_from_csv_and_jsonl(tmp_path):
    from trainer.data.sources import ITEM_FIELDS, USER_FIELDS, read_meta

    items = write(tmp_path / "items.csv", "item_id,title,category,price\ni1,Drill,tools,9\ni1,Drill 2,tools,9\n")
    meta = read_meta(items, "item_id", ITEM_FIELDS)
    assert meta.loc["i1", "title"] == "Drill 2" and "price" not in meta
    users = write(tmp_path / "users.jsonl", '{"user_id": "u1", "profession": "plumber"}\n')
    assert read_meta(users, "user_id", USER_FIELDS).loc["u1", "segment"] == "plumber"
    with pytest.raises(InvalidDataset, match="item_id"):
        read_meta(write(tmp_path / "x.csv", "id,title\n1,a\n"), "item_id", ITEM_FIELDS)


def test_a_restarted_log_replaces_its_old_parts_in_one_commit(tmp_path):
    snap = Snapshot(tmp_path / "snap")
    snap.append([rec(0), rec(1)], "t", {0: 2}, topic_id="A")
    snap.append([rec(2)], "other", {0: 1})
    snap.append([rec(3)], "t", {0: 3})
    assert snap.parts_of("t") == ["part-000001.parquet", "part-000003.parquet"] and snap.topic_id("t") == "A"
    # the log of t restarted: its old rows leave with the first commit of the new log
    snap.append([rec(10)], "t", {0: 1}, restart=True, topic_id="B")
    assert snap.offsets("t") == {0: 1} and snap.topic_id("t") == "B"
    assert sorted(snap.frame()["event_id"]) == ["e10", "e2"] and snap.rows == 2
    assert snap.manifest()["parts"] == ["part-000002.parquet", "part-000004.parquet"]  # no name reused
    assert not (snap.path / "part-000001.parquet").exists()
    snap.append([rec(11)], "t", {0: 2})
    assert sorted(snap.frame()["event_id"]) == ["e10", "e11", "e2"]
    # kept instead: only the offsets start again
    snap.reset_offsets("t", {})
    assert snap.offsets("t") == {} and len(snap.frame()) == 3


def test_snapshot_columns_come_from_the_models_and_old_parts_still_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from schemas.catalog import CatalogItem
    from trainer.data.rows import row_layout

    cols = [c for c, _ in row_layout("interactions").columns]
    assert cols[:6] == ["event_id", "type", "user_id", "item_id", "timestamp", "value"]
    assert {"strategy", "basket_id", "profession", "request_id"} <= set(cols)  # from the event's context
    catalog = [c for c, _ in row_layout("catalog").columns]
    assert catalog == [f for f in CatalogItem.model_fields if f != "attributes"]  # free-form: not a column
    # a part written before a column existed reads it as null
    snap = Snapshot(tmp_path / "snap")
    snap.append([rec(0)], "t", {0: 1})
    old = pa.table({"event_id": ["e9"], "user_id": ["u"], "item_id": ["i"], "timestamp": [9.0], "type": ["view"],
                    "value": [None], "topic": ["t"], "partition": pa.array([0], pa.int32()),
                    "offset": pa.array([9], pa.int64())})
    pq.write_table(old, snap.path / "part-000002.parquet")
    man = snap.manifest()
    man["parts"].append("part-000002.parquet")
    snap._commit(man)
    frame = snap.frame()
    assert frame["event_id"].tolist() == ["e0", "e9"] and frame["strategy"].isna().all()


def test_the_data_modules_import_one_way_and_their_doctests_pass():
    import doctest
    import importlib
    import subprocess
    import sys

    code = ("import sys, trainer.data.snapshot; "
            "assert 'trainer.data.sources' not in sys.modules and 'trainer.data.readers' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in ("schemas.topics", "trainer.data.rows", "trainer.data.readers", "trainer.data.sources",
                 "trainer.replay", "trainer.scheduler"):
        assert doctest.testmod(importlib.import_module(name)).failed == 0, name
