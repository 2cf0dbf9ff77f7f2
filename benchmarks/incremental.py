"""Warm-start update against a full retrain, on the same data, in the same run.

MovieLens-100K sorted by time: the first ``N - new`` ratings train a full run with the product's
defaults (``streamrec train --promote``: searches, policy, refit) — the baseline; then the newest
``new`` ratings (default 10 000) arrive and ``streamrec train --incremental --promote`` updates
that run. Prints both wall times (each a fresh ``streamrec`` process, as the product runs them),
the update's per-model seconds, and whether the gate promoted it.

    python benchmarks/incremental.py                 # ML-100K from ../shared/data/ml-100k
    python benchmarks/incremental.py --new 5000 --data path/to/u.data
    python benchmarks/incremental.py --freshness     # + a full retrain on all the data; model freshness

``--freshness`` answers: how long until an item that first appears among the new ratings is in
the lists the champion policy serves, under each schedule? It also retrains from scratch on all
the data (the full-retrain schedule), then serves every user the policy's home list
(``trainer.policy_eval.policy_lists``, the API's ranking path, signals from all the ratings) from
the run before, the update and the full retrain, and counts the new items in those lists. The
time from an item's first event is the schedule's trigger (the settings: at most its interval,
sooner once its event count arrives), plus the scheduler's poll, plus the run's measured
training and gate. The API's reload on ``model-updates`` is not timed here: see the freshness check.

``--live`` times the same thing through the running stack instead of computing it
(``live_freshness``): ``streamrec up --no-scheduler`` in a scratch folder; synthetic taste data
(``--live-users`` users in 5 tastes, each with ``--live-per-user`` clicks) produced to its
broker; a full ``streamrec train --promote`` on it (the baseline, timed); then the scheduler as
``streamrec up`` runs it (``python -m trainer.scheduler``: niced, SCHED_IDLE) on a short update
schedule (``--update-interval`` s or ``--update-events`` events; no full retrain due). Once it
settled, the fans of one taste click a new item (``--update-events`` clicks, one burst), and the
clock runs from that first event until the API serves the new item from the champion's model:
``/similar/i_new`` answers with the run's embedding neighbours ("similar to", not "often bought
with"), and the home list of a user of that taste who never saw it holds it. The API's
impressions are off (``STREAMREC_EMIT_IMPRESSIONS=false``): the probes would otherwise be
traffic of their own, counting towards the trigger. The monitor looks once at the start
(``STREAMREC_MONITOR_INTERVAL_S`` long): a look holds the scheduler's loop while it reads the
topic's end (``trainer.data_quality``, up to 10 s), and it is not what is measured here.

    python benchmarks/incremental.py --live                        # 400 users, 200 items, ~8000 clicks
    python benchmarks/incremental.py --live --update-interval 120 --update-events 1000
    python benchmarks/incremental.py --live --scheduler-priority normal   # the scheduler not niced / idle
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"


def _train(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "infra", "train", *args, "--no-progress"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"streamrec train {' '.join(args)} failed:\n{out.stderr[-2000:]}")
    return seconds, out.stdout


def _served_new_items(run: Path, all_csv: Path, new_items: set[str]) -> dict[str, int]:
    """For ``run``: how many of ``new_items`` its models can score, and how many are in at least one
    user's served list of 10 (the home list) and of 100 (a deeper page), with the lists holding one."""
    sys.path.insert(0, str(ROOT))
    from schemas.settings import Settings
    from trainer.artifacts import load_run
    from trainer.base import normalize_rows
    from trainer.candidates import PolicyScorer
    from trainer.data.sources import load_source
    from trainer.pipeline import dataset_from_source
    from trainer.policy_eval import item_infos, policy_lists
    from trainer.signals import OfflineSignals

    data = dataset_from_source(load_source(all_csv), Settings())
    loaded = load_run(run)
    scorer = PolicyScorer(loaded.models, loaded.item_ids, {n: normalize_rows(e) for n, e in loaded.embeddings.items()})
    lists = policy_lists(scorer, loaded.policy, OfflineSignals(data), [str(u) for u in data.user_ids], 100,
                         item_infos(data))
    out = {"known": len(new_items & set(map(str, loaded.item_ids)))}
    for k in (10, 100):
        shown = [{str(i) for i, _ in home.items[:k]} & new_items for home in lists.values()]
        out[f"items@{k}"], out[f"lists@{k}"] = len(set().union(*shown)), sum(1 for s in shown if s)
    return out


