"""Helpers of the integration tests (no tests here).

- Streams: a worker child process, a producer, a topic and DLQ reader, polling. The worker runs as
  ``python -m streams`` configured only by STREAMREC_*.
- API: the app in-process (ASGI, ``api_client``) or under a real uvicorn thread
  (``uvicorn_thread``), and a tiny trained run to serve (``train_tiny_run``).

Nothing here fakes Redis or the broker.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import AsyncIterator, Callable, Iterator

import numpy as np
import pandas as pd
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
    s = Settings(**{
        "kafka_bootstrap": services.kafka_bootstrap, "redis_url": services.redis_url, "topic_prefix": f"s{tag}.",
        "redis_prefix": f"s{tag}:", "worker_id": f"streams-test-{tag}", "data_dir": tmp_path / "data",
        "worker_metrics_port": free_port(), **overrides,
    })
    from streams.admin import ensure_topics

    asyncio.run(ensure_topics(s))
    return s


def sync_redis(settings: Settings, **options) -> redis.Redis:  # noqa: ANN003
    """A test's own client of the settings' Redis: a ``RedisCluster`` in cluster mode."""
    if settings.redis_cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(settings.redis_url, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


def _env_value(v: object) -> str:
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)


class Worker:
    """One ``python -m streams`` child; ``ready()`` waits until it consumes every partition."""

    FIELDS = ("kafka_bootstrap", "redis_url", "redis_cluster", "topic_prefix", "redis_prefix", "worker_id", "data_dir",
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
        r = sync_redis(self.settings)
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


def produce_clicks_until_seen(settings: Settings, events: pd.DataFrame, timeout_s: float = 60) -> None:
    """Send ``events`` (user_id, item_id, timestamp rows) as clicks and wait until the worker has applied
    them all: every user's seen set holds their distinct items."""
    import redis

    from schemas.keys import Keys

    produce_events(settings, [{"event_id": f"e{n}", "type": "click", "user_id": r.user_id, "item_id": r.item_id,
                               "ts": float(r.timestamp), "context": {}} for n, r in enumerate(events.itertuples())])
    client, keys = redis.Redis.from_url(settings.redis_url), Keys(settings.redis_prefix)
    want = events.groupby("user_id")["item_id"].nunique()
    wait_until(lambda: all(client.scard(keys.seen(u)) == n for u, n in want.items()), timeout=timeout_s)


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


# --- the API -------------------------------------------------------------------------------------
N_CATEGORIES = 5


def synthetic_events(n_users: int = 60, n_items: int = 50, per_user: int = 12, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events where each user prefers one category, plus the item metadata (title, category)."""
    rng = np.random.default_rng(seed)
    items = [f"i{j}" for j in range(n_items)]
    cats = [f"c{j % N_CATEGORIES}" for j in range(n_items)]
    meta = pd.DataFrame({"title": [f"Item {j}" for j in range(n_items)], "category": cats, "text": cats}, index=items)
    rows = []
    for u in range(n_users):
        fav = u % N_CATEGORIES
        pool = [j for j in range(n_items) if j % N_CATEGORIES == fav]
        other = [j for j in range(n_items) if j % N_CATEGORIES != fav]
        picks = list(rng.choice(pool, size=min(per_user - 3, len(pool)), replace=False)) + list(rng.choice(other, 3, replace=False))
        for t, j in enumerate(picks):
            rows.append((f"u{u}", items[j], 1_700_000_000 + t, "view"))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "type"]), meta


def train_tiny_run(artifact_dir: Path, models: tuple[str, ...] = ("ncf", "two_tower", "ease"), tag: str = "tiny",
                   make_current: bool = True, seed: int = 0) -> Path:
    """Train small models on ``synthetic_events`` and save them as a complete run."""
    from trainer.artifacts import new_run_dir, save_run, set_current
    from trainer.data.interactions import Interactions
    from trainer.models import make_model

    small = {
        "ncf": {"embedding_dim": 8, "mlp_layers": [16, 8], "epochs": 2, "patience": None},
        "two_tower": {"embedding_dim": 8, "tower_layers": [16], "epochs": 2, "patience": None, "val_fraction": 0.0},
    }
    events, meta = synthetic_events(seed=seed)
    data = Interactions.from_events(events, item_meta=meta)
    fitted = {}
    for name in models:
        params = dict(small.get(name, {}))
        try:
            model = make_model(name, **params)
        except TypeError:  # a model without one of the small knobs
            model = make_model(name)
        fitted[name] = model.fit(data)
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    run = save_run(new_run_dir(artifact_dir, tag), fitted, {"primary": "ndcg@10"})
    if make_current:
        set_current(artifact_dir, run)
    return run


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[tuple[object, object]]:
    """(app, httpx.AsyncClient) with the app's lifespan running, in this event loop."""
    import httpx

    from inference.app import create_app

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=10) as client:
            yield app, client


@contextlib.contextmanager
def uvicorn_thread(settings: Settings, port: int | None = None) -> Iterator[str]:
    """The API under a real uvicorn server in a thread; yields its base URL."""
    import uvicorn

    from inference.app import create_app

    port = port or free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        raise RuntimeError("the API did not start in 30 s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
