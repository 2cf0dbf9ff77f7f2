"""The scheduler's warm-start updates, live, through the real broker, Redis, worker and API (issue 17).

A run trained and promoted from the replayed topic serves, and the API is already up. New events
arrive: a new item, liked by the users of one taste. The scheduler, on a short update schedule
(an update once that many new events are counted; no full retrain due), replays them, updates the
serving run warm from its snapshot offsets, passes the promotion gate and promotes it; the API
that was running all along reloads it from ``model-updates`` and serves the new item in the
policy's home lists for users who never saw it. ``test_incremental_update`` covers the same
through ``streamrec train --incremental --promote`` by hand; this one is the schedule."""
import json
import threading
from pathlib import Path

import httpx
import pytest
import redis

from schemas.keys import Keys
from tests.integration.support import produce_clicks_until_seen, produce_events, synthetic_events, uvicorn_thread, wait_until
from tests.integration.test_incremental_update import MODELS  # the same small serving run, updated by hand there
from tests.integration.test_served_equals_recommend import cli, stack  # noqa: F401 - the worker fixture

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"


def test_the_scheduler_updates_the_serving_run_and_the_running_api_serves_it(stack, monkeypatch):  # noqa: F811
    from trainer.scheduler import Scheduler

    s = stack
    events, _ = synthetic_events(n_users=60, n_items=40, per_user=12, seed=5)
    produce_clicks_until_seen(s, events)
    r = redis.Redis.from_url(s.redis_url)
    keys = Keys(s.redis_prefix)
    first = Path(cli(s, monkeypatch, "train", *MODELS, "--promote", "--no-progress").stdout.strip().splitlines()[-1])
    assert (s.artifact_dir / "run_current").resolve() == first

    fans = [f"u{u}" for u in range(10, 60, 5)]  # taste 0 takes up i_new; u0 and u5 have not seen it
    new = [{"event_id": f"n{n}", "type": "click", "user_id": u, "item_id": "i_new", "ts": 1_800_000_000.0 + n,
            "context": {}} for n, u in enumerate(fans * 2)]
    # updates only: one is due once the new events are counted; a full retrain never is
    schedule = s.model_copy(update={"retrain_interval_s": 1e9, "retrain_min_new_events": 10**9,
                                    "retrain_min_new_feedback": 10**9, "update_interval_s": 0.0,
                                    "update_min_new_events": len(new), "retrain_max_delay_s": 0.0,
                                    "monitor_interval_s": 1e9})
    stop = threading.Event()
    scheduler = Scheduler(schedule)
    loop = threading.Thread(target=scheduler.run, args=(stop, 0.5), daemon=True)
    # the API's impressions are new records in the log too: an update that found them (and not the
    # clicks below) trained on the same interactions, tied the serving run and was refused by the gate
    # (seen once in the full suite); this test is about the clicks
    api = s.model_copy(update={"emit_impressions": False})
    with uvicorn_thread(api) as base, httpx.Client(base_url=base, timeout=30) as c:
        assert c.get(HOME, params={"user_id": "u0", "k": 10}).json()["model_version"] == first.name
        loop.start()
        try:
            # the scheduler's first pass: the monitor looks (once: its interval is long), then the clicks
            # counted so far make an update due that finds nothing new in the log. An update racing the
            # new events could be promoted without them (and the next one refused by the gate), and a
            # look reads the topic's end while the API's impressions arrive: the new events and the
            # traffic start after that pass.
            wait_until(lambda: r.exists(keys.monitor_last) and scheduler.state().get("last_update_at"), timeout=120)
            produce_events(s, new)

            def served() -> dict | None:
                for u in ("u0", "u5"):
                    body = c.get(HOME, params={"user_id": u, "k": 10}).json()
                    if body["model_version"] != first.name and "i_new" in [i["item_id"] for i in body["items"]]:
                        return body
                return None

            body = wait_until(served, timeout=300, every=1.0, raise_=False)
            assert body, (scheduler.state(), (s.artifact_dir / "run_current").resolve().name,
                          c.get(HOME, params={"user_id": "u0", "k": 10}).json())
        finally:
            stop.set()
            loop.join(120)
    assert not loop.is_alive()
    update = (s.artifact_dir / "run_current").resolve()
    assert body["model_version"] == update.name and update.name.endswith("_update")
    policy = json.loads((update / "policy.json").read_text())
    assert body["strategy"] == policy["name"]  # the champion policy's list, not a popularity fallback
    metrics = json.loads((update / "metrics.json").read_text())
    assert metrics["incremental"]["base_run"] == first.name
    assert metrics["incremental"]["models"]["multvae"].startswith("warm start")
    assert "i_new" in json.loads((update / "item_ids.json").read_text())
    state = scheduler.state()
    assert state.get("last_update_at") and "last_run" not in state  # updates only, no full retrain
