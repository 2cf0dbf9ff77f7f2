"""Promotion on the real services: sr:model:current in Redis and a ModelUpdate on model-updates;
the scheduler end to end (topic → replay → train → promote, counter consumed)."""
from __future__ import annotations

import asyncio
import json
import threading
import time

import pandas as pd
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.catalog import ModelUpdate
from schemas.keys import Keys
from trainer.artifacts import current_run, new_run_dir, save_run
from trainer.data.interactions import Interactions
from trainer.models import make_model
from trainer.promotion import promote, rollback
from trainer.scheduler import Scheduler, run_scheduler

pytestmark = pytest.mark.integration

DATA = Interactions.from_events(pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]}))


def make_run(settings, ndcg: float, tag: str):
    metrics = {"primary": "ndcg@10", "validation": {"popularity": {"ndcg@10": ndcg}}, "best_model": "popularity"}
    return save_run(new_run_dir(settings.artifact_dir, tag), {"popularity": make_model("popularity").fit(DATA)}, metrics)


def model_updates(settings, expected: int) -> list[ModelUpdate]:
    async def go():
        c = AIOKafkaConsumer(settings.topic("model-updates"), bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", group_id=None)
        await c.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + 10
            while len(got) < expected and time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=500)
                got += [m.value for msgs in batch.values() for m in msgs]
        finally:
            await c.stop()
        return got

    return [ModelUpdate.model_validate_json(v) for v in asyncio.run(go())]


def test_promotion_writes_model_current_and_publishes(settings, redis_client):
    key = Keys(settings.redis_prefix).model_current
    first = make_run(settings, 0.30, "a")
    res = promote(settings, first)
    assert res.promoted and res.notified == ["redis", "kafka"] and not res.warnings
    stored = redis_client.hgetall(key)
    assert stored["run_id"] == first.name and stored["action"] == "promote"
    assert json.loads(stored["metrics"])["ndcg@10"] == 0.30
    assert json.loads(stored["models"]) == ["popularity"]

    worse = make_run(settings, 0.10, "b")
    assert not promote(settings, worse).promoted
    assert redis_client.hget(key, "run_id") == first.name  # a refusal changes nothing

    better = make_run(settings, 0.50, "c")
    assert promote(settings, better).promoted
    assert redis_client.hget(key, "run_id") == better.name

    back = rollback(settings)
    assert back.run_id == first.name
    assert redis_client.hget(key, "run_id") == first.name and redis_client.hget(key, "action") == "rollback"

    updates = model_updates(settings, 3)
    assert [u.run_id for u in updates] == [first.name, better.name, first.name]
    assert updates[1].metrics["ndcg@10"] == 0.50 and updates[1].run_dir == str(better.resolve())


def produce_events(settings, n_users: int = 12, per_user: int = 6) -> int:
    async def go():
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await p.start()
        try:
            for u in range(n_users):
                for j in range(per_user):
                    ev = {"event_id": f"s{u}-{j}", "type": "click", "user_id": f"u{u}",
                          "item_id": f"i{(u + j) % 10}", "ts": 1_700_000_000 + u * 10 + j}
                    await p.send_and_wait(settings.topic("interactions"), json.dumps(ev).encode(), key=f"u{u}".encode())
        finally:
            await p.stop()

    asyncio.run(go())
    return n_users * per_user


def test_scheduler_retrains_on_new_events_and_consumes_the_counter(settings, redis_client):
    s = settings.model_copy(update={"retrain_models": ["popularity"], "retrain_interval_s": 3600.0,
                                    "retrain_min_new_events": 50})
    keys = Keys(s.redis_prefix)
    sched = Scheduler(s)
    assert sched.check() == "no run yet"
    out = sched.retrain("test")
    assert out.run_dir is None and "nothing to train on" in out.message  # empty topic: no crash

    n = produce_events(s)
    redis_client.set(keys.new_events, n)
    out = sched.retrain("test")
    assert out.run_dir is not None and out.promoted
    assert current_run(s.artifact_dir) == out.run_dir.resolve()
    assert redis_client.hget(keys.model_current, "run_id") == out.run_dir.name
    assert int(redis_client.get(keys.new_events)) == 0
    versions = json.loads((out.run_dir / "versions.json").read_text())
    assert sum(versions["snapshot_offsets"][s.topic("interactions")].values()) == n

    assert sched.check() is None  # just trained, no new events
    redis_client.set(keys.new_events, 51)
    assert "51 new events" in sched.check()
    # counted by the worker but already in the snapshot: nothing to retrain, the counter moves
    again = sched.retrain(sched.check())
    assert again.run_dir is None and "no new interactions" in again.message
    assert int(redis_client.get(keys.new_events)) == 0 and sched.check() is None


def test_run_scheduler_loop_trains_then_stops(settings):
    s = settings.model_copy(update={"retrain_models": ["popularity"], "retrain_interval_s": 3600.0})
    produce_events(s, n_users=5, per_user=4)
    stop = threading.Event()
    worker = threading.Thread(target=run_scheduler, args=(s,), kwargs={"stop": stop, "poll_s": 0.2}, daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while current_run(s.artifact_dir) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert current_run(s.artifact_dir) is not None
