"""The highest steady rate the worker sustains with bounded lag, and where its CPU goes.

    python benchmarks/freshness_sustained.py [--rates 2000,4000,6000] [--workers 1,2] [--seconds 60]
                                             [--profile SECONDS] [--partitions 4]

For each worker count and each rate, on a fresh embedded broker and Redis: a producer process
sends view events at exactly RATE events/s for SECONDS (the checks' event shape: 20,000 users,
3,000 items), the workers consume them, and every second the workers' own gauges are read
(``streamrec_stream_consumer_lag``, ``streamrec_stream_event_to_redis_lag_seconds``). A rate is
*sustained* when the lag stays bounded: over the last half of the run the consumer lag never
exceeds one second of arrivals and does not grow. Everything shares this machine's cores: the
producer, the broker, Redis and the workers. Figures, not asserts.

``--profile N`` also records the first worker with py-spy (``--gil``: only samples holding the
GIL, i.e. Python actually running) for N seconds in the middle of each run, and prints where its
CPU goes by stage (Faust/aiokafka fetching, decoding, building the script call, Redis I/O,
commits, metrics).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra.stack import EmbeddedStack, child_env, free_port, spawn, stop_process  # noqa: E402


# --------------------------------------------------------------------------- producer (child process)
def produce_steady(bootstrap: str, topic: str, rate: int, seconds: float) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await p.start()
        tag, j, t0 = uuid.uuid4().hex[:6], 0, time.time()
        try:
            while time.time() - t0 < seconds:
                due = int((time.time() - t0) * rate)
                while j < due:
                    user = f"bg{tag}-{j % 20000}"
                    raw = json.dumps({"event_id": str(uuid.uuid4()), "type": "view", "user_id": user,
                                      "item_id": f"bgi{tag}-{j % 3000}", "ts": time.time(), "context": {}}).encode()
                    await p.send(topic, raw, key=user.encode())
                    j += 1
                await asyncio.sleep(0.005)
            await p.flush()
        finally:
            await p.stop()
        print(json.dumps({"sent": j, "seconds": time.time() - t0, "cpu_s": time.process_time()}), flush=True)

    asyncio.run(run())


# --------------------------------------------------------------------------- workers
def gauges(port: int) -> dict[str, float]:
    import httpx

    out: dict[str, float] = collections.defaultdict(float)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return out
    for line in text.splitlines():
        if line.startswith("streamrec_stream_consumer_lag{"):
            out["lag"] += float(line.split()[-1])
        elif line.startswith("streamrec_stream_event_to_redis_lag_seconds "):
            out["e2r"] = max(out["e2r"], float(line.split()[-1]))
        elif line.startswith("streamrec_stream_batch_size_count "):
            out["batches"] += float(line.split()[-1])
        elif line.startswith("streamrec_stream_batch_size_sum "):
            out["events"] += float(line.split()[-1])
    return out


def start_workers(stack: EmbeddedStack, work: Path, count: int, partitions: int) -> tuple[list, list[int], str]:
    prefix, group = f"f{uuid.uuid4().hex[:6]}.", f"fresh-{uuid.uuid4().hex[:6]}"
    ports, procs = [free_port() for _ in range(count)], []
    for i, port in enumerate(ports):
        env = child_env(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url, topic_prefix=prefix,
                        worker_id=group, worker_metrics_port=str(port), data_dir=str(work / "data"),
                        topic_partitions=str(partitions))
        procs.append(spawn([sys.executable, "-m", "streams"], work / f"worker{i}.log", env=env, cwd=ROOT))
    return procs, ports, prefix + "interactions"


def warm_up(stack: EmbeddedStack, topic: str, ports: list[int]) -> None:
    """Until every worker has applied a batch: the group is settled."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        produce_steady_inline(stack.kafka_bootstrap, topic, 200)
        time.sleep(1.0)
        if all(gauges(p)["batches"] > 0 for p in ports):
            time.sleep(2.0)
            return
    raise TimeoutError("the workers did not all consume in 120 s")


