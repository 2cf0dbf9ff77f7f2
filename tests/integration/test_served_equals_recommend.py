"""What is served is what is evaluated: events through the broker and a real worker, `streamrec
train --promote` from the replayed topic, then the API's default home list and `streamrec
recommend` for the same run and state agree item for item, for 100 users."""
import json
from pathlib import Path

import httpx
import pytest
import redis

from schemas.keys import Keys
from tests.integration.support import Worker, produce_events, stream_settings, synthetic_events, uvicorn_thread, wait_until

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"
N_USERS = 120


@pytest.fixture
def stack(services, tmp_path):
    s = stream_settings(services, tmp_path, artifact_dir=tmp_path / "artifacts")
    worker = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        yield s
    finally:
        worker.stop()


def cli(settings, monkeypatch, *args: str):
    from typer.testing import CliRunner

    from infra.cli import app
    from schemas.settings import get_settings

    for k in ("kafka_bootstrap", "redis_url", "topic_prefix", "redis_prefix", "data_dir", "artifact_dir"):
        monkeypatch.setenv(f"STREAMREC_{k.upper()}", str(getattr(settings, k)))
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, list(args))
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    return res


def test_api_default_list_equals_streamrec_recommend(stack, monkeypatch, tmp_path):
    s = stack
    events, _ = synthetic_events(n_users=N_USERS, n_items=60, per_user=14, seed=3)
    produce_events(s, [{"event_id": f"e{n}", "type": "click", "user_id": r.user_id, "item_id": r.item_id,
                        "ts": float(r.timestamp), "context": {}} for n, r in enumerate(events.itertuples())])
    r = redis.Redis.from_url(s.redis_url)
    keys = Keys(s.redis_prefix)
    want = events.groupby("user_id")["item_id"].nunique()
    wait_until(lambda: all(r.scard(keys.seen(u)) == n for u, n in want.items()), timeout=60)

    res = cli(s, monkeypatch, "train", "-m", "ease", "-m", "itemknn", "--promote", "--no-progress")
    run = Path(res.stdout.strip().splitlines()[-1])
    assert (s.artifact_dir / "run_current").resolve() == run
    policy = json.loads((run / "policy.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert "policy" in metrics["validation"] and policy["components"]

    users = sorted(want.index)[:100]
    ufile = tmp_path / "users.txt"
    ufile.write_text("\n".join(users) + "\n")
    out = tmp_path / "recs.jsonl"
    cli(s, monkeypatch, "recommend", "--users", str(ufile), "--k", "10", "--out", str(out))
    offline = {d["user_id"]: d["items"] for d in map(json.loads, out.read_text().splitlines())}

    with uvicorn_thread(s) as base, httpx.Client(base_url=base, timeout=30) as c:
        served = {}
        for u in users:
            body = c.get(HOME, params={"user_id": u, "k": 10}).json()
            assert body["strategy"] == policy["name"] and body["model_version"] == run.name
            served[u] = [i["item_id"] for i in body["items"]]
    assert len(served) == 100
    differ = {u: (served[u], offline[u]) for u in users if served[u] != offline[u]}
    assert not differ, f"{len(differ)} users differ, e.g. {next(iter(differ.items()))}"
    assert all(len(v) == 10 for v in served.values())
