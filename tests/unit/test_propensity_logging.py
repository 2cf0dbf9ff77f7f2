"""Propensities on the impression path: an explored payload's items carry them into the cached list
(fresh and from Redis), and its impressions log ``context.propensity``; deterministic lists log 1."""
from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from inference.broker import Broker, impression_events
from inference.cache import CachedList
from ranking.exploration import explore_payload
from schemas.events import Interaction
from schemas.settings import Settings


def _payload(items):
    return {"user_id": "u1", "strategy": "popularity", "cached": False, "items": items}


def test_propensities_travel_through_the_cache():
    items = [{"item_id": i, "score": 1.0, "reason": None} for i in ("a", "b", "c")]
    explored = explore_payload(items, [(f"x{i}", 0.1) for i in range(10)], slots=1, key="r1")
    entry = CachedList.from_payload(_payload(explored))
    assert entry.propensities == tuple(it["propensity"] for it in explored)
    again = CachedList.from_redis(entry.redis_value)
    assert again.propensities == entry.propensities and again.items == entry.items
    plain = CachedList.from_payload(_payload(items))
    assert plain.propensities is None and b"propensity" not in plain.redis_value  # unchanged bytes when off


def test_impressions_log_the_propensity():
    ts = datetime.now(timezone.utc)
    events = impression_events("r-1", "u1", "popularity", ["a", "b"], ts, (0.8, 0.02))
    parsed = [Interaction.model_validate(orjson.loads(e.to_json())) for e in events]
    assert [e.context.propensity for e in parsed] == [0.8, 0.02]
    assert [e.context.propensity for e in impression_events("r-2", "u1", "p", ["a"], ts)] == [1.0]
    with pytest.raises(ValueError):
        impression_events("r-3", "u1", "p", ["a", "b"], ts, (0.5,))


def test_queued_lists_become_records_with_propensities():
    broker = Broker(Settings(kafka_bootstrap=None))
    broker.queue_impressions("r-1", "u1", "popularity", ("a", "b"), (0.9, 0.05))
    broker.queue_impressions("r-2", "u1", "popularity", ("c",))
    broker.queue_impressions("r-3", "bad user!", "popularity", ("d",), (0.5,))  # fails validation: skipped
    records = list(broker._records(list(broker._impressions), datetime.now(timezone.utc)))
    ctx = [orjson.loads(v)["context"] for _, v in records]
    assert [(c["request_id"], c["propensity"]) for c in ctx] == [("r-1", 0.9), ("r-1", 0.05), ("r-2", 1.0)]


def test_a_bandit_lists_propensities_include_the_arms_chance():
    broker = Broker(Settings(kafka_bootstrap=None))
    broker.queue_impressions("r-1", "u1", "hybrid", ("a", "b"), None, 0.8)
    broker.queue_impressions("r-2", "u1", "hybrid", ("c", "d"), (1.0, 0.1), 0.5)
    records = list(broker._records(list(broker._impressions), datetime.now(timezone.utc)))
    got = [orjson.loads(v)["context"]["propensity"] for _, v in records]
    assert got == pytest.approx([0.8, 0.8, 0.5, 0.05])


def test_an_experiment_arms_impressions_name_the_experiment_and_the_arm():
    broker = Broker(Settings(kafka_bootstrap=None))
    broker.queue_impressions("r-1", "u1", "home-test.treatment", ("a",), experiment=True)
    broker.queue_impressions("r-2", "u1", "popularity", ("b",))
    records = list(broker._records(list(broker._impressions), datetime.now(timezone.utc)))
    ctx = [orjson.loads(v)["context"] for _, v in records]
    assert [(c["strategy"], c.get("experiment"), c.get("arm")) for c in ctx] == [
        ("home-test.treatment", "home-test", "treatment"), ("popularity", None, None)]
