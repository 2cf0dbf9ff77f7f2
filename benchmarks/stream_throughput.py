"""Stream throughput and freshness of the streamrec worker, on the embedded stack.

    python benchmarks/stream_throughput.py [--events 200000] [--latency-seconds 10] [--rate 2000]

Prints, in one run:
  1. Faust's ceiling here: a no-op agent batching with take() over the same topic shape;
  2. streamrec end to end: events/s from the first event reflected in Redis to the last;
  3. the ratio 2/1;
  4. the same with two workers (and the speed-up over one);
  5. event-to-visible latency p50/p99 at a steady rate (send time → the worker's invalidation
     publish for that event's user, which happens in the same atomic script as its writes).

Every run produces its events while the worker(s) consume, as a live stream would; the
producer shares the machine's cores with the broker, Redis and the workers. Figures, not asserts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.stack import EmbeddedStack, child_env, free_port, spawn, stop_process  # noqa: E402


def event(j: int, tag: str, users: int = 5000, items: int = 2000) -> bytes:
    return json.dumps({
        "event_id": str(uuid.uuid4()), "type": "view", "user_id": f"u{tag}-{j % users}",
        "item_id": f"i{tag}-{j % items}", "ts": time.time(), "context": {},
    }).encode()


async def produce(bootstrap: str, topic: str, payloads: list[bytes]) -> None:
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await p.start()
    try:
        for raw in payloads:
            key = json.loads(raw)["user_id"].encode()
            await p.send(topic, raw, key=key)
        await p.flush()
    finally:
        await p.stop()


def produce_in_thread(bootstrap: str, topic: str, payloads: list[bytes]) -> threading.Thread:
    th = threading.Thread(target=lambda: asyncio.run(produce(bootstrap, topic, payloads)), daemon=True)
    th.start()
    return th


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


# --------------------------------------------------------------------------- 1. Faust's ceiling
def noop_worker() -> None:
    """The reference no-op agent (as ../shared/checks/faust_ceiling.py), run in a child process."""
    import faust

    from streams.app import shorten_fetch_wait

    shorten_fetch_wait(50)  # the same consumer fetch setting as the streamrec worker: a fair ceiling
    n, out = int(os.environ["CEIL_N"]), os.environ["CEIL_OUT"]
    app = faust.App(
        os.environ.get("CEIL_GROUP", "ceiling-" + os.environ["CEIL_TOPIC"]), broker="kafka://" + os.environ["KAFKA"], store="memory://",
        web_port=free_port(), web_bind="127.0.0.1", broker_rebalance_timeout=3, broker_session_timeout=6,
        broker_heartbeat_interval=1, stream_buffer_maxsize=100000, broker_max_poll_records=10000,
        stream_wait_empty=False, consumer_auto_offset_reset="earliest", datadir=os.environ["CEIL_DIR"],
    )
    topic = app.topic(os.environ["CEIL_TOPIC"], value_type=bytes, value_serializer="raw")
    state = {"n": 0, "t0": None}

    @app.timer(0.2)
    async def ready() -> None:
        if app.consumer.assignment() and not os.path.exists(out + ".ready"):
            Path(out + ".ready").write_text("1")

    @app.agent(topic)
    async def count(stream):  # noqa: ANN001
        async for batch in stream.take(5000, within=0.05):
            for raw in batch:
                json.loads(raw)
            if state["t0"] is None:
                state["t0"] = time.time()
            state["n"] += len(batch)
            if state["n"] >= n:
                Path(out).write_text(json.dumps({"events_per_s": state["n"] / (time.time() - state["t0"])}))

    faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False).execute_from_commandline()


def faust_ceiling(stack: EmbeddedStack, n: int, workdir: Path) -> float:
    topic = f"ceil{uuid.uuid4().hex[:6]}"
    asyncio.run(create_topic(stack.kafka_bootstrap, topic, 4))
    out = workdir / f"{topic}.json"
    env = dict(os.environ, KAFKA=stack.kafka_bootstrap, CEIL_TOPIC=topic, CEIL_N=str(n), CEIL_OUT=str(out),
               CEIL_DIR=str(workdir / topic))
    proc = spawn([sys.executable, __file__, "--noop-worker"], workdir / "ceiling.log", env=env)
    try:
        _wait(lambda: Path(str(out) + ".ready").exists(), 60, "the no-op worker to join")
        th = produce_in_thread(stack.kafka_bootstrap, topic, [event(j, "c") for j in range(n)])
        _wait(out.exists, 600, "the no-op worker to count every event")
        th.join()
        return json.loads(out.read_text())["events_per_s"]
    finally:
        stop_process(proc)


# --------------------------------------------------------------------------- 2-5. streamrec
class Workers:
    """streamrec workers as child processes (``python -m streams``), one consumer group."""

    def __init__(self, stack: EmbeddedStack, workdir: Path, count: int):
        self.stack, self.prefix = stack, f"b{uuid.uuid4().hex[:6]}."
        self.group = f"bench-{uuid.uuid4().hex[:6]}"
        self.ports = [free_port() for _ in range(count)]
        self.procs = []
        for i, port in enumerate(self.ports):
            env = child_env(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url,
                            topic_prefix=self.prefix, worker_id=self.group, worker_metrics_port=str(port),
                            data_dir=str(workdir / "data"))
            self.procs.append(spawn([sys.executable, "-m", "streams"], workdir / f"worker{i}.log", env=env, cwd=ROOT))
            if i == 0:
                self.warm_up()  # the first owns the topics before the second joins

    @property
    def topic(self) -> str:
        return self.prefix + "interactions"

    def batches(self, port: int) -> float:
        import httpx

        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.HTTPError:
            return 0.0
        for line in text.splitlines():
            if line.startswith("streamrec_stream_batch_size_count"):
                return float(line.split()[-1])
        return 0.0

    def warm_up(self) -> None:
        """Until every worker has processed a batch: the group is stable."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            asyncio.run(produce(self.stack.kafka_bootstrap, self.topic, [event(j, "warm", 64) for j in range(64)]))
            time.sleep(1.0)
            if all(self.batches(p) > 0 for p in self.ports[: len(self.procs)]):
                time.sleep(2.0)
                return
        raise TimeoutError("the workers did not all start consuming in 120 s")

    def stop(self) -> None:
        for p in self.procs:
            stop_process(p)


