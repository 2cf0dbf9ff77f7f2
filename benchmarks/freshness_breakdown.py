"""Where the time from an event to the served list goes, under load (docs/freshness.md).

    python benchmarks/freshness_breakdown.py [--rate 2000] [--probes 100]

Starts ``streamrec up`` in a scratch data dir (as the freshness check does), sends RATE background
view events/s from a separate process, and runs the check's probes: a user with a cached home list
views its top item; the clock stops when the API no longer serves it. Each probe is cut in three:

  ack      produce -> the broker acknowledged the event (send_and_wait)
  apply    ack -> the worker's invalidation message for the user arrived (a subscriber of our own
           on ``Keys.invalidate_channel``: the script publishes it in the call that applies the event)
  serve    that message -> the API served a list without the item (the API's own subscription,
           eviction, recompute, and the probe's 2 ms polling)

Prints p50/p99/max of each stage and of the whole, the probes over 5 s and the stage they spent it
in, and the machine's load average before and after. The code measured is whatever ``streamrec``
imports: PYTHONPATH=<another checkout> measures that one (the baseline of a comparison).
Figures, not asserts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def background(kafka: str, topic: str, rate: int, stop) -> None:  # noqa: ANN001 - an mp.Event
    from aiokafka import AIOKafkaProducer

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=5)
        await p.start()
        tag, j, t0 = uuid.uuid4().hex[:6], 0, time.time()
        try:
            while not stop.is_set():
                while j < int((time.time() - t0) * rate):
                    user = f"bg{tag}-{j % 20000}"
                    e = {"event_id": str(uuid.uuid4()), "type": "view", "user_id": user,
                         "item_id": f"bgi{tag}-{j % 3000}", "ts": time.time(), "context": {}}
                    await p.send(topic, json.dumps(e).encode(), key=user.encode())
                    j += 1
                await asyncio.sleep(0.005)
        finally:
            await p.stop()

    asyncio.run(run())


BUSY = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
while true do
  local n = redis.call('TIME')
  if n[1] * 1000000 + n[2] - start > tonumber(ARGV[1]) * 1000 then return 1 end
end
"""


def block_redis(url: str, ms: int, every_s: float, stop) -> None:  # noqa: ANN001 - an mp.Event
    """Hold Redis ``ms`` every ``every_s`` (a script call runs alone), as a long catch-up batch does."""
    import redis

    r = redis.Redis.from_url(url)
    while not stop.wait(every_s):
        r.eval(BUSY, 0, ms)


def start_stack(data: Path) -> tuple[subprocess.Popen, dict]:
    port = 18000 + int.from_bytes(os.urandom(2), "big") % 1000
    env = {**os.environ, "STREAMREC_DATA_DIR": str(data)}
    exe = shutil.which("streamrec") or str(Path(sys.executable).parent / "streamrec")
    proc = subprocess.Popen([exe, "up", "--api-port", str(port)], cwd=data, env=env, start_new_session=True,
                            stdout=open(data / "up.log", "w"), stderr=subprocess.STDOUT)
    import httpx

    for _ in range(240):
        try:
            stack = json.loads((data / "stack.json").read_text())
            if httpx.get(f"{stack['api_url']}/healthz", timeout=1).status_code == 200:
                return proc, stack
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    stop_stack(proc)
    raise SystemExit(f"the stack did not become healthy in 120 s (see {data / 'up.log'})")


def stop_stack(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def log_notes(logs: Path) -> list[str]:
    """What the API and the worker said that bears on freshness (Redis breaker, subscription, restarts)."""
    marks = ("redis unavailable", "subscription lost", "restarting", "rebalanc", "degraded")
    out = []
    for name in ("api.log", "worker.log"):
        try:
            lines = (logs / name).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for mark in marks:
            hits = [x for x in lines if mark in x.lower()  # not the stack's own shutdown
                    and "Error 111" not in x and "Connection closed by server" not in x]
            if hits:
                out.append(f"{name}: {len(hits)} x '{mark}', first: {hits[0][:160]}")
    return out


def slowlog(url: str) -> str:
    """Redis's own record of its long commands: does one script call block the API's reads?"""
    import redis

    r = redis.Redis.from_url(url)
    got = sorted(r.slowlog_get(4096), key=lambda e: -e["duration"])
    if not got:
        return "empty"
    over = sum(1 for e in got if e["duration"] > 300_000)
    top = ", ".join(f"{e['duration'] / 1000:.0f} ms {_text(e['command']).split(' ')[0]}" for e in got[:5])
    return f"{len(got)} entries, longest {top}; {over} over 300 ms (the API's Redis timeout)"


def _text(v) -> str:  # noqa: ANN001
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def q(xs: list[float], f: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(f * len(xs)))] if xs else float("nan")


