"""The worker's fast decode path agrees with the pydantic schema on every record: the same records
accepted with the same rows, the same records rejected with the same reasons.

``schemas.events.fast_event`` only accepts plainly valid records and leaves the rest to pydantic;
these tests generate records on both sides of every rule (types, ids, timestamps, ratings,
context fields, extra keys) and compare ``streams.batch.decode_interactions`` with a reference
decoder that uses nothing but ``parse_event``.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.errors import InvalidEvent
from schemas.events import EventType, fast_event, parse_event
from streams.batch import DeadLetter, Record, decode_interactions, to_row

STRENGTHS = {"view": 1.0, "click": 2.0, "rate": 4.0, "purchase": 4.0, "dislike": -2.0, "convert": 4.0}


def reference(records: list[Record]) -> tuple[list[list], list[str]]:
    """What the worker did before the fast path: pydantic for every record."""
    rows, reasons = [], []
    for rec in records:
        if rec.value is None:
            reasons.append("empty record (no value)")
            continue
        try:
            rows.append(to_row(parse_event(rec.value), STRENGTHS))
        except InvalidEvent as exc:
            reasons.append(DeadLetter.of(rec, exc.reason).reason)
    return rows, reasons


def same_rows(a: list[list], b: list[list], now_ts: bool) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        x, y = list(x), list(y)
        if now_ts:  # "ts" missing or null means now: read twice, a few microseconds apart
            assert abs(x[4] - y[4]) < 5
            x[4] = y[4] = x[9] = y[9] = 0
        if x[0] != y[0] and len(x[0]) == len(y[0]) == 32:  # a generated event_id (uuid4 hex)
            x[0] = y[0] = ""
        if x != y:
            return False
    return True


ids = st.one_of(
    st.from_regex(r"[A-Za-z0-9_.:@\-]{1,12}", fullmatch=True),
    st.sampled_from(["", "a b", "u1\n", "\nu1", "x" * 128, "x" * 129, "é", "u/1", "u1 "]),
    st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
)
base = datetime(2026, 11, 22, 10, 0, 0, tzinfo=timezone.utc)
iso = st.builds(
    lambda secs, micro, fmt, off: (base + timedelta(seconds=secs, microseconds=micro)).astimezone(
        timezone(timedelta(minutes=off))).strftime(fmt),
    st.integers(-10**9, 10**9), st.integers(0, 999_999),
    st.sampled_from(["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                     "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S.%f%z"]),
    st.integers(-23 * 60, 23 * 60),
)
timestamps = st.one_of(
    st.integers(-10**11, 10**11), st.floats(-1e11, 1e11, allow_nan=False), st.sampled_from([1e20, -1e20, 2**62]),
    iso, st.sampled_from(["yesterday", "1700000000", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                          "2026-11-22T25:00:00Z", "2026-11-22T10:00:00+24:00", "2026-11-22T10:00:00.1234567Z",
                          "2026-11-22t10:00:00z", ""]),
    st.booleans(), st.none(), st.lists(st.integers(), max_size=1),
)
values = st.one_of(st.none(), st.integers(-2, 8), st.floats(-1, 7, allow_nan=False), st.booleans(),
                   st.sampled_from(["5", "five", 1e308]))
context_values = st.one_of(st.none(), st.text(max_size=5), st.integers(-3, 10**6), st.booleans(),
                           st.floats(-1, 10, allow_nan=False), st.just("q" * 1001), st.just("c" * 2001), st.lists(st.integers(), max_size=2),
                           st.sampled_from([{"quality": 4}, {"quality": 6}, {"bogus": 3}, {}, {"relevance": "5"}]))
contexts = st.one_of(
    st.none(), st.just([]), st.just("ctx"),
    st.dictionaries(st.sampled_from(["request_id", "strategy", "position", "basket_id", "profession", "dwell_ms",
                                     "query", "experiment", "arm", "comment", "aspects"]), context_values, max_size=5),
)
types = st.one_of(st.sampled_from([t.value for t in EventType]), st.sampled_from(["teleport", "", "VIEW", 3, None]))
event_ids = st.one_of(st.text(min_size=0, max_size=3), st.just("e" * 129), st.uuids().map(str), st.integers(),
                      st.none())
records = st.one_of(
    # anything may be missing
    st.fixed_dictionaries({}, optional={"event_id": event_ids, "type": types, "user_id": ids, "item_id": ids,
                                        "ts": timestamps, "value": values, "context": contexts, "extra": st.integers()}),
    # the fields a producer always sends, present: most of these get decided on ts, value and context
    st.fixed_dictionaries({"type": st.sampled_from([t.value for t in EventType]),
                           "user_id": st.from_regex(r"[a-z0-9]{1,6}", fullmatch=True), "item_id": ids},
                          optional={"event_id": event_ids, "ts": timestamps, "value": values, "context": contexts}),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(records, min_size=1, max_size=8))
def test_fast_decoding_accepts_and_rejects_exactly_what_pydantic_does(objs: list[dict]) -> None:
    recs = [Record(json.dumps(o).encode(), "interactions", 0, j) for j, o in enumerate(objs)]
    got = decode_interactions(recs, STRENGTHS)
    rows, reasons = reference(recs)
    now_ts = any(o.get("ts") is None for o in objs)
    assert same_rows(got.rows, rows, now_ts)
    assert [d.reason for d in got.dead] == reasons
    assert [d.offset for d in got.dead] + [s.offset for s in got.sources] != []


@settings(max_examples=1000, deadline=None)
@given(records)
def test_the_fast_path_never_accepts_what_pydantic_rejects(obj: dict) -> None:
    fast = fast_event(obj)
    if fast is None:
        return
    event = parse_event(obj)  # raises if pydantic rejects it
    assert (fast.event_id if "event_id" in obj else event.event_id) == event.event_id
    assert (fast.type, fast.user_id, fast.item_id, fast.value) == (event.type.value, event.user_id, event.item_id,
                                                                   event.value)
    if obj.get("ts") is not None:
        assert fast.epoch == event.epoch


@pytest.mark.parametrize("obj", [
    {"event_id": "e1", "type": "view", "user_id": "u1", "item_id": "i1", "ts": 1764500000.123456, "context": {}},
    {"event_id": "e1", "type": "click", "user_id": "u1", "item_id": "i1", "ts": "2026-11-22T10:00:00.5Z",
     "context": {"request_id": "r", "strategy": "hybrid", "position": 3, "extra": [1]}},
    {"event_id": "e1", "type": "rate", "user_id": "u1", "item_id": "i1", "value": 5, "ts": 0, "context": None},
    {"event_id": "e1", "type": "purchase", "user_id": "u1", "item_id": "i1", "ts": "2026-11-22T10:00:00+01:00",
     "context": {"basket_id": "b1", "profession": "chef"}},
    {"event_id": "e1", "type": "dwell", "user_id": "u1", "item_id": "i1", "ts": 0, "context": {"dwell_ms": 4200}},
    {"event_id": "e1", "type": "rate", "user_id": "u1", "item_id": "i1", "value": 4, "ts": 0,
     "context": {"comment": "clear and useful", "request_id": "r1"}},
])
def test_what_producers_send_takes_the_fast_path(obj: dict) -> None:
    fast = fast_event(obj)
    assert fast is not None
    assert fast.epoch == parse_event(obj).epoch
