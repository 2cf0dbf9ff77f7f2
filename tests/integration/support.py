"""Helpers of the integration tests that run a worker (no tests here): a worker child process, a producer,
a DLQ reader and polling. The worker runs as ``python -m streams`` configured only by STREAMREC_*."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from infra.stack import child_env, free_port, spawn, stop_process
from schemas.keys import Keys
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def stream_settings(services, tmp_path: Path, **overrides) -> Settings:  # noqa: ANN001
    """Settings of their own: topic prefix, consumer group and Redis key prefix, so a worker
    shared by a module's tests needs no flush (which would race with it)."""
    tag = uuid.uuid4().hex[:8]
    s = Settings(
        kafka_bootstrap=services.kafka_bootstrap, redis_url=services.redis_url, topic_prefix=f"s{tag}.",
        redis_prefix=f"s{tag}:", worker_id=f"streams-test-{tag}", data_dir=tmp_path / "data",
        worker_metrics_port=free_port(), **overrides,
    )
    from streams.admin import ensure_topics

    asyncio.run(ensure_topics(s))
    return s


def _env_value(v: object) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


class Worker:
    """One ``python -m streams`` child; ``ready()`` waits until it consumes every partition."""

    FIELDS = ("kafka_bootstrap", "redis_url", "topic_prefix", "redis_prefix", "worker_id", "data_dir",
              "worker_metrics_port", "pairs_top_n", "trend_half_life_s", "session_gap_s",
              "bandit_reward_window_s", "config_refresh_s", "batch_size", "recent_max")

    def __init__(self, settings: Settings, log: Path):
        self.settings, self.log = settings, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Worker":
        env = child_env(**{f: _env_value(getattr(self.settings, f)) for f in self.FIELDS})
        self.proc = spawn([sys.executable, "-m", "streams"], self.log, env=env, cwd=ROOT)
        return self

    def ready(self, timeout: float = 60) -> "Worker":
        """A catalog record reaches Redis: the group is joined and the agents run."""
        probe = f"probe-{uuid.uuid4().hex[:6]}"
        key = Keys(self.settings.redis_prefix).item(probe)
        r = redis.Redis.from_url(self.settings.redis_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.alive, f"worker exited:\n{self.log.read_text()[-3000:]}"
            for p in range(self.settings.topic_partitions):
                produce(self.settings, "catalog", [json.dumps({"item_id": probe, "title": "probe"}).encode()],
                        partition=p)
            if wait_until(lambda: r.exists(key), 3, raise_=False):
                r.delete(key)
                return self
        raise TimeoutError(f"worker not consuming after {timeout} s:\n{self.log.read_text()[-3000:]}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc)


def produce(settings: Settings, topic: str, values: list[bytes], partition: int | None = None) -> None:
    """Send raw records, keyed by user_id when the record has one (as the DESIGN says)."""

    async def go() -> None:
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
        await p.start()
        try:
            for v in values:
                try:
                    key = str(json.loads(v).get("user_id", "x")).encode()
                except (ValueError, AttributeError):
                    key = b"bad"
                await p.send(settings.topic(topic), v, key=key, partition=partition)
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(go())


def produce_events(settings: Settings, events: list[dict]) -> None:
    produce(settings, "interactions", [json.dumps(e).encode() for e in events])


async def consume(settings: Settings, topic: str = "interactions", want: int = 1, timeout_s: float = 15) -> list[dict]:
    """Read a topic from the start (no consumer group) until ``want`` JSON records or the timeout."""
    c = AIOKafkaConsumer(settings.topic(topic), bootstrap_servers=settings.kafka_bootstrap,
                         auto_offset_reset="earliest", group_id=None)
    await c.start()
    out: list[dict] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < deadline:
            got = await c.getmany(timeout_ms=500)
            out += [json.loads(m.value) for msgs in got.values() for m in msgs]
    finally:
        await c.stop()
    return out


def read_dlq(settings: Settings, expect: int, timeout: float = 30) -> list[dict]:
    return asyncio.run(consume(settings, "interactions.dlq", expect, timeout))


def wait_until(cond: Callable[[], object], timeout: float = 30, raise_: bool = True, every: float = 0.1):  # noqa: ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every)
    if raise_:
        raise TimeoutError(f"condition not met in {timeout} s")
    return None


def event(typ: str, user: str, item: str, ts: float | None = None, **ctx) -> dict:  # noqa: ANN003
    e = {"event_id": uuid.uuid4().hex, "type": typ, "user_id": user, "item_id": item,
         "ts": time.time() if ts is None else ts, "context": ctx}
    if typ == "rate":
        e["value"] = ctx.pop("value", 4)
    return e
