"""Pure batch logic of the worker: decoding, dead letters, rows, run-time config, key templates."""
from __future__ import annotations

import json

import pytest

from schemas.catalog import CatalogItem, UserProfile
from schemas.keys import Keys
from schemas.settings import Settings
from streams.app import broker_url
from streams.batch import ROW_FIELDS, Record, decode_interactions, decode_models
from streams.config import StreamConfig
from streams.state import item_fields, user_fields
from streams.trending import decayed, event_weight


def rec(value: object, offset: int = 0) -> Record:
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return Record(raw, "interactions", 1, offset, 1.0)


GOOD = {"event_id": "e1", "type": "purchase", "user_id": "u1", "item_id": "i1", "ts": "2026-11-22T10:00:00Z",
        "context": {"basket_id": "b1", "profession": "nurse", "strategy": "hybrid"}}


def test_a_valid_event_becomes_a_row_with_its_strength() -> None:
    out = decode_interactions([rec(GOOD)], {"purchase": 4.0})
    row = dict(zip(ROW_FIELDS, out.rows[0]))
    assert row == {"event_id": "e1", "type": "purchase", "user_id": "u1", "item_id": "i1", "ts": 1795341600.0,
                   "strength": 4.0, "segment": "nurse", "basket_id": "b1", "strategy": "hybrid",
                   "day": "2026-11-22", "value": "", "dwell": "", "extra": ""}
    assert out.types == {"purchase": 1} and not out.dead and out.sources[0].offset == 0


def test_feedback_values_travel_in_the_row() -> None:
    rate = {**GOOD, "type": "rate", "value": 4, "context": {"comment": "clear", "aspects": {"quality": 5},
                                                              "dwell_ms": 1200}}
    row = dict(zip(ROW_FIELDS, decode_interactions([rec(rate)], {}).rows[0]))
    assert (row["value"], row["dwell"], row["extra"]) == (4.0, 1200, {"c": "clear", "a": {"quality": 5}})
    dwell = {**GOOD, "type": "dwell", "context": {"dwell_ms": 300}}
    row = dict(zip(ROW_FIELDS, decode_interactions([rec(dwell)], {}).rows[0]))  # the fast path
    assert (row["value"], row["dwell"], row["extra"]) == ("", 300, "")


def test_a_type_missing_from_the_strengths_weighs_nothing() -> None:
    assert decode_interactions([rec({**GOOD, "type": "like"})], {}).rows[0][5] == 0.0


@pytest.mark.parametrize("value, reason", [
    (b"{oops", "malformed JSON"),
    (b"\xff\xfe", "malformed JSON"),
    (None, "empty record"),
    ([1, 2], "expected a JSON object"),
    ({"type": "view", "user_id": "u"}, "item_id: Field required"),
    ({**GOOD, "type": "teleport"}, "type: Input should be"),
    ({**GOOD, "type": "rate", "value": 7}, "between 1 and 5"),
    ({**GOOD, "user_id": "has space"}, "user_id"),
    ({**GOOD, "ts": "yesterday"}, "ts"),
])
def test_bad_records_become_dead_letters_with_a_reason(value: object, reason: str) -> None:
    out = decode_interactions([rec(GOOD, 0), rec(value, 1)], {})
    assert len(out.rows) == 1 and len(out.dead) == 1
    dead = out.dead[0]
    assert reason in dead.reason
    assert (dead.topic, dead.partition, dead.offset) == ("interactions", 1, 1)
    letter = json.loads(dead.to_json())
    assert letter["reason"] == dead.reason and set(letter) == {"reason", "raw", "topic", "partition", "offset"}


def test_catalog_and_user_records_are_validated_too() -> None:
    good, dead = decode_models([rec({"item_id": "i1", "private_label": True}), rec({"title": "x"}), rec(b"?")],
                               CatalogItem)
    assert [g.item_id for g in good] == ["i1"] and len(dead) == 2
    assert item_fields(good[0])["private_label"] == "1" and item_fields(good[0])["category"] == ""
    users, _ = decode_models([rec({"user_id": "u1", "profession": "chef", "level": 2})], UserProfile)
    assert user_fields(users[0])["segment"] == "chef" and user_fields(users[0])["level"] == "2"


def test_run_time_overrides_apply_and_bad_ones_are_reported() -> None:
    base = StreamConfig.from_settings(Settings())
    cfg, problems = base.with_overrides({
        "strength.click": "5", "reward.enroll": "2", "trend_half_life_s": "60", "session_gap_s": "0",
        "invalidating_types": "click, purchase", "strength.teleport": "1", "colour": "blue", "strength.view": "nan",
    })
    assert cfg.strengths["click"] == 5 and cfg.rewards["enroll"] == 2 and cfg.half_life_s == 60
    assert cfg.session_gap_s == base.session_gap_s and cfg.strengths["view"] == base.strengths["view"]
    assert cfg.invalidating == {"click", "purchase"}
    assert len(problems) == 4 and base.strengths["click"] != 5  # the base is never mutated


def test_key_templates_match_the_keys_readers_use() -> None:
    k = Keys("pre:")
    t = k.interactions_script("ucb")

    def fill(parts: list[str], *values: str) -> str:
        out = parts[0]
        for v, rest in zip(values, parts[1:]):
            out += v + rest
        return out

    assert fill(t["seen"], "u1") == k.seen("u1")
    assert fill(t["pairs_seg"], "chef", "i1") == k.pairs("i1", "chef")
    assert fill(t["pairs_rev_seg"], "chef", "i1") == k.pairs_rev("i1", "chef")
    assert fill(t["recs_index"], "u1") == k.recs_index("u1")
    assert fill(t["dedupe"], "e1") == k.dedupe("e1")
    assert t["bandit"] == k.bandit("ucb") and t["invalidate_channel"] == k.invalidate_channel


def test_forward_decay_is_order_independent_and_halves_per_half_life() -> None:
    meta = {"epoch": 0.0, "hl": 60.0}
    ts = [0.0, 30.0, 60.0, 600.0, 5.0]
    forward = sum(event_weight(1.0, t, meta) for t in ts)
    backward = sum(event_weight(1.0, t, meta) for t in reversed(ts))
    assert forward == pytest.approx(backward)
    assert decayed(event_weight(2.0, 0.0, meta), now=60.0, meta=meta) == pytest.approx(1.0)


def test_broker_url_accepts_a_bootstrap_list() -> None:
    assert broker_url("k1:9092, k2:9092") == "kafka://k1:9092;kafka://k2:9092"