def _freshness(env: dict[str, str], all_csv: Path, new_items: set[str], runs: dict[str, tuple[Path, float]]) -> None:
    sys.path.insert(0, str(ROOT))
    from schemas.settings import Settings

    s = Settings()
    poll = max(1.0, min(30.0, s.retrain_interval_s / 10))
    print(f"\nmodel freshness: {len(new_items)} items first seen among the new ratings")
    print("| schedule | trigger after an item's first event (settings) | run (train + gate, measured) "
          "| new items the models score | in a top-10 served list (lists) | in a top-100 (lists) |")
    print("|---|---|---:|---:|---:|---:|")
    trigger = {
        "no run yet (serving the run before)": "—",
        "warm-start update": f"≤ {s.update_interval_s:g} s, or once {s.update_min_new_events} events arrived; "
                             f"+ ≤ {poll:g} s poll",
        "full retrain": f"≤ {s.retrain_interval_s:g} s, or {s.retrain_min_new_events} events / "
                        f"{s.retrain_min_new_feedback} feedbacks; + ≤ {poll:g} s poll",
    }
    for name, (run, seconds) in runs.items():
        got = _served_new_items(run, all_csv, new_items)
        took = f"{seconds:.1f} s" if seconds else "—"
        print(f"| {name} | {trigger[name]} | {took} | {got['known']} of {len(new_items)} "
              f"| {got['items@10']} ({got['lists@10']}) | {got['items@100']} ({got['lists@100']}) |", flush=True)


# --- the live measurement (--live) -------------------------------------------------------------
TASTES = 5


