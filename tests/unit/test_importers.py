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