def produce_steady_inline(bootstrap: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await p.start()
        try:
            for j in range(n):
                await p.send(topic, json.dumps({"event_id": uuid.uuid4().hex, "type": "view", "user_id": f"w{j}",
                                                "item_id": "warm", "ts": time.time()}).encode(), key=f"w{j}".encode())
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(run())


# --------------------------------------------------------------------------- profile
STAGES = [  # a sample counts for the stage of its innermost frame that matches (frame substrings)
    ("decode + validate (orjson, fast path, pydantic)", ("decode_interactions", "parse_event", "fast_event",
                                                         "pydantic", "to_records")),
    ("Redis round trip (redis-py send/parse)", ("redis/",)),
    ("building the script call (rows, config JSON)", ("script_config", "StreamState.apply_interactions")),
    ("offset commits", ("commit",)),
    ("metrics + lag reporting", ("prometheus_client", "report_lag", "LagTracker")),
    ("fetching + record parsing (aiokafka)", ("aiokafka/",)),
    ("Faust per-event stream machinery (agents, conductor, acks)", ("faust/", "mode/")),
]
OTHER = "event loop, other"


def stage_of(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for name, needles in STAGES:
            if any(needle in frame for needle in needles):
                return name
    return OTHER


def profile_summary(raw: Path) -> list[tuple[str, float]]:
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if n.isdigit():
            counts[stage_of(stack.split(";"))] += int(n)
    total = max(1, sum(counts.values()))
    return [(name, 100.0 * counts[name] / total) for name in [s[0] for s in STAGES] + [OTHER] if counts[name]]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- one run
def run_once(rate: int, workers: int, seconds: float, partitions: int, profile: float, work: Path) -> dict:
    with EmbeddedStack(work / "stack") as stack:
        procs, ports, topic = start_workers(stack, work, workers, partitions)
        try:
            warm_up(stack, topic, ports)
            cpu0 = [cpu_seconds(p.pid) for p in procs]
            others0 = {name: cpu_seconds(proc.pid) for name, proc in stack.procs.items()}
            events0 = sum(gauges(p)["events"] for p in ports)
            producer = subprocess.Popen(  # its CPU is read from its own clock at the end (it exits first)
[sys.executable, __file__, "--produce", stack.kafka_bootstrap, topic,
                                         str(rate), str(seconds)], stdout=subprocess.PIPE, text=True)
            spy, exe = None, shutil.which("py-spy", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
            if profile and exe:
                spy_out = work / f"profile-{rate}-{workers}.txt"
                time.sleep(min(10.0, seconds / 4))
                spy = subprocess.Popen([exe, "record", "--gil", "-r", "250", "-d", str(int(profile)), "-f", "raw",
                                        "-o", str(spy_out), "-p", str(procs[0].pid)],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            samples = []
            t0 = time.monotonic()
            while producer.poll() is None:
                g = [gauges(p) for p in ports]
                samples.append((time.monotonic() - t0, sum(x["lag"] for x in g), max(x["e2r"] for x in g)))
                time.sleep(1.0)
            sent = json.loads(producer.stdout.read().strip().splitlines()[-1])
            # drain: how long until everything sent is applied
            drain_t0 = time.monotonic()
            while time.monotonic() - drain_t0 < 60:
                if sum(gauges(p)["events"] for p in ports) - events0 >= sent["sent"]:
                    break
                time.sleep(0.2)
            drain = time.monotonic() - drain_t0
            cpu = [cpu_seconds(p.pid) - c for p, c in zip(procs, cpu0)]
            others = {name: cpu_seconds(stack.procs[name].pid) - c for name, c in others0.items()}
            if spy is not None:
                spy.wait(60)
        finally:
            for p in procs:
                stop_process(p)
    half = [s for s in samples if s[0] >= seconds / 2]
    lags = [s[1] for s in half] or [0.0]
    first, last = lags[: max(1, len(lags) // 3)], lags[-max(1, len(lags) // 3):]
    bounded = max(lags) <= rate and (sum(last) / len(last)) <= (sum(first) / len(first)) + rate / 4
    out = {
        "rate": rate, "workers": workers, "sent_per_s": sent["sent"] / sent["seconds"],
        "max_lag_2nd_half": max(lags), "mean_e2r_ms": 1000 * sum(s[2] for s in half) / max(1, len(half)),
        "max_e2r_ms": 1000 * max((s[2] for s in half), default=0.0), "drain_s": drain, "bounded": bounded,
        "worker_cpu_us_per_event": 1e6 * sum(cpu) / max(1, sent["sent"]),
        "cpu_us_per_event": {**{k: 1e6 * v / max(1, sent["sent"]) for k, v in others.items()},
                             "producer": 1e6 * sent["cpu_s"] / max(1, sent["sent"])},
    }
    if spy is not None and spy_out.exists():
        out["profile"] = profile_summary(spy_out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rates", default="2000,4000,6000")
    ap.add_argument("--workers", default="1")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--profile", type=float, default=0.0, help="py-spy the first worker for this many seconds")
    ap.add_argument("--produce", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.produce:
        bootstrap, topic, rate, seconds = args.produce
        return produce_steady(bootstrap, topic, int(rate), float(seconds))
    print(f"{os.cpu_count()} cores; every process shares them (producer, broker, Redis, workers)", flush=True)
    print("| workers | rate/s | sent/s | max lag, 2nd half | event→Redis mean / max | drain | CPU µs/event: "
          "workers · broker · Redis · producer | sustained |", flush=True)
    print("|---:|---:|---:|---:|---:|---:|---:|---|", flush=True)
    for workers in [int(w) for w in args.workers.split(",")]:
        for rate in [int(r) for r in args.rates.split(",")]:
            with tempfile.TemporaryDirectory(prefix="sr-fresh-") as tmp:
                r = run_once(rate, workers, args.seconds, args.partitions, args.profile, Path(tmp))
            c = r["cpu_us_per_event"]
            print(f"| {workers} | {rate:,} | {r['sent_per_s']:,.0f} | {r['max_lag_2nd_half']:,.0f} | "
                  f"{r['mean_e2r_ms']:.0f} / {r['max_e2r_ms']:.0f} ms | {r['drain_s']:.1f} s | "
                  f"{r['worker_cpu_us_per_event']:.0f} · {c['broker']:.0f} · {c['redis']:.0f} · {c['producer']:.0f} | "
                  f"{'yes' if r['bounded'] else 'NO'} |", flush=True)
            for name, share in r.get("profile", []):
                print(f"|   | profile | {share:5.1f} % | {name} | | | | |", flush=True)


if __name__ == "__main__":
    main()
