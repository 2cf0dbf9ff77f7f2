"""The walking skeleton end to end: 1,000 events through the real broker, a worker process
and an API process into Redis and back out as served recommendations."""
from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from infra.stack import child_env, free_port, spawn, stop_process
from schemas.keys import Keys
from tests.integration.support import produce, produce_events, read_dlq, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def running(settings, tmp_path: Path):
    """A worker and an API as child processes, configured only through STREAMREC_* settings."""
    port = free_port()
    env = child_env(kafka_bootstrap=settings.kafka_bootstrap, redis_url=settings.redis_url,
                    topic_prefix=settings.topic_prefix, worker_id=settings.worker_id,
                    data_dir=str(tmp_path / "data"), artifact_dir=str(tmp_path / "artifacts"),
                    api_port=str(port), emit_impressions="false", admin_key="skeleton-test")
    worker = spawn([sys.executable, "-m", "streams"], tmp_path / "worker.log", env=env)
    api = spawn([sys.executable, "-m", "inference"], tmp_path / "api.log", env=env)
    url = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 60)
        yield url, worker
    finally:
        stop_process(api)
        stop_process(worker)
        for name in ("worker", "api"):
            log = tmp_path / f"{name}.log"
            if log.exists():
                sys.stderr.write(f"--- {name}.log (tail) ---\n{log.read_text()[-3000:]}\n")


def _events(tag: str) -> list[dict]:
    """1,000 views: item j is seen by 100 - 10j... users, a known popularity order."""
    evs = []
    items = [f"e2e{tag}-{j}" for j in range(10)]
    for j, item in enumerate(items):
        for u in range(190 - 20 * j):  # 190, 170, ..., 10 views = 1,000
            evs.append({"event_id": uuid.uuid4().hex, "type": "view", "user_id": f"u{tag}-{u}", "item_id": item,
                        "ts": time.time(), "context": {}})
    assert len(evs) == 1000
    return evs


def test_events_flow_to_served_recommendations(settings, running, redis_client):
    url, worker = running
    keys = Keys(settings.redis_prefix)
    tag = uuid.uuid4().hex[:6]
    events = _events(tag)
    bad = [b"{not json", orjson.dumps({"type": "view"}), orjson.dumps({**events[0], "event_id": "x", "type": "teleport"})]
    produce_events(settings, events)
    produce(settings, "interactions", bad)

    # popularity in Redis matches exactly
    def pop_total():
        total = sum(s for _, s in redis_client.zrange(keys.pop_global, 0, -1, withscores=True))
        return total if total >= 1000 else None

    assert wait_until(pop_total, 60) == 1000
    expected = {f"e2e{tag}-{j}": 190 - 20 * j for j in range(10)}
    got = dict(redis_client.zrange(keys.pop_global, 0, -1, withscores=True))
    assert got == {k: float(v) for k, v in expected.items()}

    # the served list follows popularity for a fresh user ...
    body = httpx.get(f"{url}/api/v1/recommendations/home", params={"user_id": f"fresh{tag}", "k": 5}).json()
    assert [i["item_id"] for i in body["items"]] == [f"e2e{tag}-{j}" for j in range(5)]
    assert body["request_id"] and body["cached"] is False
    again = httpx.get(f"{url}/api/v1/recommendations/home", params={"user_id": f"fresh{tag}", "k": 5}).json()
    assert again["cached"] is True and again["items"] == body["items"]

    # ... and excludes what a user has seen (user 0 saw every item; user 150 saw the first 3)
    served = [i["item_id"] for i in httpx.get(f"{url}/api/v1/recommendations/home",
                                              params={"user_id": f"u{tag}-150", "k": 5}).json()["items"]]
    assert served[:5] == [f"e2e{tag}-{j}" for j in range(2, 7)]
    assert not set(served) & {f"e2e{tag}-0", f"e2e{tag}-1"}

    # a new event for that user invalidates the cached list
    produce_events(settings, [{"event_id": uuid.uuid4().hex, "type": "click", "user_id": f"u{tag}-150",
                               "item_id": f"e2e{tag}-2", "ts": time.time()}])

    def refreshed():
        items = httpx.get(f"{url}/api/v1/recommendations/home", params={"user_id": f"u{tag}-150", "k": 5}).json()["items"]
        return f"e2e{tag}-2" not in [i["item_id"] for i in items]

    wait_until(refreshed, 10)

    # three different bad records land in the DLQ with a reason; the worker stays alive
    dlq = read_dlq(settings, 3)
    assert len(dlq) == 3
    assert all(d.get("reason") for d in dlq)
    assert worker.poll() is None
    assert httpx.get(f"{url}/healthz").status_code == 200
