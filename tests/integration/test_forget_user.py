"""Forget a user, end to end against the real broker and Redis: the worker process, the API's
``DELETE /api/v1/users/{id}`` and footprint, ``streamrec forget``, and the replay that the next
training run reads."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
import redis

from infra.stack import child_env
from schemas.keys import Keys
from trainer.data.interactions import Interactions
from trainer.data.snapshot import Snapshot
from trainer.replay import replay
from tests.integration.support import (
    ROOT, Worker, api_client, event, produce, produce_events, stream_settings, wait_until,
)

pytestmark = pytest.mark.integration

ADMIN = {"X-Admin-Key": "forget-test-key"}


def history(user: str, n: int = 6) -> list[dict]:
    now = time.time() - 60
    evs = [event("impression", user, f"fi{j}", now + j, strategy="hybrid") for j in range(n)]
    evs += [event("view", user, f"fi{j}", now + j + 0.5) for j in range(n)]
    evs += [event("click", user, "fi0", now + 10, strategy="hybrid"),
            event("like", user, "fi1", now + 11, strategy="hybrid"),
            event("rate", user, "fi2", now + 12, value=5, strategy="hybrid", comment=f"{user} liked it")]
    return evs


async def footprint(client, user: str) -> list[dict]:  # noqa: ANN001
    got = await client.get(f"/admin/users/{user}/footprint", headers=ADMIN)
    assert got.status_code == 200, got.text
    return got.json()["held"]


def test_forget_a_user_via_the_api_and_the_cli_leaves_no_trace_in_redis_or_the_snapshot(services, tmp_path) -> None:  # noqa: ANN001
    s = stream_settings(services, tmp_path, admin_key=ADMIN["X-Admin-Key"])
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url, decode_responses=True)
    w = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        produce(s, "users", [json.dumps({"user_id": u, "segment": "nurse"}).encode() for u in ("fu-gone", "fu-cli")])
        produce_events(s, history("fu-gone") + history("fu-kept") + history("fu-cli"))
        wait_until(lambda: r.hexists(k.user_segments, "fu-gone") and r.llen(k.comments) == 3
                   and all(r.scard(k.seen(u)) == 6 for u in ("fu-gone", "fu-kept", "fu-cli")), 60)
        replay(s)
        assert {"fu-gone", "fu-kept", "fu-cli"} <= set(Snapshot(s.snapshot_path()).frame()["user_id"])

        async def via_api() -> list[dict]:
            async with api_client(s) as (_, client):
                # a cached list of the user, as the API stores it
                assert (await client.get("/api/v1/recommendations/home?user_id=fu-gone&k=5")).status_code == 200
                held = await footprint(client, "fu-gone")
                assert (await client.delete("/api/v1/users/fu-gone")).status_code == 401  # admin only
                assert (await client.delete("/api/v1/users/not%20an%20id", headers=ADMIN)).status_code == 422
                answer = await client.delete("/api/v1/users/fu-gone", headers=ADMIN)
                assert answer.status_code == 202, answer.text
                deadline = time.monotonic() + 30
                while await footprint(client, "fu-gone"):
                    assert time.monotonic() < deadline, await footprint(client, "fu-gone")
                    await asyncio.sleep(0.2)
                return held

        held = asyncio.run(via_api())
        what = {h["what"].split(":")[0] for h in held}
        assert {"key of the user", "segment membership", "cached recommendation list"} <= what, held
        assert any("impression" in h["what"] for h in held) and any("comments" in h["what"] for h in held)
        # the other users keep everything
        assert r.scard(k.seen("fu-kept")) == 6 and r.llen(k.comments) == 2
        # a late event of the forgotten user, dated before the forget, does not bring them back
        produce_events(s, [event("view", "fu-gone", "fi9", time.time() - 30), event("view", "fu-kept", "fi9")])
        wait_until(lambda: r.sismember(k.seen("fu-kept"), "fi9"), 30)
        assert not r.exists(k.seen("fu-gone"))

        # the CLI does the same and waits for the worker
        env = child_env(kafka_bootstrap=s.kafka_bootstrap, redis_url=s.redis_url, topic_prefix=s.topic_prefix,
                        redis_prefix=s.redis_prefix, data_dir=str(s.data_dir))
        out = subprocess.run([sys.executable, "-m", "infra", "forget", "fu-cli", "--wait", "30"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Redis holds nothing of fu-cli" in out.stdout
        assert not r.exists(k.seen("fu-cli")) and not r.hexists(k.user_segments, "fu-cli")

        # the next replay drops the forgotten users' events and metadata: the next run has no trace
        result = replay(s)
        assert result.forgotten.keys() >= {"fu-gone", "fu-cli"} and result.forgotten_rows > 0
        snap = Snapshot(s.snapshot_path())
        users = set(snap.frame()["user_id"])
        assert "fu-gone" not in users and "fu-cli" not in users and "fu-kept" in users
        source = snap.read()  # what `streamrec train` reads
        assert not set(source.events["user_id"]) & {"fu-gone", "fu-cli"}
        assert source.user_meta is None or not set(source.user_meta.index) & {"fu-gone", "fu-cli"}
        data = Interactions.from_events(source.events)  # the training matrix: no row, no pair count from them
        assert "fu-gone" not in data.user_index and "fu-kept" in data.user_index
        assert "fu-gone" not in json.dumps(snap.manifest())  # only a digest is kept
        assert w.alive
    finally:
        w.stop()
