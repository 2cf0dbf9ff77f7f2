"""Latency of ``POST /api/v1/recommendations/basket`` by basket size (1, 5, 20, 50 items).

    python benchmarks/basket_latency.py [--data ../shared/data/baskets-dev/completejourney.basket-lines.csv]
                                        [--requests 300] [--top-pairs 100]

Starts an embedded broker + Redis, seeds the pair zsets the stream keeps (``sr:pairs:{item}``,
each item's ``--top-pairs`` strongest co-occurrences in the dataset's baskets) and global
popularity, saves a run holding the basket artefacts of the tuned policy (``basket_index.npz``
and ``basket_policy.json``; by default the policy's most expensive form: conditional links, the
conditional cover over the run's baskets, 200 pairs read per basket item — ``--tune`` tunes it
instead, slowly) and starts the API (``python -m inference``). Then, one request at a time
(keep-alive), for baskets of 1, 5, 20 and 50 known items drawn by popularity:

- ``tuned``: the run's tuned policy (the default profile);
- ``precision``: the shipped profile (switched with ``/admin/reload``), the baseline;
- ``/healthz``: the floor of the same server (HTTP, routing, JSON).

Prints p50 / p99 / max in ms per size and profile. The cost of a basket is bounded:
at most ``TOP_PAIRS`` pairs read per basket item (one Redis script call for the whole basket)
and at most ``COCOVER_BASKETS`` training baskets per basket item in the conditional cover.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT = ROOT.parent / "shared" / "data" / "baskets-dev" / "completejourney.basket-lines.csv"
SIZES = (1, 5, 20, 50)
EXPENSIVE = {"PAIR_NORM": "conditional", "PAIR_RESCALE": False, "COCOVER_RHO": 0.5, "COCOVER_BASKETS": 2000,
             "TOP_PAIRS": 200, "W_POPG": 0.02}


def wait_http(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


def make_run(artifacts: Path, baskets, tune: bool) -> Path:
    """A run (a popularity model) carrying the basket policy and the baskets it reads."""
    from trainer.artifacts import new_run_dir, save_run, set_current
    from trainer.basket_export import POLICY_FILE, save_index, tune_and_save
    from trainer.basket_signals import learn_stats
    from trainer.basket_tuning import COOCCURRENCE
    from trainer.data.interactions import Interactions
    from trainer.models import make_model

    rows = [(b.user_id or "u0", it, b.ts or 0.0, "purchase", b.basket_id) for b in baskets for it in b.items]
    events = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "type", "basket_id"])
    data = Interactions.from_events(events)
    artifacts.mkdir(parents=True, exist_ok=True)
    run = save_run(new_run_dir(artifacts, "basket-latency"), {"popularity": make_model("popularity").fit(data)},
                   {"primary": "ndcg@10"})
    if tune:
        tune_and_save(run, events, n_val=300)
    else:
        save_index(learn_stats(baskets, top_k=1).index, run)
        (run / POLICY_FILE).write_text(json.dumps({"profile": {"default": {**COOCCURRENCE, **EXPENSIVE}},
                                                   "tuning": {"note": "fixed: the most expensive tuned form"}}))
    set_current(artifacts, run)
    return run


def seed_redis(redis_url: str, baskets, top_pairs: int) -> tuple[list[str], np.ndarray]:
    import redis

    from schemas.keys import Keys
    from trainer.basket_signals import learn_stats

    st = learn_stats(baskets, top_k=top_pairs)
    keys = Keys("sr:")
    r = redis.Redis.from_url(redis_url)
    pipe = r.pipeline(transaction=False)
    for n, item in enumerate(st.index.items):
        got = st.signals.pairs["ANY"].get(item)
        if got:
            pipe.zadd(keys.pairs(item), got)
            pipe.zadd(keys.pairs_rev(item), got)  # counts are symmetric
        if n % 2000 == 1999:
            pipe.execute()
    pipe.zadd(keys.pop_global, {i: float(c) for i, c in zip(st.index.items, st.pop) if c > 0})
    pipe.execute()
    return st.index.items, st.pop


def measure(client, path: str, bodies: list[dict] | None, n: int) -> np.ndarray:
    out = []
    for i in range(n):
        t = time.perf_counter()
        r = client.post(path, json=bodies[i % len(bodies)]) if bodies is not None else client.get(path)
        out.append((time.perf_counter() - t) * 1e3)
        if r.status_code != 200:
            raise RuntimeError(f"{path}: {r.status_code} {r.text[:200]}")
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT)
    ap.add_argument("--requests", type=int, default=300, help="requests per size and profile")
    ap.add_argument("--top-pairs", type=int, default=100, help="pairs kept per item in Redis (the stream prunes too)")
    ap.add_argument("--tune", action="store_true", help="tune the run's policy instead of the fixed expensive one")
    args = ap.parse_args()
    if not args.data.exists():
        print(f"no data at {args.data} (see ../shared/data/baskets-dev/PROVENANCE.md)")
        return
    import httpx

    from infra.stack import EmbeddedStack, free_port
    from trainer.data.baskets import read_any

    baskets = read_any(args.data)
    with tempfile.TemporaryDirectory() as td, EmbeddedStack(Path(td) / "stack") as stack:
        tmp = Path(td)
        t0 = time.perf_counter()
        items, pop = seed_redis(stack.redis_url, baskets, args.top_pairs)
        make_run(tmp / "artifacts", baskets, args.tune)
        print(f"{args.data.name}: {len(baskets)} baskets, {len(items)} items; Redis seeded and run saved "
              f"in {time.perf_counter() - t0:.0f}s")
        port = free_port()
        env = {**os.environ, "STREAMREC_KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "STREAMREC_REDIS_URL": stack.redis_url,
               "STREAMREC_ARTIFACT_DIR": str(tmp / "artifacts"), "STREAMREC_API_PORT": str(port),
               "STREAMREC_DATA_DIR": str(tmp / "data"), "STREAMREC_ADMIN_KEY": "bench",
               "STREAMREC_EMIT_IMPRESSIONS": "false"}
        with open(tmp / "api.log", "wb") as log:
            api = subprocess.Popen([sys.executable, "-m", "inference"], env=env, cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_http(f"{base}/healthz")
            rng = np.random.default_rng(0)
            p = pop / pop.sum()
            bodies = {n: [{"product_ids": [items[j] for j in rng.choice(len(items), n, replace=False, p=p)], "k": 10}
                          for _ in range(50)] for n in SIZES}
            rows = []
            with httpx.Client(base_url=base, timeout=30, headers={"X-Admin-Key": "bench"}) as c:
                floor = measure(c, "/healthz", None, args.requests)
                for profile in ("tuned", "precision"):
                    r = c.post("/admin/reload", json={"profile": profile})
                    assert r.status_code == 200, r.text
                    for n in SIZES:
                        measure(c, "/api/v1/recommendations/basket", bodies[n], 20)  # warm-up
                        got = c.post("/api/v1/recommendations/basket", json=bodies[n][0]).json()
                        ms = measure(c, "/api/v1/recommendations/basket", bodies[n], args.requests)
                        rows.append((profile, got["profile"], n, *np.percentile(ms, [50, 99]), ms.max()))
            print(f"\n/healthz (the floor): p50 {np.percentile(floor, 50):.2f} ms, p99 {np.percentile(floor, 99):.2f} ms\n")
            print("| profile | items in the basket | p50 ms | p99 ms | max ms |")
            print("|---|---|---|---|---|")
            for profile, served, n, p50, p99, mx in rows:
                print(f"| {profile}{'' if served == profile else f' (served {served})'} | {n} | {p50:.2f} | {p99:.2f} | {mx:.2f} |")
        finally:
            api.terminate()
            try:
                api.wait(10)
            except subprocess.TimeoutExpired:
                api.kill()


if __name__ == "__main__":
    main()
