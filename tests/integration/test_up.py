"""`streamrec up` as a user runs it: healthy stack, a crashed child restarted, Ctrl-C leaves nothing."""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infra.importers import FORMATS
from infra.stack import child_env, free_port

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_up_supervises_and_stops_cleanly(tmp_path: Path):
    data = tmp_path / "data"
    port = free_port()
    env = child_env(data_dir=str(data), artifact_dir=str(tmp_path / "artifacts"))
    env.pop("STREAMREC_KAFKA_BOOTSTRAP", None)
    env.pop("STREAMREC_REDIS_URL", None)
    with open(tmp_path / "up.log", "wb") as log:  # the child holds its own copy of the descriptor
        up = subprocess.Popen([sys.executable, "-m", "infra", "up", "--no-scheduler", "--api-port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    stack_json = data / "stack.json"
    try:
        def healthy():
            if not stack_json.exists():
                return None
            stack = json.loads(stack_json.read_text())
            try:
                return stack if httpx.get(f"{stack['api_url']}/healthz", timeout=2).status_code == 200 else None
            except httpx.HTTPError:
                return None

        stack = _wait(healthy, 90, "a healthy stack")
        assert set(stack) >= {"kafka_bootstrap", "redis_url", "api_url", "pids"}
        pids = stack["pids"]
        assert all(_alive(pids[p]) for p in ("broker", "redis", "worker", "api"))

        # no admin key configured: `up` made one, readable by its owner only, and the API needs it
        key_file = data / "admin_key"
        assert key_file.stat().st_mode & 0o077 == 0
        admin = f"{stack['api_url']}/admin/models"
        assert httpx.get(admin, timeout=5).status_code == 401
        assert httpx.get(admin, headers={"X-Admin-Key": key_file.read_text().strip()}, timeout=5).status_code == 200
        assert key_file.read_text().strip() not in (tmp_path / "up.log").read_text()  # never printed

        # a crashed worker is restarted and stack.json names the new one
        os.kill(pids["worker"], signal.SIGKILL)
        new = _wait(lambda: (json.loads(stack_json.read_text())["pids"]["worker"]
                             not in (None, pids["worker"])) and json.loads(stack_json.read_text()), 30, "a restart")
        assert _alive(new["pids"]["worker"])

        # `streamrec import` finds the stack through stack.json
        f = tmp_path / "events.jsonl"
        f.write_text('{"type": "view", "user_id": "u1", "item_id": "i1"}\n{broken\n')
        out = subprocess.run([sys.executable, "-m", "infra", "import", str(f), "--format", "jsonl"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "sent 1 records" in out.stdout and "refused 1" in out.stdout

        pids = new["pids"]
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
    assert up.returncode == 0, (tmp_path / "up.log").read_text()[-2000:]
    left = [name for name, pid in pids.items() if pid and _alive(pid)]
    assert not left, f"left behind: {left}"
