from infra.demo import generate, zipf_check
from infra.importers import FORMATS
from schemas.errors import InvalidEvent
from schemas.events import parse_event


def test_movielens_rows_become_rate_events_with_stable_ids(tmp_path):
    f = tmp_path / "u.data"
    f.write_text("196\t242\t3\t881250949\n186\t302\t3\t891717742\nbroken line\n")
    got = list(FORMATS["movielens"](f))
    good = [r for r in got if not isinstance(r, InvalidEvent)]
    assert len(good) == 2 and isinstance(got[2], InvalidEvent) and "line 3" in got[2].reason
    topic, key, value = good[0]
    assert (topic, key, value["type"], value["value"], value["event_id"]) == ("interactions", "196", "rate", 3.0, "ml-196-242-881250949")
    assert list(FORMATS["movielens"](f))[0] == good[0]  # same ids on a second read


def test_csv_and_jsonl(tmp_path):
    c = tmp_path / "e.csv"
    c.write_text("user_id,item_id,timestamp,type\nu1,i1,1700000000,click\nu2,i2,1700000001,bogus\n")
    rows = list(FORMATS["csv"](c))
    assert rows[0][2]["type"] == "click" and isinstance(rows[1], InvalidEvent)
    j = tmp_path / "e.jsonl"
    j.write_text('{"type": "view", "user_id": "u1", "item_id": "i1"}\n{oops\n')
    rows = list(FORMATS["jsonl"](j))
    assert rows[0][1] == "u1" and "malformed JSON" in rows[1].reason


def test_demo_is_seeded_valid_and_power_law():
    a, b = generate(seed=3), generate(seed=3)
    assert [e["item_id"] for e in a.events[:50]] == [e["item_id"] for e in b.events[:50]]
    for e in a.events[:500]:
        parse_event(e)
    assert zipf_check(a) > 0.3
    assert any(e["type"] == "purchase" and e["context"]["basket_id"] for e in a.events)
    assert {u["segment"] for u in a.users} == {"student", "engineer", "designer", "manager", "artist"}


# --- one reader per format: the importer and the trainer read a row as the same event -----------
ROWS = (
    "user_id,item_id,timestamp,type,value\n"
    "u1,i1,1700000000,,4\n"          # a value without a type: a rating, both ways
    "u1,i2,1700000001,,\n"            # neither: a view
    "u2,i3,2023-11-14T22:13:21Z,CLICK,\n"  # ISO time, type case-insensitive
    "u2,i4,1700000003,,7\n"           # a rating outside 1-5: refused, both ways
    "u3,i5,1700000004,bogus,\n"       # unknown type: refused
    "u3,i6,soon,view,\n"              # unreadable time: refused
    "u 4,i7,1700000005,view,\n"       # an id the schema refuses
    ",i8,1700000006,view,\n"          # no user
    "u5,i9,1700000007,rate,\n"        # a rate needs a value
    "u5,i10,1700000008,view,x\n"      # a value that is no number
)


def _both_ways(path, fmt):
    from trainer.data.sources import load_source

    imported = list(FORMATS[fmt](path))
    events = {v["event_id"]: v for r in imported if not isinstance(r, InvalidEvent) for _, _, v in [r]}
    refused = [r.reason for r in imported if isinstance(r, InvalidEvent)]
    return events, refused, load_source(path, fmt)


def test_a_csv_row_is_the_same_event_for_import_and_train(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text(ROWS)
    events, refused, src = _both_ways(f, "csv")
    assert [(e["user_id"], e["item_id"], e["type"], e["value"]) for e in events.values()] == [
        ("u1", "i1", "rate", 4.0), ("u1", "i2", "view", None), ("u2", "i3", "click", None)]
    frame = src.events
    assert frame[["user_id", "item_id", "type"]].values.tolist() == [
        [e["user_id"], e["item_id"], e["type"]] for e in events.values()]
    assert frame["timestamp"].tolist() == [parse_event(e).epoch for e in events.values()]
    # the same rows refused, each listed with its line and reason by the importer, counted by the trainer
    assert len(refused) == 7 == sum(src.report.dropped.values())
    assert refused[0] == "line 5: value: a rating must be between 1 and 5 (got 7)"
    assert any(r.startswith("line 6: type: unknown bogus") for r in refused)
    assert src.report.dropped["rows with a rating outside 1–5"] == 2
    # deterministic ids: a second import sends the same events
    assert list(events) == list(_both_ways(f, "csv")[0])
    assert "csv-u1-i1-1700000000-rate" in events


def test_movielens_and_jsonl_are_the_same_events_both_ways(tmp_path):
    ml = tmp_path / "u.data"
    ml.write_text("196\t242\t3\t881250949\n186\t302\t9\t891717742\nbroken\n")
    events, refused, src = _both_ways(ml, "movielens")
    assert list(events) == ["ml-196-242-881250949"]
    assert refused == ["line 2: value: a rating must be between 1 and 5 (got 9)",
                       "line 3: expected user, item, rating, timestamp"]
    assert src.events[["user_id", "item_id", "type", "value", "timestamp"]].values.tolist() == [
        ["196", "242", "rate", 3.0, 881250949.0]]

    j = tmp_path / "e.jsonl"
    j.write_text('{"type": "rate", "value": 5, "user_id": "u1", "item_id": "i1", "ts": 10,'
                 ' "context": {"basket_id": "b1"}}\n{"type": "rate", "user_id": "u1", "item_id": "i2"}\n')
    events, refused, src = _both_ways(j, "jsonl")
    (eid, ev), = events.items()
    assert eid.startswith("jsonl-") and eid == next(iter(_both_ways(j, "jsonl")[0]))  # stable without an id
    assert src.events[["user_id", "item_id", "type", "value", "timestamp", "basket_id"]].values.tolist() == [
        ["u1", "i1", "rate", 5.0, 10.0, "b1"]]
    assert len(refused) == 1 and "line 2" in refused[0] and sum(src.report.dropped.values()) == 1


def test_a_file_the_importer_cannot_read_at_all_is_one_clear_error(tmp_path):
    f = tmp_path / "e.csv"
    f.write_text("user,item\nu1,i1\n")
    try:
        list(FORMATS["csv"](f))
    except InvalidEvent as exc:
        assert "header lacks item_id, user_id" in exc.reason
    else:
        raise AssertionError("no error")
