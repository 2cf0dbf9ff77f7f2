"""The snapshot read in bounded chunks (``trainer.data.scan``) gives the same events and the same
training dataset as reading every part whole (issue 17: 10M events).

The reference below is the reader as it was before the chunks: every part read whole with
``pq.read_table``, concatenated in pandas, sorted into log order, deduplicated, sorted by time;
and the matrix built by looking every row's id up in the index."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp

from schemas.settings import DEFAULT_STRENGTHS
from trainer.data.dataset import build_interactions
from trainer.data.filters import Filters
from trainer.data.interactions import Interactions
from trainer.data.snapshot import Snapshot


def whole_frame(snap: Snapshot) -> pd.DataFrame:
    """The snapshot's records as the reader before the chunks made them."""
    frames = []
    for n, part in enumerate(snap.manifest()["parts"]):
        table = pq.read_table(snap.path / part)
        cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                for f in snap.schema]
        df = pa.Table.from_arrays(cols, schema=snap.schema).to_pandas()
        df["_part"] = n
        frames.append(df)
    df = pd.concat(frames, ignore_index=True).sort_values(["_part", "partition", "offset"], kind="stable")
    df = df.drop(columns="_part").drop_duplicates(snap.unique_on, keep=snap.keep)
    if snap.kind == "interactions":
        df = df.sort_values("timestamp", kind="stable")
    return df.reset_index(drop=True)


