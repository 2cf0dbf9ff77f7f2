"""Faults, each against the real broker and Redis: Redis restarted (AOF) under a running
worker, and an API process killed under load while another keeps answering."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from infra.stack import child_env, free_port, redis_binary, redis_ready, spawn, stop_process
from schemas.keys import Keys
from tests.integration.support import Worker, event, produce_events, stream_settings, wait_until

pytestmark = pytest.mark.integration


def popsum(r: redis.Redis, k: Keys) -> float:
    return sum(s for _, s in r.zrange(k.pop_global, 0, -1, withscores=True))


def _redis(port: int, folder: Path) -> subprocess.Popen:
    proc = spawn([redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                  "--appendonly", "yes", "--appendfsync", "always", "--save", ""], folder / "redis.log")
    redis_ready(f"redis://127.0.0.1:{port}/0")
    return proc


def test_redis_restarted_with_aof_mid_stream_counts_stay_exact(services, tmp_path):
    port = free_port()
    folder = tmp_path / "redis"
    folder.mkdir()
    server = _redis(port, folder)
    s = stream_settings(services, tmp_path).model_copy(update={"redis_url": f"redis://127.0.0.1:{port}/0",
                                                               "batch_size": 200})
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
    n = 6000
    events = [event("view", f"fu-{j % 300}", f"fi-{j % 100}") for j in range(n)]
    w = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        produce_events(s, events[: n // 2])
        wait_until(lambda: popsum(r, k) > 0, 60, every=0.01)
        server.send_signal(signal.SIGTERM)  # a restart: Redis writes its AOF and exits
        server.wait(20)
        produce_events(s, events[n // 2:])  # arrives while Redis is down
        time.sleep(2)
        server = _redis(port, folder)
        r = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        wait_until(lambda: popsum(r, k) >= n, 120)
        time.sleep(2)  # any batch retried after the restart has landed: the sum must stay n
        assert popsum(r, k) == n
        assert int(r.get(k.new_events)) == n
        assert w.alive
    finally:
        w.stop()
        stop_process(server)


def test_an_api_process_killed_under_load_leaves_the_others_answering(settings, tmp_path):
    def api(port: int) -> subprocess.Popen:
        env = child_env(kafka_bootstrap=settings.kafka_bootstrap, redis_url=settings.redis_url,
                        topic_prefix=settings.topic_prefix, data_dir=str(tmp_path / "data"),
                        artifact_dir=str(tmp_path / "artifacts"), api_port=str(port), admin_key="k",
                        emit_impressions="false")
        return spawn([sys.executable, "-m", "inference"], tmp_path / f"api-{port}.log", env=env)

    ports = free_port(), free_port()
    procs = [api(p) for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url in urls:
            wait_until(lambda u=url: _ok(u), 60)
        home = "/api/v1/recommendations/home"
        with httpx.Client(timeout=5) as client:
            for i in range(50):  # load on both
                for url in urls:
                    assert client.get(url + home, params={"user_id": f"k{i}", "k": 3}).status_code == 200
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(10)
            answers = [client.get(urls[1] + home, params={"user_id": f"after{i}", "k": 3}) for i in range(100)]
        assert all(a.status_code == 200 for a in answers)
    finally:
        for proc in procs:
            stop_process(proc)


def _ok(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


OUTAGE_S = 30  # the outage: the broker stopped for 30 s mid-stream


def _broker(port: int, log: Path) -> subprocess.Popen:
    import asyncio

    from infra.stack import broker_binary, broker_ready

    url = f"tcp://127.0.0.1:{port}"
    proc = spawn([broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
                  "--storage-engine", "memory://tansu/"], log)
    asyncio.run(broker_ready(f"127.0.0.1:{port}"))
    return proc


def test_the_broker_stopped_mid_stream_producers_get_503_and_nothing_is_lost(services, tmp_path):
    """A broker of its own is stopped for OUTAGE_S while a producer keeps posting events: the API
    answers 503 with Retry-After (the producer keeps those events and retries), and once the
    broker is back — the embedded Tansu keeps topics in memory, so it comes back empty and the
    topics are created again, as `streamrec up` does — the worker resumes: every accepted event is
    counted exactly once."""
    import asyncio

    from streams.admin import ensure_topics
    from tests.integration.support import uvicorn_thread

    port = free_port()
    broker = _broker(port, tmp_path / "broker.log")
    s = stream_settings(services, tmp_path).model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}",
                                                               "emit_impressions": False, "admin_key": "k"})
    asyncio.run(ensure_topics(s))
    k, r = Keys(s.redis_prefix), redis.Redis.from_url(s.redis_url)
    events = [event("view", f"bu-{j % 50}", f"bi-{j % 20}") for j in range(600)]
    pending, accepted, refused = list(events), 0, []
    w = Worker(s, tmp_path / "worker.log").start().ready()
    try:
        with uvicorn_thread(s) as url, httpx.Client(base_url=url, timeout=10) as client:
            def send(n: int) -> None:
                nonlocal accepted
                batch = pending[:n]
                got = client.post("/api/v1/events", json=batch)
                if got.status_code == 202:
                    del pending[:n]
                    accepted += len(batch)
                else:
                    assert got.status_code == 503, got.text
                    refused.append(got.headers.get("Retry-After"))

            for _ in range(10):
                send(20)
            wait_until(lambda: popsum(r, k) == accepted, 60)
            broker.kill()  # the broker goes away mid-stream
            broker.wait(10)
            stopped = time.monotonic()
            while time.monotonic() - stopped < OUTAGE_S:
                send(20)
                time.sleep(1)
            assert refused and all(ra and int(ra) > 0 for ra in refused), refused
            broker = _broker(port, tmp_path / "broker-2.log")
            asyncio.run(ensure_topics(s))
            deadline = time.monotonic() + 120
            while pending and time.monotonic() < deadline:
                send(50)
                if pending:
                    time.sleep(1)
            assert not pending, f"{len(pending)} events still refused after the broker came back"
            wait_until(lambda: popsum(r, k) >= len(events), 120)
            time.sleep(2)  # nothing counted twice after the resume
            assert popsum(r, k) == len(events) == accepted
            assert w.alive
    finally:
        w.stop()
        stop_process(broker)
