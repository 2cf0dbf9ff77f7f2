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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--new", type=int, default=10_000, help="newest ratings that arrive after the full run")
    ap.add_argument("--freshness", action="store_true",
                    help="also retrain from scratch on all the data and count new items in served lists")
    args = ap.parse_args()
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
