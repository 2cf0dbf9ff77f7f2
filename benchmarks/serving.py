"""Serving benchmark: requests/s and latency of the API, load generated from a separate process.

    python benchmarks/serving.py [--users 6040 --items 3706 --interactions 200000] [--duration 8] [--processes 2]

Starts an embedded broker + Redis, trains a run (two_tower + ease) on a synthetic catalog
the size of MovieLens-1M (3,706 items, 6,040 users; power-law popularity, 18 categories,
users with a favourite category), seeds the Redis state the stream agents would keep
(popularity, seen sets, recent items, item hashes), starts the API with
``python -m inference`` and a bare FastAPI app returning the same body, then measures:

- cached home   (one user's list, served from the in-process copy)      wrk -c32, and hey at 500 req/s
- uncached home (the default: the run's policy, an ease + two_tower blend scored over the whole
                 catalogue -> filters/MMR; a new cache key per request)  wrk --latency -c1 (latency), -c4 (throughput)
- uncached home (two_tower alone)                                       wrk --latency -c1
- uncached home (hybrid: two_tower + ease + popularity)                 wrk --latency -c1
- similar items (item embedding -> FAISS)              wrk --latency -c1 (latency), -c4 (throughput)
- bare FastAPI  (the same body from a constant)                         wrk -c32

``--processes N`` (N > 1) then also runs ``streamrec api --workers N`` (N API processes on one
port, the way replicas share an address) on the same Redis and run, and measures the cached home
and the uncached default policy (-c4, then -c8) there, beside the one-process figures and the bare
app of the same run.

Needs ``wrk`` and ``hey`` (``apt-get install -y wrk hey``); without them a Python load
generator (a separate process, raw keep-alive HTTP/1.1) is used instead: it is slower than
the API and then measures itself more than the server, so prefer wrk/hey.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BARE_APP = '''
import os, sys
from fastapi import FastAPI
from fastapi.responses import Response
import uvicorn
BODY = open(sys.argv[2], "rb").read()
app = FastAPI()

@app.get("/bare")
async def bare():
    return Response(BODY, media_type="application/json")

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
'''


# --- data --------------------------------------------------------------------------------
def synthetic_ml1m(n_users: int, n_items: int, n_inter: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n_cat = 18
    item_cat = rng.integers(0, n_cat, n_items)
    weight = 1.0 / np.arange(1, n_items + 1) ** 0.9  # power-law popularity
    rng.shuffle(weight)
    by_cat = [np.flatnonzero(item_cat == c) for c in range(n_cat)]
    p_cat = [weight[idx] / weight[idx].sum() for idx in by_cat]
    p_all = weight / weight.sum()
    per_user = np.maximum(5, rng.lognormal(np.log(n_inter / n_users) - 0.5, 1.0, n_users).astype(int))
    per_user = np.minimum(per_user, n_items // 3)
    fav = rng.integers(0, n_cat, n_users)
    users, items = [], []
    for u in range(n_users):
        n = per_user[u]
        n_fav = int(n * 0.6)
        a = rng.choice(by_cat[fav[u]], size=min(n_fav, len(by_cat[fav[u]])), replace=False, p=p_cat[fav[u]])
        b = rng.choice(n_items, size=n - len(a), replace=False, p=p_all)
        its = np.unique(np.concatenate([a, b]))
        users.append(np.full(len(its), u))
        items.append(its)
    u = np.concatenate(users)
    i = np.concatenate(items)
    events = pd.DataFrame({"user_id": [f"u{x}" for x in u], "item_id": [f"i{x}" for x in i],
                           "timestamp": 1_700_000_000 + rng.integers(0, 10_000_000, len(u)), "type": "view"})
    meta = pd.DataFrame({"title": [f"Movie {j}" for j in range(n_items)],
                         "category": [f"genre{c}" for c in item_cat], "text": [f"genre{c}" for c in item_cat]},
                        index=[f"i{j}" for j in range(n_items)])
    return events, meta


def train(artifacts: Path, events: pd.DataFrame, meta: pd.DataFrame, epochs: int) -> Path:
    from trainer.artifacts import new_run_dir, save_run, set_current
    from trainer.data.interactions import Interactions
    from trainer.models import make_model

    data = Interactions.from_events(events, item_meta=meta)
    models = {
        "two_tower": make_model("two_tower", epochs=epochs, patience=None, val_fraction=0.0, batch_size=2048).fit(data),
        "ease": make_model("ease").fit(data),
    }
    from ranking.policy import Policy

    policy = Policy.blend({"ease": 1.0, "two_tower": 0.5})  # what the default strategy serves
    run = save_run(new_run_dir(artifacts, "bench"), models, {"primary": "ndcg@10"}, policy=policy)
    set_current(artifacts, run)
    return run


def seed_redis(url: str, events: pd.DataFrame, meta: pd.DataFrame) -> None:
    import redis

    from schemas.keys import Keys

    k = Keys("sr:")
    r = redis.Redis.from_url(url)
    r.flushdb()
    pipe = r.pipeline(transaction=False)
    counts = events["item_id"].value_counts()
    for chunk in range(0, len(counts), 1000):
        part = counts.iloc[chunk:chunk + 1000]
        pipe.zadd(k.pop_global, {str(i): float(c) for i, c in part.items()})
    for item, row in meta.iterrows():
        pipe.hset(k.item(item), mapping={"title": row["title"], "category": row["category"], "level": ""})
    for n, (user, grp) in enumerate(events.sort_values("timestamp").groupby("user_id")):
        its = grp["item_id"].tolist()
        pipe.sadd(k.seen(user), *its)
        pipe.lpush(k.recent(user), *its[-10:])
        if n % 500 == 0:
            pipe.execute()
    pipe.execute()


# --- load --------------------------------------------------------------------------------
def wait_http(url: str, timeout: float = 60) -> None:
    import httpx

    end = time.time() + timeout
    while time.time() < end:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s")


def stop_session(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a process started with ``start_new_session`` (``streamrec up`` and its children): SIGINT
    to the group, SIGKILL if it has not exited in ``timeout``."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _secs(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)?", v)
    num, unit = float(m.group(1)), m.group(2) or "s"
    return num * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, conns: int, duration: int, script: str | None = None) -> dict:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    lat = {p: _secs(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": lat.get("50", float("nan")) * 1000, "p99_ms": lat.get("99", float("nan")) * 1000,
            "errors": int(non2xx.group(1)) if non2xx else 0}


def hey_at_rate(url: str, rate: int, duration: int) -> dict:
    conns = 10
    out = subprocess.run(["hey", "-z", f"{duration}s", "-c", str(conns), "-q", str(rate // conns), url],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    p = {m[0]: float(m[1]) * 1000 for m in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    return {"rps": rps, "p50_ms": p.get("50", float("nan")), "p99_ms": p.get("99", float("nan"))}


PY_LOAD = r'''
import asyncio, sys, time, json
host, port, conns, duration, paths = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
lat = []
async def worker(wid):
    r, w = await asyncio.open_connection(host, port)
    n = wid
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        path = paths[n % len(paths)]; n += conns
        t0 = time.perf_counter()
        w.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await r.readuntil(b"\r\n\r\n")
        size = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
        await r.readexactly(size)
        lat.append(time.perf_counter() - t0)
async def main():
    t0 = time.perf_counter()
    await asyncio.gather(*[worker(i) for i in range(conns)])
    dt = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({"rps": len(lat) / dt, "p50_ms": lat[len(lat)//2]*1000, "p99_ms": lat[int(len(lat)*.99)]*1000, "errors": 0}))
asyncio.run(main())
'''


def py_load(base: str, paths: list[str], conns: int, duration: int) -> dict:
    host, port = base.split("//")[1].split(":")
    out = subprocess.run([sys.executable, "-c", PY_LOAD, host, port, str(conns), str(duration), json.dumps(paths)],
                         capture_output=True, text=True, timeout=duration + 60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def lua_cycle(path: Path, template: str, n: int, start: int = 0) -> str:
    """A wrk script that requests template % (i mod n, i div n) for i = 0, 1, ..."""
    path.write_text(
        f"local i = {start}\n"
        "request = function()\n"
        f"  local a = i % {n}; local b = math.floor(i / {n}); i = i + 1\n"
        f"  return wrk.format(nil, string.format(\"{template}\", a, b))\n"
        "end\n")
    return str(path)


def several_processes(n: int, env: dict, one: str, home: str, uncached_tpl: str, users: int, d: int, tmp: Path,
                      procs: list) -> dict[str, dict]:
    """N API processes on one port (``streamrec api --workers N``) against the same Redis and run:
    the cached home and the uncached default policy, with one process's figures again beside them."""
    from infra.stack import free_port

    port = free_port()
    procs.append(subprocess.Popen([sys.executable, "-m", "infra", "api", "--workers", str(n)],
                                  env={**env, "STREAMREC_API_PORT": str(port)}, cwd=ROOT,
                                  stdout=open(tmp / "api-n.log", "wb"), stderr=subprocess.STDOUT))
    many = f"http://127.0.0.1:{port}"
    wait_http(f"{many}/healthz")
    home_n = home.replace(one, many)
    import httpx

    for _ in range(4 * n):  # every process computes the cached list once
        httpx.get(home_n)
    out = {}
    out["cached home (1 process, again)"] = wrk(home, 32, d)
    out[f"cached home ({n} processes)"] = wrk(home_n, 32, d)
    # k = 20..29: lists no other scenario asked for (k must stay <= max_k); a new cache key per request
    tpl = uncached_tpl.replace("k=1%d", "k=2%d")
    out["uncached home (policy) c4 (1 process, again)"] = wrk(one, 4, d, lua_cycle(tmp / "u1.lua", tpl, users))
    out[f"uncached home (policy) c4 ({n} processes)"] = wrk(many, 4, d, lua_cycle(tmp / "un.lua", tpl, users, users * 3))
    out[f"uncached home (policy) c8 ({n} processes)"] = wrk(many, 8, d, lua_cycle(tmp / "un8.lua", tpl, users, users * 6))
    return out