def rate_until(done: Callable[[], float], n: int, producer: threading.Thread, timeout: float = 900) -> float:
    """Events per second from the first applied event until ``done()`` reaches ``n`` (the producer
    thread joined)."""
    first = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = done()
        if first is None and got > 0:
            first = time.monotonic()
        if got >= n:
            break
        time.sleep(0.05)
    producer.join()
    return done() / (time.monotonic() - first)


def popsum(r) -> float:  # noqa: ANN001
    return sum(s for _, s in r.zrange("sr:pop:global", 0, -1, withscores=True))


def end_to_end(stack: EmbeddedStack, n: int, workers: int, workdir: Path) -> float:
    import redis

    r = redis.Redis.from_url(stack.redis_url)
    w = Workers(stack, workdir, workers)
    try:
        if workers > 1:
            w.warm_up()
        base = popsum(r)
        tag = uuid.uuid4().hex[:4]  # one tag per run: 5,000 users and 2,000 items, as the checks use
        th = produce_in_thread(stack.kafka_bootstrap, w.topic, [event(j, tag) for j in range(n)])
        return rate_until(lambda: popsum(r) - base, n, th)
    finally:
        w.stop()


def latency(stack: EmbeddedStack, seconds: float, rate: int, workdir: Path) -> tuple[float, float, int]:
    import redis
    from aiokafka import AIOKafkaProducer

    w = Workers(stack, workdir, 1)
    r = redis.Redis.from_url(stack.redis_url)
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    sub = r.pubsub()
    sub.subscribe("sr:invalidate")

    def listen() -> None:
        try:
            for msg in sub.listen():
                if msg["type"] == "message":
                    now = time.time()
                    for user in json.loads(msg["data"]):
                        seen.setdefault(user, now)
        except (redis.RedisError, OSError, ValueError):
            return  # the subscription was closed at the end of the run

    threading.Thread(target=listen, daemon=True).start()

    async def paced() -> None:
        p = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
        await p.start()
        tag, step = uuid.uuid4().hex[:4], 0.01
        per_step = max(1, int(rate * step))
        t0, j = time.monotonic(), 0
        try:
            while time.monotonic() - t0 < seconds:
                for _ in range(per_step):
                    user = f"lat{tag}-{j}"
                    raw = json.dumps({"event_id": uuid.uuid4().hex, "type": "view", "user_id": user,
                                      "item_id": f"li-{j % 500}", "ts": time.time()}).encode()
                    sent[user] = time.time()
                    await p.send(w.topic, raw, key=user.encode())
                    j += 1
                await asyncio.sleep(max(0.0, t0 + j / rate - time.monotonic()))
            await p.flush()
        finally:
            await p.stop()

    try:
        asyncio.run(paced())
        time.sleep(2.0)
        lat = sorted((seen[u] - t) * 1000 for u, t in sent.items() if u in seen)
        if not lat:
            raise RuntimeError("no event became visible")
        q = statistics.quantiles(lat, n=100)
        return q[49], q[98], len(lat)
    finally:
        sub.close()
        w.stop()


def _wait(cond, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise TimeoutError(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--latency-seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--only-latency", action="store_true", help="run stage 5 alone")
    ap.add_argument("--noop-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.noop_worker:
        return noop_worker()
    with tempfile.TemporaryDirectory(prefix="sr-bench-") as tmp, EmbeddedStack(Path(tmp) / "stack") as stack:
        work = Path(tmp)
        n = args.events
        print(f"embedded stack: broker {stack.kafka_bootstrap}, redis {stack.redis_url}; {os.cpu_count()} cores",
              flush=True)
        if args.only_latency:
            p50, p99, count = latency(stack, args.latency_seconds, args.rate, work)
            print(f"5. event-to-visible at {args.rate}/s ({count} events): p50 {p50:.1f} ms, p99 {p99:.1f} ms",
                  flush=True)
            return
        ceiling = faust_ceiling(stack, n, work)
        print(f"1. Faust no-op ceiling (take() batches, {n} events): {ceiling:,.0f} events/s", flush=True)
        one = end_to_end(stack, n, 1, work)
        print(f"2. streamrec end to end, 1 worker ({n} events): {one:,.0f} events/s", flush=True)
        print(f"3. ratio streamrec / ceiling: {one / ceiling:.2f} (target >= 0.80)", flush=True)
        two = end_to_end(stack, n, 2, work)
        print(f"4. streamrec end to end, 2 workers: {two:,.0f} events/s ({two / one:.2f}x one worker)", flush=True)
        p50, p99, count = latency(stack, args.latency_seconds, args.rate, work)
        print(f"5. event-to-visible at {args.rate}/s ({count} events): p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"(target p99 <= 100 ms)", flush=True)


if __name__ == "__main__":
    main()
