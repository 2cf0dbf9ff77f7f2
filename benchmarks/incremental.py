"""Warm-start update against a full retrain, on the same data, in the same run.

MovieLens-100K sorted by time: the first ``N - new`` ratings train a full run with the product's
defaults (``streamrec train --promote``: searches, policy, refit) — the baseline; then the newest
``new`` ratings (default 10 000) arrive and ``streamrec train --incremental --promote`` updates
that run. Prints both wall times (each a fresh ``streamrec`` process, as the product runs them),
the update's per-model seconds, and whether the gate promoted it.

    python benchmarks/incremental.py                 # ML-100K from ../shared/data/ml-100k
    python benchmarks/incremental.py --new 5000 --data path/to/u.data
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--new", type=int, default=10_000, help="newest ratings that arrive after the full run")
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
        full_s, _ = _train(["--interactions", str(old), "--promote"], env)
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


if __name__ == "__main__":
    main()
