import json

import pytest

from schemas import InvalidEvent, Keys, Settings, parse_event
from schemas.export import export


def test_event_accepts_iso_and_epoch_and_defaults_now():
    a = parse_event({"type": "view", "user_id": "u1", "item_id": "i1", "ts": "2026-11-22T10:00:00Z"})
    b = parse_event({"type": "view", "user_id": "u1", "item_id": "i1", "ts": 1795000000})
    c = parse_event({"type": "view", "user_id": "u1", "item_id": "i1"})
    assert a.ts.year == 2026 and b.ts.tzinfo is not None and c.event_id


@pytest.mark.parametrize(
    "raw, words",
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"type": "view"}', "user_id"),
        (b'{"type": "teleport", "user_id": "u", "item_id": "i"}', "type"),
        (b'{"type": "rate", "user_id": "u", "item_id": "i", "value": 9}', "between 1 and 5"),
        (b'{"type": "view", "user_id": "u 1", "item_id": "i"}', "user_id"),
        (b'{"type": "view", "user_id": "u", "item_id": "i", "ts": "yesterday"}', "ts"),
    ],
)
def test_bad_records_say_why(raw, words):
    with pytest.raises(InvalidEvent) as err:
        parse_event(raw)
    assert words in err.value.reason


def test_keys_follow_design():
    k = Keys("sr:")
    assert k.recs("u1", "hybrid", 10) == "sr:recs:u1:hybrid:10"
    assert k.pairs("i1") == "sr:pairs:i1" and k.pairs_rev("i1") == "sr:pairs_rev:i1"
    assert k.seen("u1") == "sr:seen:u1" and k.recent("u1") == "sr:recent:u1"
    assert k.bandit("epsilon_greedy") == "sr:bandit:epsilon_greedy" and k.model_current == "sr:model:current"


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("STREAMREC_TOPIC_PREFIX", "dev.")
    monkeypatch.setenv("STREAMREC_EVENT_STRENGTHS", '{"view": 5}')
    s = Settings()
    assert s.topic("interactions") == "dev.interactions" and s.event_strengths == {"view": 5}


def test_schema_export_writes_one_file_per_model(tmp_path):
    paths = export(tmp_path)
    assert {p.name for p in paths} >= {"Interaction.json", "CatalogItem.json", "RecommendationResponse.json"}
    assert json.loads((tmp_path / "Interaction.json").read_text())["title"] == "Interaction"