def probes(stack: dict, n: int, prefix: str) -> list[dict]:
    import httpx
    import redis
    from aiokafka import AIOKafkaProducer

    from schemas.keys import Keys

    topic = prefix + "interactions"
    tag = uuid.uuid4().hex[:6]
    seen_at: dict[str, float] = {}
    r = redis.Redis.from_url(stack["redis_url"])
    sub = r.pubsub()
    sub.subscribe(Keys("sr:").invalidate_channel)
    done = threading.Event()

    def listen() -> None:
        while not done.is_set():
            m = sub.get_message(timeout=0.2)
            if m and m["type"] == "message":
                now = time.perf_counter()
                for user in json.loads(m["data"]):
                    if user.startswith("fp"):
                        seen_at.setdefault(user, now)

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    out: list[dict] = []

    async def run() -> None:
        p = AIOKafkaProducer(bootstrap_servers=stack["kafka_bootstrap"], linger_ms=0)
        await p.start()
        try:
            with httpx.Client(timeout=5) as c:
                url = f"{stack['api_url']}/api/v1/recommendations/home"
                for k in range(n):
                    user = f"fp{tag}-{k}"
                    c.get(url, params={"user_id": user, "k": 10})
                    got = c.get(url, params={"user_id": user, "k": 10}).json()
                    if not got["items"] or got.get("degraded"):  # Redis away for the API just now
                        out.append({"total": None, "ack": None, "apply": None, "serve": None, "fresh": None,
                                    "polls": 0, "redis_list": False, "skipped": "degraded before the event"})
                        await asyncio.sleep(0.1)
                        continue
                    top = got["items"][0]["item_id"]
                    e = {"event_id": str(uuid.uuid4()), "type": "view", "user_id": user, "item_id": top,
                         "ts": time.time(), "context": {}}
                    t0 = time.perf_counter()
                    await p.send_and_wait(topic, json.dumps(e).encode(), key=user.encode())
                    ack = time.perf_counter()
                    served, polls, degraded = None, 0, 0
                    while time.perf_counter() - t0 < 5:
                        polls += 1
                        body = c.get(url, params={"user_id": user, "k": 10}).json()
                        degraded += bool(body.get("degraded"))
                        items = [i["item_id"] for i in body["items"]]
                        if top not in items:
                            served = time.perf_counter()
                            break
                        await asyncio.sleep(0.002)
                    if served is None:  # not within 5 s: how long did it take in the end?
                        while time.perf_counter() - t0 < 60:
                            items = [i["item_id"] for i in c.get(url, params={"user_id": user, "k": 10}).json()["items"]]
                            if top not in items:
                                break
                            await asyncio.sleep(0.05)
                    end = served or time.perf_counter()
                    msg = seen_at.get(user)
                    out.append({"total": (end - t0) * 1000, "ack": (ack - t0) * 1000,
                                "apply": (msg - ack) * 1000 if msg else None,
                                "serve": (end - msg) * 1000 if msg else None, "fresh": served is not None,
                                "degraded_polls": degraded,
                                "polls": polls, "redis_list": bool(r.exists(Keys("sr:").recs(user, "popularity", 10)))})
                    await asyncio.sleep(0.1)
        finally:
            await p.stop()

    try:
        asyncio.run(run())
    finally:
        done.set()
        th.join(2)
        sub.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--block-ms", type=int, default=0,
                    help="hold Redis this long (one script call) every --block-every s: a worker's catch-up batch")
    ap.add_argument("--block-every", type=float, default=1.5)
    args = ap.parse_args()
    import inference.home

    print(f"code: {Path(inference.home.__file__).resolve().parents[1]}; load average before {os.getloadavg()}"
          + (f"; Redis held {args.block_ms} ms every {args.block_every} s" if args.block_ms else ""))
    data = Path(tempfile.mkdtemp(prefix="streamrec-fresh-"))
    proc, stack = start_stack(data)
    import redis

    redis.Redis.from_url(stack["redis_url"]).config_set("slowlog-max-len", 4096)
    stop = mp.Event()
    bg = mp.Process(target=background, args=(stack["kafka_bootstrap"], "interactions", args.rate, stop))
    try:
        bg.start()
        if args.block_ms:
            threading.Thread(target=block_redis, args=(stack["redis_url"], args.block_ms, args.block_every, stop),
                             daemon=True).start()
        time.sleep(3)
        rows = probes(stack, args.probes, "")
        slow = slowlog(stack["redis_url"])
    finally:
        stop.set()
        bg.join(10)
        stop_stack(proc)
        notes = log_notes(data / "logs")
        shutil.rmtree(data, ignore_errors=True)
    print(f"load average after {os.getloadavg()}")
    print(f"  Redis slowlog (over 10 ms): {slow}")
    for line in notes:
        print("  log:", line)
    for stage in ("ack", "apply", "serve", "total"):
        xs = [r[stage] for r in rows if r.get(stage) is not None]
        print(f"  {stage:6s} p50 {q(xs, 0.5):7.1f} ms  p99 {q(xs, 0.99):7.1f} ms  max {q(xs, 1.0):7.1f} ms  (n={len(xs)})")
    skipped = [r for r in rows if r["fresh"] is None]
    rows = [r for r in rows if r["fresh"] is not None]
    slow = [r for r in rows if not r["fresh"]]
    fresh = [r["total"] for r in rows if r["fresh"]]
    print(f"{len(fresh)}/{len(rows)} fresh within 5 s under {args.rate} events/s: p50 {q(fresh, 0.5):.0f} ms, "
          f"p99 {q(fresh, 0.99):.0f} ms; not within 5 s: {len(slow)}; probes skipped (degraded answer "
          f"before the event): {len(skipped)}")
    for r in slow + sorted((r for r in rows if r["fresh"]), key=lambda r: -r["total"])[:3]:
        print("  slowest:" if r["fresh"] else "  NOT FRESH:", {k: (round(v, 1) if isinstance(v, float) else v)
                                                              for k, v in r.items()})


if __name__ == "__main__":
    main()