def taste_clicks(users: int, items: int, per_user: int, seed: int = 0) -> list[dict]:
    """Clicks where user ``u`` likes the items of taste ``u % 5`` (most of its clicks) and a few others."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for u in range(users):
        own = [j for j in range(items) if j % TASTES == u % TASTES]
        other = [j for j in range(items) if j % TASTES != u % TASTES]
        picks = (list(rng.choice(own, min(per_user - 3, len(own)), replace=False))
                 + list(rng.choice(other, 3, replace=False)))
        out += [{"event_id": f"b{u}-{t}", "type": "click", "user_id": f"u{u}", "item_id": f"i{j}",
                 "ts": 1_700_000_000.0 + u * per_user + t, "context": {}} for t, j in enumerate(picks)]
    return out


def _produce(bootstrap: str, topic: str, events: list[dict]) -> None:
    import asyncio

    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await p.start()
        try:
            for e in events:
                await p.send(topic, json.dumps(e).encode(), key=e["user_id"].encode())
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(go())


def live_freshness(args: argparse.Namespace) -> None:
    import os
    import signal

    import httpx

    sys.path.insert(0, str(ROOT))
    from infra.stack import free_port
    from tests.integration.support import wait_until  # the integration tests' poll, the same stack

    scratch = Path(tempfile.mkdtemp(prefix="live-freshness-"))
    port = free_port()
    base_env = {**{k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")},
                "STREAMREC_DATA_DIR": str(scratch / "data"), "STREAMREC_ARTIFACT_DIR": str(scratch / "artifacts"),
                "STREAMREC_API_PORT": str(port), "STREAMREC_EMIT_IMPRESSIONS": "false",
                "STREAMREC_SEARCH_INDEX_ON_TRAIN": "false"}
    up = subprocess.Popen([sys.executable, "-m", "infra", "up", "--no-scheduler"], cwd=scratch, env=base_env,
                          stdout=open(scratch / "up.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    scheduler = None
    try:
        stack = wait_until(lambda: (scratch / "data" / "stack.json").exists()
                           and json.loads((scratch / "data" / "stack.json").read_text()), 180, every=0.5)
        env = {**base_env, "STREAMREC_KAFKA_BOOTSTRAP": stack["kafka_bootstrap"],
               "STREAMREC_REDIS_URL": stack["redis_url"]}
        from schemas.settings import Settings

        s = Settings(_env_file=None, **{k[10:].lower(): v for k, v in env.items() if k.startswith("STREAMREC_")})
        topic = f"{s.topic_prefix}interactions"
        base = taste_clicks(args.live_users, args.live_items, args.live_per_user)
        _produce(stack["kafka_bootstrap"], topic, base)
        print(f"stack up ({stack['api_url']}); {len(base)} clicks produced "
              f"({args.live_users} users, {args.live_items} items, {TASTES} tastes)", flush=True)
        full_s, out = _train(["--promote"], env)
        first = Path(out.strip().splitlines()[-1]).name
        print(f"full retrain (defaults, `streamrec train --promote`, replay included): {full_s:.1f} s -> {first}",
              flush=True)

        schedule = {"STREAMREC_UPDATE_INTERVAL_S": str(args.update_interval),
                    "STREAMREC_UPDATE_MIN_NEW_EVENTS": str(args.update_events),
                    "STREAMREC_RETRAIN_MIN_NEW_EVENTS": str(10**9), "STREAMREC_MONITOR_INTERVAL_S": "86400"}
        if args.scheduler_priority == "normal":  # not the product's default: to tell waiting for the CPU apart
            schedule.update(STREAMREC_SCHEDULER_IDLE_CPU="false", STREAMREC_SCHEDULER_NICE="0")
        state_file = scratch / "data" / "scheduler.json"
        scheduler = subprocess.Popen([sys.executable, "-m", "trainer.scheduler"], cwd=scratch, env={**env, **schedule},
                                     stdout=open(scratch / "scheduler.log", "w"), stderr=subprocess.STDOUT)

        def state() -> dict:
            try:
                return json.loads(state_file.read_text())
            except (OSError, ValueError):
                return {}

        # the scheduler's first pass: the monitor's look, then an update the clicks counted so far make
        # due, which finds nothing new in the log (the full run read it) and only consumes the counter
        wait_until(lambda: state().get("last_update_at"), 300, every=0.5)
        settled = state()["last_update_at"]
        fans = [f"u{u}" for u in range(TASTES * 2, args.live_users, TASTES)][: max(1, args.update_events // 2)]
        probes = [f"u{u}" for u in range(0, TASTES * 2, TASTES)]  # taste 0, never clicked i_new
        burst = [{"event_id": f"new-{n}", "type": "click", "user_id": u, "item_id": "i_new",
                  "ts": time.time() + n * 1e-3, "context": {}}
                 for n, u in enumerate((fans * 2)[: max(args.update_events, 2)])]
        t0 = time.monotonic()
        _produce(stack["kafka_bootstrap"], topic, burst)
        seen: dict[str, float] = {}
        with httpx.Client(base_url=stack["api_url"], timeout=30) as c:
            while time.monotonic() - t0 < args.live_timeout and len(seen) < 3:
                now = time.monotonic() - t0
                if "update promoted" not in seen and state().get("last_update_at", settled) != settled:
                    if (Path(s.artifact_dir) / "run_current").resolve().name != first:
                        seen["update promoted"] = now
                sim = c.get(f"/api/v1/recommendations/similar/i_new", params={"k": 10})
                if ("similar" not in seen and sim.status_code == 200 and sim.json()["model_version"] != first
                        and sim.json()["items"] and sim.json()["items"][0]["reason"].startswith("similar to")):
                    seen["similar"] = now
                if "home" not in seen:
                    for u in probes:
                        body = c.get("/api/v1/recommendations/home", params={"user_id": u, "k": 10}).json()
                        if body["model_version"] != first and "i_new" in [i["item_id"] for i in body["items"]]:
                            seen["home"] = now
                            break
                time.sleep(1.0)
        st = state()
        print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
              f"scheduler priority: {args.scheduler_priority}")
        print(f"schedule: update every {args.update_interval:g} s or once {args.update_events} events arrived; "
              f"scheduler poll {max(1.0, min(30.0, s.retrain_interval_s / 10)):g} s; a due run waits while the "
              f"counter still moves (≤ {s.retrain_max_delay_s:g} s)")
        print(f"new item: {len(burst)} clicks by {len(fans)} users of taste 0, one burst; probes {', '.join(probes)}")
        print(f"the update: {st.get('last_update')} ({st.get('last_update_message', '')[:120]}); "
              f"its models {st.get('last_update_seconds')} s")
        print("| from the new item's first event to | seconds (live) |")
        print("|---|---:|")
        for what, label in (("update promoted", "the update promoted (run_current moved)"),
                            ("similar", "/similar/i_new from the run's embeddings"),
                            ("home", "in a taste-0 user's home list (champion policy)")):
            took = f"{seen[what]:.1f}" if what in seen else f"not within {args.live_timeout:g} s"
            print(f"| {label} | {took} |")
        poll = max(1.0, min(30.0, s.retrain_interval_s / 10))
        computed = poll + poll + float(st.get("last_update_seconds") or 0.0)
        print(f"computed for this schedule (the way --freshness does): the burst crosses {args.update_events} events "
              f"at once; ≤ {poll:g} s to the next poll, one more poll while the counter moved, + the update's "
              f"models {st.get('last_update_seconds')} s (+ replay, gate, save, reload) = up to ~{computed:.0f} s",
              flush=True)
    finally:
        if scheduler is not None:
            scheduler.send_signal(signal.SIGTERM)
            try:
                scheduler.wait(60)
            except subprocess.TimeoutExpired:
                scheduler.kill()
        try:
            os.killpg(up.pid, signal.SIGINT)
            up.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(up.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        print(f"logs: {scratch}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--new", type=int, default=10_000, help="newest ratings that arrive after the full run")
    ap.add_argument("--freshness", action="store_true",
                    help="also retrain from scratch on all the data and count new items in served lists")
    ap.add_argument("--live", action="store_true", help="time model freshness through the running stack instead")
    ap.add_argument("--live-users", type=int, default=400)
    ap.add_argument("--live-items", type=int, default=200)
    ap.add_argument("--live-per-user", type=int, default=20)
    ap.add_argument("--update-interval", type=float, default=60.0, help="--live: STREAMREC_UPDATE_INTERVAL_S")
    ap.add_argument("--update-events", type=int, default=60, help="--live: STREAMREC_UPDATE_MIN_NEW_EVENTS")
    ap.add_argument("--live-timeout", type=float, default=600.0)
    ap.add_argument("--scheduler-priority", choices=["idle", "normal"], default="idle",
                    help="--live: idle = as `streamrec up` runs it (nice 10, SCHED_IDLE); normal = neither")
    args = ap.parse_args()
    if args.live:
        live_freshness(args)
        return
    if not args.data.exists():
        sys.exit(f"no dataset at {args.data}: MovieLens-100K is read from ../shared/data/ml-100k "
                 "(not in the repository); pass --data")
    import pandas as pd

    ev = pd.read_csv(args.data, sep="\t", names=["user_id", "item_id", "value", "timestamp"])
    ev = ev.sort_values("timestamp", kind="stable")
    ev["type"] = "rate"
    cols = ["user_id", "item_id", "timestamp", "type", "value"]
    with tempfile.TemporaryDirectory() as tmp:
        old, full = Path(tmp) / "old.csv", Path(tmp) / "all.csv"
        ev.iloc[: len(ev) - args.new][cols].to_csv(old, index=False)
        ev[cols].to_csv(full, index=False)
        env = {"STREAMREC_ARTIFACT_DIR": f"{tmp}/artifacts", "STREAMREC_DATA_DIR": f"{tmp}/data",
               "STREAMREC_SEARCH_INDEX_ON_TRAIN": "false", "PATH": "/usr/bin:/bin"}
        full_s, out = _train(["--interactions", str(old), "--promote"], env)
        base_run = Path(out.strip().splitlines()[-1])
        print(f"full retrain (defaults, {len(ev) - args.new} ratings): {full_s:.1f} s", flush=True)
        inc_s, out = _train(["--interactions", str(full), "--incremental", "--promote"], env)
        run = Path(out.strip().splitlines()[-1])
        metrics = json.loads((run / "metrics.json").read_text())
        new_items = len(set(ev.iloc[len(ev) - args.new:]["item_id"]) - set(ev.iloc[: len(ev) - args.new]["item_id"]))
        print(f"incremental update ({metrics['incremental']['new_events']} new ratings, "
              f"{metrics['incremental']['users_touched']} users touched, {new_items} new items): {inc_s:.1f} s "
              f"({inc_s / full_s:.2f} × the full retrain)")
        for name, how in metrics["incremental"]["models"].items():
            print(f"  {name}: {how}, {metrics['fit_seconds'][name]:.1f} s")
        print("  " + "\n  ".join(line for line in out.splitlines() if "promot" in line.lower() or "refus" in line.lower()))
        if args.freshness:
            again_s, out = _train(["--interactions", str(full)], env)
            print(f"full retrain on all {len(ev)} ratings: {again_s:.1f} s", flush=True)
            fresh = set(ev.iloc[len(ev) - args.new:]["item_id"].astype(str)) - set(
                ev.iloc[: len(ev) - args.new]["item_id"].astype(str))
            _freshness(env, full, fresh, {"no run yet (serving the run before)": (base_run, 0.0),
                                          "warm-start update": (run, inc_s),
                                          "full retrain": (Path(out.strip().splitlines()[-1]), again_s)})


if __name__ == "__main__":
    main()
