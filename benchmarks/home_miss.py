"""The home list's miss path and cached path, this checkout against another one, alternating.

    python benchmarks/home_miss.py [--baseline DIR] [--users 400] [--rounds 3]

One embedded broker and Redis (3,000 popular items); for each round and each checkout, a child
process (``PYTHONPATH=<checkout>``) runs the API in-process (ASGI, lifespan on) and asks for the
home list of USERS new users one after another (each a miss: the home script, the policy, the
store) and then again (each a hit in the process). Prints p50/p99 per checkout. Without
``--baseline`` only this checkout is measured. Figures, not asserts: the machine is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import asyncio, json, sys, time, uuid
import httpx
from inference.app import create_app
from schemas.settings import Settings

async def main(redis_url, kafka, users, data):
    s = Settings(redis_url=redis_url, kafka_bootstrap=kafka, data_dir=data, artifact_dir=data + "/artifacts",
                 emit_impressions=False)
    app = create_app(s)
    async with app.router.lifespan_context(app):
        rt = app.state.runtime
        for _ in range(100):
            if rt.local.live:
                break
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
            tag = uuid.uuid4().hex[:6]
            miss, hit = [], []
            for j in range(users):
                for out in (miss, hit):
                    t0 = time.perf_counter()
                    r = await c.get("/api/v1/recommendations/home", params={"user_id": f"m{tag}-{j}", "k": 10})
                    out.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200 and r.json()["items"]
            await asyncio.sleep(0.5)
    print(json.dumps({"miss": miss, "hit": hit, "code": sys.modules["inference.home"].__file__}))

asyncio.run(main(*sys.argv[1:3], int(sys.argv[3]), sys.argv[4]))
"""


def q(xs: list[float], f: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(f * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path)
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    import redis

    from infra.stack import EmbeddedStack

    checkouts = [("this", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    got: dict[str, dict[str, list[float]]] = {name: {"miss": [], "hit": []} for name, _ in checkouts}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(Path(tmp) / "stack") as stack:
        redis.Redis.from_url(stack.redis_url).zadd("sr:pop:global", {f"i{j}": 3000 - j for j in range(3000)})
        print(f"load average before {os.getloadavg()}")
        for r in range(args.rounds):
            for name, path in (checkouts if r % 2 == 0 else checkouts[::-1]):
                env = {**os.environ, "PYTHONPATH": str(path)}
                out = subprocess.run([sys.executable, "-c", CHILD, stack.redis_url, stack.kafka_bootstrap,
                                      str(args.users), tmp], env=env, cwd=tmp, capture_output=True, text=True)
                if out.returncode != 0:
                    raise SystemExit(f"{name}: {out.stderr[-2000:]}")
                doc = json.loads(out.stdout.strip().splitlines()[-1])
                assert Path(doc["code"]).resolve().is_relative_to(path), doc["code"]
                for kind in ("miss", "hit"):
                    got[name][kind] += doc[kind]
                print(f"  round {r + 1} {name:8s} miss p50 {q(doc['miss'], 0.5):.2f} ms p99 {q(doc['miss'], 0.99):.2f} ms; "
                      f"hit p50 {q(doc['hit'], 0.5):.2f} ms p99 {q(doc['hit'], 0.99):.2f} ms")
        print(f"load average after {os.getloadavg()}")
    for name, _ in checkouts:
        m, h = got[name]["miss"], got[name]["hit"]
        print(f"{name:8s} ({len(m)} users): miss p50 {q(m, 0.5):.2f} ms p99 {q(m, 0.99):.2f} ms; "
              f"hit p50 {q(h, 0.5):.2f} ms p99 {q(h, 0.99):.2f} ms")


if __name__ == "__main__":
    main()
