"""Stream worker throughput on a Redis Cluster against a single Redis, measured in the same run.

    python benchmarks/cluster.py                      # 50,000 events over 5,000 users, 2,000 items
    python benchmarks/cluster.py --events N --users U --items I --rounds R --batch B
    python benchmarks/cluster.py --pipeline 100000    # also end to end: broker -> worker process -> Redis

One ``redis-server`` and a three-master Redis Cluster (``infra.stack.EmbeddedRedisCluster``:
``redis-server --cluster-enabled yes`` x3, slots split evenly) are started empty in a scratch dir.
The same synthetic interactions as ``benchmarks/memory.py`` (Zipf-like users and items; views,
clicks, impressions with a strategy, ratings, likes) are decoded by
``streams.batch.decode_interactions`` and applied through ``streams.state.StreamState``, ``--batch``
records a call with their partition and offset, exactly as the worker does: on the single node one
script per batch; on the cluster one script per slot group of the batch's users, then one per
target slot of its aggregates (docs/redis-cluster.md). Rounds alternate single / cluster, each on
a fresh key prefix. Printed per round: events/s of the Redis side (decoding excluded), script calls
per batch, and the CPU seconds the redis-server processes spent (``INFO cpu``): the cluster spreads
the work over three processes, which only pays off with cores to run them on (this machine has
two, shared with the client). Both stores must end with the same popularity sum: checked and printed.

``--pipeline N`` adds the end-to-end figure of ``benchmarks/stream_throughput.py`` (stage 2) for
both stores in the same run: the embedded broker, one worker process (``python -m streams``, with
``STREAMREC_REDIS_CLUSTER=1`` for the cluster), N view events (5,000 users, 2,000 items) produced
while it consumes; events/s from the first event counted to the last. Figures, not asserts.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import redis  # noqa: E402
from redis.cluster import RedisCluster  # noqa: E402

from infra.stack import EmbeddedRedisCluster, EmbeddedStack, child_env, free_port, spawn, stop_process  # noqa: E402
from memory import PARTITIONS, synthetic  # noqa: E402
from stream_throughput import event, produce, produce_in_thread, rate_until  # noqa: E402
from schemas.keys import Keys  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from streams.batch import Record, decode_interactions  # noqa: E402
from streams.config import StreamConfig  # noqa: E402
from streams.processor import positions  # noqa: E402
from streams.state import StreamState, make_client  # noqa: E402


def batches(events: list[tuple[int, bytes]], size: int, strengths: dict) -> list[tuple[list, list]]:
    """(rows, positions) of each batch, decoded once up front (the benchmark times Redis, not decoding)."""
    out, next_offset = [], [0] * PARTITIONS
    for i in range(0, len(events), size):
        recs = []
        for p, raw in events[i:i + size]:
            recs.append(Record(raw, "interactions", p, next_offset[p]))
            next_offset[p] += 1
        recs.sort(key=lambda r: (r.partition, r.offset))
        decoded = decode_interactions(recs, strengths)
        out.append((decoded.rows, positions(decoded.sources)))
    return out


async def drive(settings: Settings, work: list[tuple[list, list]]) -> float:
    client = make_client(settings, socket_timeout=120)
    state = StreamState(client, settings)
    cfg = StreamConfig.from_settings(settings)
    try:
        started = time.perf_counter()
        for rows, where in work:
            await state.apply_interactions(rows, cfg, positions=where)
        return time.perf_counter() - started
    finally:
        await client.aclose()


def cpu_seconds(nodes: list[redis.Redis]) -> float:
    return sum(float(n.info("cpu")["used_cpu_user"]) + float(n.info("cpu")["used_cpu_sys"]) for n in nodes)


def script_calls(nodes: list[redis.Redis]) -> int:
    return sum(int(n.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)) for n in nodes)


def pipeline(bootstrap: str, settings: Settings, n: int, workdir: Path) -> float:
    """End to end through one worker process: events/s from the first event counted to the last."""
    prefix, group = f"p{uuid.uuid4().hex[:6]}.", f"bench-{uuid.uuid4().hex[:6]}"
    env = child_env(kafka_bootstrap=bootstrap, redis_url=settings.redis_url or "", redis_cluster=str(settings.redis_cluster),
                    redis_prefix=str(settings.redis_prefix), topic_prefix=prefix, worker_id=group,
                    worker_metrics_port=str(free_port()), data_dir=str(workdir / "data"))
    proc = spawn([sys.executable, "-m", "streams"], workdir / f"worker-{prefix}log", env=env, cwd=ROOT)
    k = Keys(settings.redis_prefix)
    r = RedisCluster.from_url(settings.redis_url) if settings.redis_cluster else redis.Redis.from_url(settings.redis_url)
    popsum = lambda: sum(v for _, v in r.zrange(k.pop_global, 0, -1, withscores=True))  # noqa: E731
    try:
        deadline = time.monotonic() + 120
        while popsum() == 0:  # warm up: the worker joined and applies
            if time.monotonic() > deadline:
                raise TimeoutError(f"the worker did not start in 120 s: {(workdir / f'worker-{prefix}log').read_text()[-2000:]}")
            asyncio.run(produce(bootstrap, prefix + "interactions", [event(j, "warm", 64) for j in range(64)]))
            time.sleep(1.0)
        time.sleep(2.0)
        base = popsum()
        tag = uuid.uuid4().hex[:4]
        th = produce_in_thread(bootstrap, prefix + "interactions", [event(j, tag) for j in range(n)])
        return rate_until(lambda: popsum() - base, n, th)
    finally:
        stop_process(proc)
        r.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--items", type=int, default=2_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pipeline", type=int, default=0, metavar="N",
                    help="also N events end to end through the broker and a worker process, per store")
    args = ap.parse_args()

    events = synthetic(args.events, args.users, args.items)
    strengths = StreamConfig.from_settings(Settings()).strengths
    work = batches(events, args.batch, strengths)
    print(f"{args.events:,} events over {args.users:,} users, {args.items:,} items; batches of {args.batch}, "
          f"{PARTITIONS} partitions; {len(work)} batches")
    with tempfile.TemporaryDirectory() as tmp:
        single = EmbeddedStack(Path(tmp) / "single")
        if args.pipeline:
            single.start()  # broker and redis-server
        else:
            single.data_dir = Path(single.data_dir)
            single.start_redis()
        cluster = EmbeddedRedisCluster(Path(tmp) / "cluster").start()
        try:
            single_url = f"redis://127.0.0.1:{single.redis_port}/0"
            stores = {
                "single": ([redis.Redis.from_url(single_url)], dict(redis_url=single_url)),
                "cluster": ([redis.Redis(port=p) for p in cluster.ports],
                            dict(redis_url=cluster.redis_url, redis_cluster=True)),
            }
            rates: dict[str, list[float]] = {"single": [], "cluster": []}
            for rnd in range(args.rounds):
                for name, (nodes, conf) in stores.items():
                    s = Settings(redis_prefix=f"b{uuid.uuid4().hex[:6]}:", topic_prefix="bench.", **conf)
                    cpu0, calls0 = cpu_seconds(nodes), script_calls(nodes)
                    wall = asyncio.run(drive(s, work))
                    cpu, calls = cpu_seconds(nodes) - cpu0, script_calls(nodes) - calls0
                    k = Keys(s.redis_prefix)
                    reader = RedisCluster.from_url(s.redis_url) if s.redis_cluster else redis.Redis.from_url(s.redis_url)
                    pop = sum(v for _, v in reader.zrange(k.pop_global, 0, -1, withscores=True))
                    reader.close()
                    rate = args.events / wall
                    rates[name].append(rate)
                    print(f"round {rnd + 1} {name:7s}: {rate:9,.0f} events/s ({wall:6.2f} s), "
                          f"{calls / len(work):6.1f} script calls per batch, redis CPU {cpu:6.2f} s "
                          f"over {len(nodes)} process(es); popularity sum {pop:,.0f}")
            best_single, best_cluster = max(rates["single"]), max(rates["cluster"])
            print(f"best of {args.rounds}: cluster {best_cluster:,.0f} events/s vs single node {best_single:,.0f} "
                  f"events/s: ratio {best_cluster / best_single:.2f}")
            if args.pipeline:
                e2e = {}
                for name, (_, conf) in stores.items():
                    s = Settings(redis_prefix=f"e{uuid.uuid4().hex[:6]}:", **conf)
                    e2e[name] = pipeline(single.kafka_bootstrap, s, args.pipeline, Path(tmp))
                    print(f"end to end {name:7s}: {e2e[name]:9,.0f} events/s ({args.pipeline:,} events, one worker)")
                print(f"end to end: cluster {e2e['cluster']:,.0f} events/s vs single node {e2e['single']:,.0f} "
                      f"events/s: ratio {e2e['cluster'] / e2e['single']:.2f}")
        finally:
            cluster.stop()
            single.stop()


if __name__ == "__main__":
    main()
