"""Several API processes: `streamrec api --workers N` serves on one port, and an admin change
made on one process (a basket-profile switch) reaches the others over Redis pub/sub."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infra.stack import child_env, free_port, stop_process

pytestmark = pytest.mark.integration


def _api(settings, tmp: Path, port: int, *args: str) -> subprocess.Popen:
    env = child_env(kafka_bootstrap=settings.kafka_bootstrap, redis_url=settings.redis_url,
                    topic_prefix=settings.topic_prefix, data_dir=str(tmp / "data"), artifact_dir=str(tmp / "artifacts"),
                    api_port=str(port), admin_key="replica-test", emit_impressions="false")
    with open(tmp / f"api-{port}.log", "wb") as log:  # the child holds its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "infra", "api", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the API exited"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} not healthy in {timeout} s")


def _profile(url: str) -> str:
    return httpx.get(f"{url}/version", timeout=5).json()["basket_profile"]


def test_a_profile_switch_on_one_process_reaches_the_others(settings, tmp_path):
    from inference.basket.profiles import load_profiles

    ports = free_port(), free_port()
    procs = [_api(settings, tmp_path, p) for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc in zip(urls, procs):
            _wait_healthy(url, proc)
        before = _profile(urls[1])
        other = next(n for n in sorted(load_profiles(None)) if n != before)
        got = httpx.post(f"{urls[0]}/admin/reload", json={"profile": other}, headers={"X-Admin-Key": "replica-test"})
        assert got.status_code == 200 and got.json()["replicas_told"] is True
        deadline = time.monotonic() + 5
        while _profile(urls[1]) != other and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _profile(urls[1]) == other  # the other process switched, within a second or so
    finally:
        for proc in procs:
            stop_process(proc)


def test_workers_serve_on_one_port(settings, tmp_path):
    port = free_port()
    proc = _api(settings, tmp_path, port, "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        answers = [httpx.get(f"{url}/api/v1/recommendations/home", params={"user_id": f"u{i}", "k": 3}, timeout=10)
                   for i in range(20)]
        assert all(a.status_code == 200 for a in answers)
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) >= 2  # uvicorn's supervisor and its two worker processes
    finally:
        stop_process(proc)
