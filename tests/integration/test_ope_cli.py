"""Off-policy estimates end to end: events through the real broker and a worker, a trained run
promoted, home lists served by the API with exploration on (their impressions log propensities
through the broker), clicks simulated with a known click model, then `streamrec ope --replay`
estimates the run's CTR. The impressions' propensities in the replayed snapshot are the ones the
API returned, and every estimator's interval holds the true CTR of the run's list."""
import hashlib
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis

from schemas.keys import Keys
from tests.integration.support import Worker, produce_events, stream_settings, synthetic_events, uvicorn_thread, wait_until
from tests.integration.test_served_equals_recommend import cli

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"
N_USERS = 150
K = 5


def click_probability(item: str) -> float:
    """The simulated users' click model: a fixed half of the items is attractive (no position effect)."""
    return 0.5 if hashlib.sha256(item.encode()).digest()[0] % 2 else 0.1


@pytest.fixture
def stack(services, tmp_path):
    s = stream_settings(services, tmp_path, artifact_dir=tmp_path / "artifacts")
    worker = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        yield s
    finally:
        worker.stop()


def test_ope_on_traffic_served_with_exploration(stack, monkeypatch, tmp_path):
    s = stack
    events, _ = synthetic_events(n_users=N_USERS, n_items=40, per_user=10, seed=5)
    produce_events(s, [{"event_id": f"e{n}", "type": "click", "user_id": r.user_id, "item_id": r.item_id,
                        "ts": float(r.timestamp), "context": {}} for n, r in enumerate(events.itertuples())])
    r = redis.Redis.from_url(s.redis_url)
    keys = Keys(s.redis_prefix)
    want = events.groupby("user_id")["item_id"].nunique()
    wait_until(lambda: all(r.scard(keys.seen(u)) == n for u, n in want.items()), timeout=60)
    res = cli(s, monkeypatch, "train", "-m", "ease", "--promote", "--no-progress")
    run = Path(res.stdout.strip().splitlines()[-1])

    users = sorted(want.index)
    (tmp_path / "users.txt").write_text("\n".join(users) + "\n")
    out = tmp_path / "recs.jsonl"
    cli(s, monkeypatch, "recommend", "--users", str(tmp_path / "users.txt"), "--k", str(K), "--out", str(out))
    deterministic = {d["user_id"]: d["items"] for d in map(json.loads, out.read_text().splitlines())}

    served = s.model_copy(update={"explore_epsilon": 0.5, "explore_pool": 8, "emit_impressions": True,
                                  "impression_max_lists_per_s": 100_000})  # none shed: every list is logged
    rng = np.random.default_rng(0)
    responses, clicks = {}, []
    with uvicorn_thread(served) as base, httpx.Client(base_url=base, timeout=30) as c:
        for u in users:
            body = c.get(HOME, params={"user_id": u, "k": K}).json()
            assert len(body["items"]) == K and all(0 < it["propensity"] <= 1 for it in body["items"])
            responses[body["request_id"]] = body
            for pos, it in enumerate(body["items"]):
                if rng.random() < click_probability(it["item_id"]):
                    clicks.append({"event_id": f"c-{body['request_id']}-{pos}", "type": "click", "user_id": u,
                                   "item_id": it["item_id"], "context": {"request_id": body["request_id"], "position": pos}})
        explored = sum(it["propensity"] < 1 for b in responses.values() for it in b["items"])
        assert explored > 0
    produce_events(s, clicks)

    res = cli(s, monkeypatch, "ope", "--run", str(run), "--replay", "--json", "--alpha", "0.001")
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["requests"] == N_USERS and got["impressions"] == N_USERS * K
    assert got["rewards"] == len(clicks)
    assert got["explored_share"] == pytest.approx(explored / (N_USERS * K))
    est = got["estimates"]
    assert est["logged"]["value"] == pytest.approx(len(clicks) / (N_USERS * K))

    # the snapshot's impressions carry exactly the propensities the API answered with
    from trainer.data.snapshot import Snapshot

    frame = Snapshot(s.snapshot_path()).frame()
    imp = frame[frame["type"] == "impression"]
    logged = {(row.request_id, int(row.position)): row.propensity for row in imp.itertuples()}
    for rid, body in responses.items():
        for pos, it in enumerate(body["items"]):
            assert logged[(rid, pos)] == pytest.approx(it["propensity"])

    # the truth: the run's deterministic list under the click model, per served request
    truth = float(np.mean([np.mean([click_probability(i) for i in deterministic[b["user_id"]]])
                           for b in responses.values()]))
    for name in ("ips", "snips", "dr"):
        lo, hi = est[name]["ci"]
        assert lo <= truth <= hi, (name, truth, est[name])
        assert est[name]["matched"] > 0
