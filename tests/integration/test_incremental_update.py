"""Warm-start updates through the real broker and Redis: a run trained and promoted from the
replayed topic; new events arrive (a new item, liked by the users of one taste); `streamrec train
--incremental --promote` replays them, updates the serving run from its snapshot offsets, passes
the promotion gate, and the API serves the new item in model-based lists."""
import json
from pathlib import Path

import httpx
import pytest
import redis

from schemas.keys import Keys
from tests.integration.support import produce_clicks_until_seen, produce_events, synthetic_events, uvicorn_thread, wait_until
from tests.integration.test_served_equals_recommend import cli, stack  # noqa: F401 - the worker fixture

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"
MODELS = ["-m", "ease", "-m", "multvae", "-p", "multvae.epochs=20", "-p", "multvae.ensemble=1",
          "-p", "multvae.warm_epochs=20"]


def test_new_events_update_the_serving_run_and_the_api_serves_the_new_item(stack, monkeypatch):  # noqa: F811
    s = stack
    events, _ = synthetic_events(n_users=60, n_items=40, per_user=12, seed=5)
    produce_clicks_until_seen(s, events)
    r = redis.Redis.from_url(s.redis_url)
    keys = Keys(s.redis_prefix)
    first = Path(cli(s, monkeypatch, "train", *MODELS, "--promote", "--no-progress").stdout.strip().splitlines()[-1])
    assert (s.artifact_dir / "run_current").resolve() == first

    # users of taste 0 (u0, u5, ...) take up a new item; u0 and u5 have not seen it yet
    fans = [f"u{u}" for u in range(10, 60, 5)]
    new = [{"event_id": f"n{n}", "type": "click", "user_id": u, "item_id": "i_new", "ts": 1_800_000_000.0 + n,
            "context": {}} for n, u in enumerate(fans * 2)]
    produce_events(s, new)
    wait_until(lambda: all(r.sismember(keys.seen(u), "i_new") for u in fans), timeout=60)

    res = cli(s, monkeypatch, "train", "--incremental", "--promote", "--no-progress")
    update = Path(res.stdout.strip().splitlines()[-1])
    assert f"updated {first.name} with {len(new)} new events" in res.stdout
    metrics = json.loads((update / "metrics.json").read_text())
    assert metrics["incremental"]["models"]["multvae"].startswith("warm start")
    assert "i_new" in json.loads((update / "item_ids.json").read_text())
    assert (s.artifact_dir / "run_current").resolve() == update, res.stdout  # the gate let it through
    policy = json.loads((update / "policy.json").read_text())

    with uvicorn_thread(s) as base, httpx.Client(base_url=base, timeout=30) as c:
        lists = {}
        for u in ("u0", "u5"):
            body = c.get(HOME, params={"user_id": u, "k": 10}).json()
            assert body["strategy"] == policy["name"] and body["model_version"] == update.name
            lists[u] = [i["item_id"] for i in body["items"]]
    assert any("i_new" in items for items in lists.values()), lists
