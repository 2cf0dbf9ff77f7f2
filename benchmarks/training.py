"""Training cost per model: fit seconds, epochs, events per second per epoch, peak memory.

Each model is fitted with the product's defaults (``trainer.tuning.DEFAULT_PARAMS``, the
middle of its grid otherwise) on the whole of a dataset, in a process of its own so that its
peak memory (max RSS) is its own. EASE, the cheapest strong model, is the baseline measured in
the same run; every row gives its time against EASE's. Then ``streamrec train`` with its
defaults (searches included) is timed on the same data, as the product runs it: on every core
(its default: fits side by side, ``trainer.fit_pool``) and in one process (the scheduler's way), wall
and CPU seconds, with the load average before and after (the machine may be shared).

    python benchmarks/training.py                      # ML-100K from ../shared/data/ml-100k
    python benchmarks/training.py --models ease rp3beta multvae --no-train
    python benchmarks/training.py --data path/to/ratings.dat --max-user 2999   # ML-1M users 1-2999
    python benchmarks/training.py --synthetic-ml1m --no-models   # no ML-1M here: synthetic data of its size
    python benchmarks/training.py --profile fast       # STREAMREC_TRAIN_PROFILE=fast
    python benchmarks/training.py --profile full       # the models and grids before the time budget
    python benchmarks/training.py --no-models --train-workers 0   # only `streamrec train` on every core

The device is the one ``trainer.device`` chooses (CUDA when a GPU is present); it is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k" / "u.data"
MODELS = ["ease", "rp3beta", "itemknn", "lightfm", "multvae", "two_tower"]  # the retrain's and ItemKNN; NCF: --models
PROFILE = "default"  # --profile: the training profile (STREAMREC_TRAIN_PROFILE) the figures are for


def _dataset(path: Path, max_user: int | None):
    from schemas.settings import Settings
    from trainer.data.sources import load_source
    from trainer.pipeline import dataset_from_source

    source = load_source(path)
    if max_user is not None:  # MovieLens-1M users 1..max_user (the "about 490k ratings")
        ids = pd.to_numeric(source.events["user_id"], errors="coerce")
        source.events = source.events[ids <= max_user]
    return dataset_from_source(source, Settings(train_threads=1))


def fit_one(name: str, path: Path, max_user: int | None) -> dict:
    """Fit ``name`` once in this process; its figures as a dict."""
    from trainer.device import describe, pick_device
    from trainer.models import make_model
    from trainer.pipeline import _limit_threads
    from trainer.tuning import profile

    defaults, grids = profile(PROFILE)
    _limit_threads(1)
    data = _dataset(path, max_user)
    params = dict(defaults.get(name, {}))
    for p, values in grids.get(name, {}).items():  # the middle of the grid
        params.setdefault(p, values[len(values) // 2])
    model = make_model(name, **params)
    t0 = time.perf_counter()
    model.fit(data)
    seconds = time.perf_counter() - t0
    history = getattr(model, "history_", None) or []
    epochs = len(history) or None
    events = int(data.matrix.nnz)
    return {"model": name, "fit_s": round(seconds, 2), "epochs": epochs,
            "events_per_s_per_epoch": round(events * epochs / seconds) if epochs else None,
            "events": events, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "device": describe(pick_device()), "params": {k: str(v) for k, v in params.items()}}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes: on a shared machine the
    wall time of a run stretches with the load, its CPU time much less."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def train_default(path: Path, workers: int) -> dict:
    """``streamrec train`` with its defaults (searches included), timed from outside: wall and CPU
    seconds (its own and its fit workers'). ``workers``: ``STREAMREC_TRAIN_WORKERS`` (0: every core, the
    default; 1: one process, as the scheduler trains). The search index is left out (it is built only
    when the catalogue's texts change, with a model of its own; docs/search-reranking.md)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"STREAMREC_ARTIFACT_DIR": f"{tmp}/artifacts", "STREAMREC_DATA_DIR": f"{tmp}/data",
               "STREAMREC_TRAIN_PROFILE": PROFILE, "STREAMREC_TRAIN_WORKERS": str(workers),
               "STREAMREC_SEARCH_INDEX_ON_TRAIN": "false", "PATH": "/usr/bin:/bin"}
        load = os.getloadavg()[0]
        t0, cpu0 = time.perf_counter(), _children_cpu()
        out = subprocess.run([sys.executable, "-m", "infra", "train", "--interactions", str(path), "--no-progress"],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        if out.returncode != 0:
            return {"workers": workers, "error": out.stderr[-1000:]}
        run = Path(out.stdout.strip().splitlines()[-1])
        metrics = json.loads((run / "metrics.json").read_text())
        pool = metrics.get("fit_pool", {})
        # the critical path: all CPU time but the workers', plus what the training process waited for them
        # to compute. It is the wall time on an idle machine with these cores, whatever the load now
        critical = cpu - pool.get("workers_cpu_s", 0.0) + pool.get("waited_cpu_s", 0.0)
        return {"workers": workers, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
                "critical_path_cpu_seconds": round(critical, 1), "fit_pool": pool,
                "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1),
                "policy": metrics.get("policy"), "validation_ndcg@10": metrics.get("score"),
                "validation": {n: round(v.get("ndcg@10", float("nan")), 4) for n, v in metrics["validation"].items()},
                "stopped_early": metrics.get("tuning", {}).get("stopped_early", [])}


def synthetic_ml1m(path: Path, users: int = 3000, items: int = 3700, events: int = 490_000, seed: int = 0) -> Path:
    """A MovieLens-1M-sized CSV (users 1-2999 hold about 490k ratings over ~3.7k films): item
    popularity Zipf-like, user activity log-normal, each user's items drawn from one of 20 taste
    groups 70 % of the time. It has ML-1M's shape, not its signal: figures on it are time and
    memory, not quality."""
    import numpy as np

    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 0.9, users)
    per_user = np.maximum(20, np.round(activity / activity.sum() * events)).astype(int)
    pop = 1.0 / np.arange(1, items + 1) ** 0.9
    groups = rng.integers(0, 20, items)
    rows_u, rows_i = [], []
    for u, n in enumerate(per_user):
        n = min(n, items // 2)
        g = rng.integers(0, 20)
        w = pop * np.where(groups == g, 6.0, 1.0)
        rows_u.append(np.full(n, u + 1))
        rows_i.append(rng.choice(items, size=n, replace=False, p=w / w.sum()) + 1)
    u, i = np.concatenate(rows_u), np.concatenate(rows_i)
    frame = pd.DataFrame({"user_id": u, "item_id": i, "timestamp": 978_300_000 + np.arange(len(u)),
                          "type": "rate", "value": rng.integers(1, 6, len(u))})
    frame.to_csv(path, index=False)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--max-user", type=int, default=None, help="keep numeric user ids up to this (ML-1M 1-2999)")
    ap.add_argument("--no-train", action="store_true", help="skip timing `streamrec train` with its defaults")
    ap.add_argument("--profile", choices=["default", "fast", "full"], default="default",
                    help="training profile (STREAMREC_TRAIN_PROFILE) of the fits and of `streamrec train`")
    ap.add_argument("--no-models", action="store_true", help="skip the per-model fits (time `streamrec train` only)")
    ap.add_argument("--synthetic-ml1m", action="store_true",
                    help="synthetic data of MovieLens-1M's size (3000 users, 3700 items, ~490k ratings) instead of --data")
    ap.add_argument("--train-workers", type=int, nargs="+", default=[0, 1],
                    help="time `streamrec train` with each STREAMREC_TRAIN_WORKERS (default: 0 = every core, then 1)")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: fit one model in this process
    ap.add_argument("--json", type=Path, help="write every figure here")
    args = ap.parse_args()
    global PROFILE
    PROFILE = args.profile
    if args.one:
        print(json.dumps(fit_one(args.one, args.data, args.max_user)))
        return
    if args.synthetic_ml1m:
        args.data = synthetic_ml1m(Path(tempfile.mkdtemp()) / "synthetic-ml1m.csv")
        print(f"synthetic ML-1M-sized data: {args.data}", file=sys.stderr)
    if not args.data.exists():
        sys.exit(f"no dataset at {args.data}: MovieLens-100K is read from ../shared/data/ml-100k "
                 "(not in the repository); pass --data")
    names = [] if args.no_models else ["ease"] + [m for m in args.models if m != "ease"]  # the baseline first
    rows = []
    for name in names:
        cmd = [sys.executable, __file__, "--one", name, "--data", str(args.data), "--profile", PROFILE]
        if args.max_user is not None:
            cmd += ["--max-user", str(args.max_user)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            rows.append({"model": name, "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"})
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {name}: {rows[-1]['fit_s']} s", file=sys.stderr, flush=True)
    ease = next((r["fit_s"] for r in rows if r["model"] == "ease" and "fit_s" in r), None)
    device = next((r["device"] for r in rows if "device" in r), "?")
    print(f"\n{args.data} on {device}; each model fitted once with the defaults, in its own process\n")
    print(f"{'model':<11}{'fit s':>9}{'× EASE':>9}{'epochs':>8}{'events/s/epoch':>16}{'peak MB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<11} failed: {r['error']}")
            continue
        ratio = f"{r['fit_s'] / ease:.1f}" if ease else "–"
        eps = f"{r['events_per_s_per_epoch']:,}" if r["events_per_s_per_epoch"] else "–"
        print(f"{r['model']:<11}{r['fit_s']:>9.2f}{ratio:>9}{r['epochs'] or '–':>8}{eps:>16}{r['peak_rss_mb']:>9}")
    summary = {"data": str(args.data), "device": device, "models": rows}
    if not args.no_train:
        cores = os.cpu_count()
        summary["train_default"] = []
        print(f"\nstreamrec train with its defaults (searches included), {cores} cores; "
              "workers 0 = every core (the default), 1 = one process (the scheduler's way):")
        for workers in args.train_workers:
            t = train_default(args.data, workers)
            summary["train_default"].append(t)
            print(f"  workers {workers}: " + (
                f"{t['seconds']} s wall, {t['cpu_seconds']} CPU s (critical path {t['critical_path_cpu_seconds']} "
                f"CPU s), load average {t['load_before']} -> "
                f"{t['load_after']}; policy {t['policy']}, validation ndcg@10 {t['validation_ndcg@10']:.4f} "
                f"{t['validation']}" if "seconds" in t else f"failed: {t['error']}"), flush=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
