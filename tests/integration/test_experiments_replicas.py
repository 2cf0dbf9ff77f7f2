"""Two API processes (`streamrec api`) on one Redis: an experiment created on one is served by the
other within a second or so (control channel, no restart), every user gets the same arm from
both, and the same arm again after a process restarts."""
from __future__ import annotations

import time

import httpx
import pytest

from infra.stack import free_port, stop_process
from tests.integration.test_api_replicas import _api, _wait_healthy

pytestmark = pytest.mark.integration

ADMIN = {"X-Admin-Key": "replica-test"}
USERS = [f"user-{i}" for i in range(40)]


def _arms(url: str) -> dict[str, str | None]:
    out = {}
    for u in USERS:
        body = httpx.get(f"{url}/api/v1/recommendations/home", params={"user_id": u, "k": 3}, timeout=10).json()
        out[u] = body.get("arm")
    return out


def test_assignment_is_the_same_across_replicas_and_restarts(settings, tmp_path):
    ports = free_port(), free_port()
    procs = [_api(settings, tmp_path, p) for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc in zip(urls, procs):
            _wait_healthy(url, proc)
        assert set(_arms(urls[1]).values()) == {None}
        body = {"name": "replicas", "arms": [{"name": "control", "share": 0.5, "strategy": "popularity"},
                                             {"name": "treatment", "share": 0.5, "strategy": "popularity",
                                              "params": {"fill": False}}]}
        got = httpx.post(f"{urls[0]}/admin/experiments", json=body, headers=ADMIN, timeout=10)
        assert got.status_code == 201, got.text
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5:  # the other process learns it from the control channel
            if httpx.get(f"{urls[1]}/api/v1/experiments", timeout=5).json()["running"] == ["replicas"]:
                break
            time.sleep(0.05)
        took = time.monotonic() - t0
        assert took < 1.5, f"the second replica served the experiment after {took:.2f} s"
        first, second = _arms(urls[0]), _arms(urls[1])
        assert first == second and set(first.values()) == {"control", "treatment"}

        stop_process(procs[1])
        procs[1] = _api(settings, tmp_path, ports[1])
        _wait_healthy(urls[1], procs[1])
        assert _arms(urls[1]) == first  # sticky across a restart
    finally:
        for p in procs:
            stop_process(p)