def matrix_by_lookup(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """The matrix as ``Interactions.from_events`` built it before codes: each row's id looked up."""
    ev = events.copy()
    ev["strength"] = ev["type"].map(DEFAULT_STRENGTHS).fillna(1.0).astype("float32")
    users = np.array(sorted(ev["user_id"].astype(str).unique()), dtype=object)
    items = np.array(sorted(ev["item_id"].astype(str).unique()), dtype=object)
    u = pd.Index(users).get_indexer(ev["user_id"].astype(str))
    i = pd.Index(items).get_indexer(ev["item_id"].astype(str))
    m = sp.csr_matrix((ev["strength"].to_numpy(np.float32), (u, i)), shape=(len(users), len(items)), dtype=np.float32)
    m.sum_duplicates()
    return users, items, m


def write_snapshot(path, seed: int, parts: int = 5, rows: int = 40) -> Snapshot:
    """Parts with two partitions interleaved, events re-sent in later parts, tied and
    out-of-order times, nulls, and one part written before most columns existed."""
    rng = np.random.default_rng(seed)
    snap = Snapshot(path)
    offsets = {0: 0, 1: 0}
    sent: list[dict] = []
    for k in range(parts):
        recs = []
        for _ in range(rows):
            if sent and rng.random() < 0.15:  # a producer retry: the same event again, later in the log
                rec = dict(sent[rng.integers(len(sent))])
            else:
                n = len(sent)
                rec = {"event_id": f"e{n}", "user_id": f"u{rng.integers(12)}", "item_id": f"i{rng.integers(30)}",
                       "timestamp": float(rng.integers(50)),
                       "type": str(rng.choice(["view", "click", "rate", "dislike", "impression"])),
                       "value": float(rng.integers(1, 6)) if rng.random() < 0.4 else None,
                       "basket_id": f"b{rng.integers(5)}" if rng.random() < 0.3 else None,
                       "profession": "plumber" if rng.random() < 0.2 else None, "strategy": None}
                sent.append(rec)
            p = int(rng.integers(2))
            recs.append({**rec, "topic": "interactions", "partition": p, "offset": offsets[p]})
            offsets[p] += 1
        rng.shuffle(recs)  # a part's rows need not be in offset order
        snap.append(recs, "interactions", dict(offsets))
    # a part from before the context columns: only the event's own fields
    old = pa.table({"event_id": ["e0", "old1"], "user_id": ["u1", "u99"], "item_id": ["i1", "i99"],
                    "timestamp": [3.0, 3.0], "type": ["view", "click"], "value": [None, None],
                    "topic": ["interactions"] * 2, "partition": pa.array([0, 0], pa.int32()),
                    "offset": pa.array([offsets[0], offsets[0] + 1], pa.int64())})
    name = f"part-{parts + 1:06d}.parquet"
    pq.write_table(old, snap.path / name)
    man = snap.manifest()
    man["parts"].append(name)
    snap._commit(man)
    return snap


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("batch_rows", [1, 7, 1000])
def test_chunked_read_gives_the_events_of_a_whole_read(tmp_path, seed, batch_rows):
    snap = write_snapshot(tmp_path / "snap", seed)
    expected = whole_frame(snap)
    got = snap.frame(batch_rows=batch_rows)
    pd.testing.assert_frame_equal(got, expected)
    assert expected["event_id"].is_unique and expected["event_id"].tolist().count("e0") == 1


@pytest.mark.parametrize("seed", [0, 3])
def test_the_training_dataset_is_the_same_as_from_a_whole_read(tmp_path, seed):
    snap = write_snapshot(tmp_path / "snap", seed)
    src = snap.read()
    whole = whole_frame(snap)
    keep = ["user_id", "item_id", "timestamp", "type", "value", "basket_id", "profession"]
    pd.testing.assert_frame_equal(src.events, whole[keep])
    pd.testing.assert_frame_equal(src.positions, whole[["topic", "partition", "offset"]])
    for filters in (Filters(), Filters(min_user_interactions=3, min_item_interactions=2)):
        new = build_interactions(src.events, DEFAULT_STRENGTHS, filters)
        old = build_interactions(whole[keep], DEFAULT_STRENGTHS, filters)
        assert new.user_ids.tolist() == old.user_ids.tolist() and new.item_ids.tolist() == old.item_ids.tolist()
        assert (new.matrix != old.matrix).nnz == 0
        pd.testing.assert_frame_equal(new.events, old.events)


def test_matrix_from_codes_equals_the_matrix_by_lookup(tmp_path):
    events = whole_frame(write_snapshot(tmp_path / "snap", 4))
    users, items, m = matrix_by_lookup(events)
    data = Interactions.from_events(events)
    assert data.user_ids.tolist() == users.tolist() and data.item_ids.tolist() == items.tolist()
    assert (data.matrix != m).nnz == 0 and data.matrix.dtype == np.float32
    # a fixed index space (a test split sharing the train split's ids): unknown ids leave, known keep their rows
    part = Interactions.from_events(events.iloc[::2], user_ids=users[:5], item_ids=items)
    kept = events.iloc[::2]
    assert len(part.events) == int(kept["user_id"].isin(set(users[:5])).sum())
    assert part.matrix.shape == (5, len(items))
    assert events.columns.tolist() == whole_frame(Snapshot(tmp_path / "snap")).columns.tolist()  # left alone


def test_catalog_keeps_the_last_upsert_when_read_in_chunks(tmp_path):
    cat = Snapshot(tmp_path / "snap" / "catalog", "catalog")
    rows = [{"item_id": f"i{j % 4}", "title": f"t{j}", "text": None, "category": "c", "subcategory": None,
             "level": None, "private_label": (j % 3 == 0) if j != 5 else None, "topic": "catalog",
             "partition": 0, "offset": j} for j in range(10)]
    cat.append(rows[:6], "catalog", {0: 6})
    cat.append(rows[6:], "catalog", {0: 10})
    got = cat.frame(batch_rows=2)
    # the whole read's dtype came from every row read, the dropped upserts too (a null there made
    # the flags objects); the chunked read's from the kept rows only: the same values
    pd.testing.assert_frame_equal(got, whole_frame(cat), check_dtype=False)
    assert got["private_label"].dtype == bool
    assert dict(zip(got["item_id"], got["title"])) == {"i0": "t8", "i1": "t9", "i2": "t6", "i3": "t7"}


def test_an_empty_snapshot_reads_as_no_rows(tmp_path):
    snap = Snapshot(tmp_path / "snap")
    snap.append([], "interactions", {0: 0})
    assert len(snap.frame()) == 0 and list(snap.frame(["user_id", "item_id"]).columns) == ["user_id", "item_id"]