# --- main --------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=6040)
    ap.add_argument("--items", type=int, default=3706)
    ap.add_argument("--interactions", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--artifacts", type=Path, default=None,
                    help="keep the trained run here and reuse it on the next call (same sizes)")
    ap.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--processes", type=int, default=1,
                    help="also measure N API processes on one port (streamrec api --workers N)")
    args = ap.parse_args()

    from infra.stack import EmbeddedStack, free_port
    from schemas.settings import Settings
    from streams.admin import ensure_topics

    have_wrk = bool(shutil.which("wrk") and shutil.which("hey"))
    if not have_wrk:
        print("wrk/hey not found (apt-get install -y wrk hey): using the Python load generator")
    tmp = Path(tempfile.mkdtemp(prefix="streamrec-bench-"))
    procs: list[subprocess.Popen] = []
    results: dict[str, dict] = {}
    with EmbeddedStack(tmp / "stack") as stack:
        t0 = time.time()
        events, meta = synthetic_ml1m(args.users, args.items, args.interactions)
        print(f"catalog: {args.items} items, {args.users} users, {len(events)} interactions")
        from trainer.artifacts import current_run

        artifacts = args.artifacts or tmp / "artifacts"
        run = current_run(artifacts) if args.artifacts else None
        if run is None:
            run = train(artifacts, events, meta, args.epochs)
            print(f"trained {run.name} in {time.time() - t0:.0f} s")
        else:
            print(f"reusing {run}")
        seed_redis(stack.redis_url, events, meta)
        s = Settings(kafka_bootstrap=stack.kafka_bootstrap, redis_url=stack.redis_url)
        asyncio.run(ensure_topics(s))
        api_port, bare_port = free_port(), free_port()
        env = {**os.environ, "STREAMREC_KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "STREAMREC_REDIS_URL": stack.redis_url,
               "STREAMREC_ARTIFACT_DIR": str(artifacts), "STREAMREC_API_PORT": str(api_port),
               "STREAMREC_DATA_DIR": str(tmp / "data"), "STREAMREC_ADMIN_KEY": "bench"}
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "inference"], env=env, cwd=ROOT,
                                          stdout=open(tmp / "api.log", "wb"), stderr=subprocess.STDOUT))
            api = f"http://127.0.0.1:{api_port}"
            wait_http(f"{api}/healthz")
            import httpx

            home = f"{api}/api/v1/recommendations/home?user_id=bench-user&k=10"
            body = httpx.get(home).content
            httpx.get(home)
            (tmp / "body.json").write_bytes(body)
            procs.append(subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port), str(tmp / "body.json")],
                                          stdout=open(tmp / "bare.log", "wb"), stderr=subprocess.STDOUT))
            bare = f"http://127.0.0.1:{bare_port}/bare"
            wait_http(bare)
            d = args.duration
            uncached_tpl = "/api/v1/recommendations/home?user_id=u%d&k=1%d"  # the default: the run's policy
            model_tpl = "/api/v1/recommendations/home?user_id=u%d&k=3%d&strategy=two_tower"
            similar_tpl = "/api/v1/recommendations/similar/i%d?k=10&_=%d"
            if have_wrk:
                results["bare FastAPI"] = wrk(bare, 32, d)
                results["cached home"] = wrk(home, 32, d)
                results["bare FastAPI (again)"] = wrk(bare, 32, d)
                results["cached home (again)"] = wrk(home, 32, d)
                results["cached home @500/s"] = hey_at_rate(home, 500, d)
                # latency one request at a time (no queueing behind other requests), then throughput at 4
                results["uncached home (policy)"] = wrk(api, 1, d, lua_cycle(tmp / "u.lua", uncached_tpl, args.users))
                results["uncached home (policy) c4"] = wrk(api, 4, d, lua_cycle(tmp / "u4.lua", uncached_tpl, args.users, args.users * 5))
                results["uncached home (two_tower)"] = wrk(api, 1, d, lua_cycle(tmp / "m.lua", model_tpl, args.users))
                hybrid_tpl = "/api/v1/recommendations/home?user_id=u%d&k=2%d&strategy=hybrid"
                results["uncached home (hybrid)"] = wrk(api, 1, d, lua_cycle(tmp / "h.lua", hybrid_tpl, args.users))
                results["similar items"] = wrk(api, 1, d, lua_cycle(tmp / "s.lua", similar_tpl, args.items))
                results["similar items c4"] = wrk(api, 4, d, lua_cycle(tmp / "s4.lua", similar_tpl, args.items, 1000))
            else:
                results["bare FastAPI"] = py_load(bare.rsplit("/", 1)[0], ["/bare"], 32, d)
                results["cached home"] = py_load(api, [home.split(str(api_port))[1]], 32, d)
                results["uncached home (policy)"] = py_load(api, [uncached_tpl % (u, 0) for u in range(args.users)], 1, d)
                results["similar items"] = py_load(api, [similar_tpl % (i, 0) for i in range(args.items)], 1, d)
            metrics = httpx.get(f"{api}/metrics").text
            if args.processes > 1 and have_wrk:
                results.update(several_processes(args.processes, env, api, home, uncached_tpl, args.users, d, tmp, procs))
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    print()
    print(f"{'scenario':32s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}")
    for name, r in results.items():
        print(f"{name:32s} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}" + (f"  ({r['errors']} non-2xx)" if r.get("errors") else ""))
    bare_rps = np.mean([r["rps"] for n, r in results.items() if n.startswith("bare")])
    cached_rps = np.mean([r["rps"] for n, r in results.items() if n.startswith("cached home") and "@" not in n])
    print(f"\ncached / bare: {cached_rps / bare_rps:.2f} (target >= 0.70)")
    if "cached home @500/s" in results:
        print(f"cached p99 at 500 req/s: {results['cached home @500/s']['p99_ms']:.1f} ms (target <= 10)")
    print(f"uncached p99 (the default policy): {results['uncached home (policy)']['p99_ms']:.1f} ms (target <= 30)")
    if args.processes > 1 and f"cached home ({args.processes} processes)" in results:
        n = args.processes
        one_c = results["cached home (1 process, again)"]["rps"]
        many_c = results[f"cached home ({n} processes)"]["rps"]
        one_u = results["uncached home (policy) c4 (1 process, again)"]["rps"]
        many_u = results[f"uncached home (policy) c4 ({n} processes)"]["rps"]
        print(f"{n} processes vs 1 (same run): cached {many_c:.0f} vs {one_c:.0f} req/s ({many_c / one_c:.2f}x), "
              f"uncached policy {many_u:.0f} vs {one_u:.0f} req/s ({many_u / one_u:.2f}x); {os.cpu_count()} cores")
    misses = re.search(r'streamrec_recs_cache_total\{result="miss"\} ([\d.e+]+)', metrics)
    print(f"API cache misses during the run: {misses.group(1) if misses else '?'}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
