"""The cached home path with and without an experiment running, on one stack, rounds interleaved.

    python benchmarks/experiment_serving.py [--rounds 3] [--duration 6]

Starts ``streamrec up --demo`` in a scratch data dir (the demo's own experiment is stopped first), then in each round measures the cached home
list of one user (wrk -t1 -c32, requests/s; hey -c10 at 500 req/s, p99) with no experiment, then
with a two-arm experiment running (created through ``POST /admin/experiments``, stopped after the
round; the user falls in one of its arms), then a bare FastAPI app returning the same body (the
serving check's reference). The baseline is measured in the same run, alternating, so the
machine's load affects both alike. Needs ``wrk`` and ``hey``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.serving import BARE_APP, hey_at_rate, stop_session, wait_http, wrk  # noqa: E402 - after the path


def wrk_rps(url: str, seconds: int) -> float:
    return wrk(url, 32, seconds)["rps"]


def hey_p99_ms(url: str, seconds: int) -> float:
    """p99 at 500 req/s (hey -c10 -q50), as the serving check measures it."""
    return hey_at_rate(url, 500, seconds)["p99_ms"]


def pick_cost_us(n: int = 200_000) -> tuple[float, float, float, float]:
    """Microseconds per request of the arm assignment (``ExperimentBook.pick``): no experiment, one
    running experiment, three in one namespace (each owning a slice: two hashes each), all computed
    afresh; and a user seen since the last refresh (memoised, the cached path's usual case)."""
    import timeit

    sys.path.insert(0, str(ROOT))
    from inference.experiments import ExperimentBook
    from ranking.experiments import Experiment

    class Models:
        @staticmethod
        def holds(run):  # noqa: ANN001, ANN205
            return True

    book = ExperimentBook(None, None, Models())  # type: ignore[arg-type]
    users = [f"user-{i}" for i in range(1000)]
    out = []
    for running in ([], [Experiment.create("one", {"a": 0.5, "b": 0.5})],
                    [Experiment.create(f"s{i}", {"a": 0.5, "b": 0.5}, namespace="home",
                                       traffic=(i / 3, (i + 1) / 3)) for i in range(3)]):
        book.running = running
        t = timeit.timeit(lambda: [book.pick(u, now=0.0) for u in users], number=n // len(users))
        out.append(t / n * 1e6)
    [book.pick(u) for u in users]
    t = timeit.timeit(lambda: [book.pick(u) for u in users], number=n // len(users))
    return out[0], out[1], out[2], t / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    args = ap.parse_args()
    none, one, three, memo = pick_cost_us()
    print(f"assignment per request: no experiment {none:.2f} µs; computed: one experiment {one:.2f} µs, "
          f"three in a namespace {three:.2f} µs; a user seen since the last refresh {memo:.2f} µs", flush=True)
    if not (shutil.which("wrk") and shutil.which("hey")):
        sys.exit("needs wrk and hey (apt-get install -y wrk hey)")
    data = Path(tempfile.mkdtemp(prefix="sr-expbench-"))
    port = 18900 + os.getpid() % 90
    env = {**os.environ, "STREAMREC_DATA_DIR": str(data), "STREAMREC_ADMIN_KEY": "bench"}
    sr = Path(sys.executable).parent / "streamrec"
    up = subprocess.Popen([str(sr), "up", "--demo", "--api-port", str(port)], cwd=data, env=env,
                          stdout=open(data / "up.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    bare = None
    try:
        api = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{api}/healthz", timeout=180)
        except TimeoutError:
            sys.exit(f"stack not healthy: {(data / 'up.log').read_text()[-2000:]}")
        time.sleep(5)
        admin = {"X-Admin-Key": "bench"}
        for running in httpx.get(f"{api}/api/v1/experiments").json()["running"]:  # the demo's own: stopped
            httpx.post(f"{api}/admin/experiments/{running}/stop", headers=admin).raise_for_status()
        time.sleep(1)
        url = f"{api}/api/v1/recommendations/home?user_id=bench-user&k=10"
        assert "experiment" not in httpx.get(url).json() or httpx.get(url).json()["experiment"] is None
        body = httpx.get(url).content
        (data / "body.json").write_bytes(body)
        (data / "bare.py").write_text(BARE_APP)
        bport = port + 1000
        bare = subprocess.Popen([sys.executable, str(data / "bare.py"), str(bport), str(data / "body.json")])
        time.sleep(3)
        rows = []
        for r in range(args.rounds):
            httpx.get(url), httpx.get(url)
            plain = (wrk_rps(url, args.duration), hey_p99_ms(url, args.duration))
            got = httpx.post(f"{api}/admin/experiments", headers=admin, json={
                "name": f"bench-{os.getpid()}-{r}", "namespace": "bench", "arms": [{"name": "control", "share": 0.5},
                                                             {"name": "treatment", "share": 0.5, "strategy": "popularity"}]})
            got.raise_for_status()
            time.sleep(1)
            served = httpx.get(url).json()
            httpx.get(url)
            assert served.get("experiment") == f"bench-{os.getpid()}-{r}", served
            with_exp = (wrk_rps(url, args.duration), hey_p99_ms(url, args.duration))
            httpx.post(f"{api}/admin/experiments/bench-{os.getpid()}-{r}/stop", headers=admin)
            b = wrk_rps(f"http://127.0.0.1:{bport}/bare", args.duration)
            rows.append((plain, with_exp, b, served["arm"]))
            print(f"round {r + 1}: no experiment {plain[0]:.0f}/s p99 {plain[1]:.1f} ms | experiment running "
                  f"(arm {served['arm']}) {with_exp[0]:.0f}/s p99 {with_exp[1]:.1f} ms | bare FastAPI {b:.0f}/s",
                  flush=True)
        n = len(rows)
        avg = lambda xs: sum(xs) / n  # noqa: E731
        p_rps, e_rps, b_rps = avg([x[0][0] for x in rows]), avg([x[1][0] for x in rows]), avg([x[2] for x in rows])
        p99_p, p99_e = avg([x[0][1] for x in rows]), avg([x[1][1] for x in rows])
        print(json.dumps({"no_experiment_rps": round(p_rps), "experiment_rps": round(e_rps), "bare_rps": round(b_rps),
                          "ratio_no_experiment": round(p_rps / b_rps, 2), "ratio_experiment": round(e_rps / b_rps, 2),
                          "p99_ms_no_experiment": round(p99_p, 1), "p99_ms_experiment": round(p99_e, 1)}))
    finally:
        if bare is not None:
            bare.terminate()
            bare.wait(10)
        stop_session(up)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
