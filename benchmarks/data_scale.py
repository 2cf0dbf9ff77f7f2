"""Peak memory of training's data path on a large synthetic snapshot (issue 17: 10M events in 24 GiB).

A snapshot of ``--events`` synthetic interactions (users and items drawn Zipf-like; views,
clicks and ratings) is written in Arrow parts of a million rows, the layout ``streamrec replay``
writes (``trainer.data.snapshot``). Then, in a fresh process, each step of a retrain's data path
runs in turn and the process's resident memory is printed after it (``VmRSS``, and ``VmHWM``,
the peak so far):

1. read the snapshot (``load_source``: every part, deduplicated on ``event_id``);
2. build the training dataset (``dataset_from_source``: strengths, positive pairs, the CSR matrix);
3. the validation carve (``pairs_frame`` → ``random_split`` → ``restrict``), as ``streamrec train``;
4. a popularity fit (the cheapest model).

With ``--models``, each model named is then fitted on the same carve, each in a fresh process
of its own (the data path again, then the peak reset, then the fit), one thread, with the
default profile's parameters (``trainer.tuning.DEFAULT_PARAMS``, the first point of each grid)
except ``--epochs`` for the models trained by epochs: the memory of a fit is what its first
epoch allocates (matrices, embeddings, optimiser state), so the epochs bound the time, not
the peak. The fit's peak is printed beside the data path's peak of the same process.

The baseline printed in the same run is the interpreter with the libraries imported.

    python benchmarks/data_scale.py                        # 10,000,000 events, 200,000 users, 20,000 items
    python benchmarks/data_scale.py --events 1000000       # a quicker look
    python benchmarks/data_scale.py --models ease,rp3beta,multvae,two_tower,lightfm --epochs 1
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHUNK = 1_000_000


def _zipf(rng: np.random.Generator, n: int, size: int, a: float = 1.1) -> np.ndarray:
    """``size`` draws from 0..n-1 with Zipf-like weights (rank r weighs 1/(r+1)^a)."""
    w = 1.0 / np.arange(1, n + 1) ** a
    return rng.choice(n, size=size, p=w / w.sum())


def write_snapshot(path: Path, events: int, users: int, items: int, seed: int = 0) -> None:
    import pyarrow as pa

    from trainer.data.snapshot import Snapshot, schema_of
    from schemas import topics

    snap = Snapshot(path)
    schema = schema_of(topics.INTERACTIONS)
    rng = np.random.default_rng(seed)
    done = 0
    while done < events:
        n = min(CHUNK, events - done)
        u = _zipf(rng, users, n, 0.8)
        i = _zipf(rng, items, n)
        kind = rng.choice(np.array(["view", "click", "rate"]), size=n, p=[0.7, 0.2, 0.1])
        cols = {
            "event_id": pa.array(np.char.add("e", np.arange(done, done + n).astype(str))),
            "type": pa.array(kind),
            "user_id": pa.array(np.char.add("u", u.astype(str))),
            "item_id": pa.array(np.char.add("i", i.astype(str))),
            "timestamp": pa.array(1.7e9 + np.arange(done, done + n, dtype=np.float64)),
            "value": pa.array(np.where(kind == "rate", rng.integers(1, 6, n), np.nan).astype(np.float64)),
            "topic": pa.array(np.full(n, topics.INTERACTIONS)),
            "partition": pa.array(np.zeros(n, dtype=np.int32)),
            "offset": pa.array(np.arange(done, done + n, dtype=np.int64)),
        }
        table = pa.table({f.name: cols.get(f.name, pa.nulls(n, f.type)) for f in schema}, schema=schema)
        snap.append(table, topics.INTERACTIONS, {0: done + n})
        done += n
        print(f"  wrote {done:,} events", flush=True)


def _memory() -> str:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mb = {k: int(status[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}
    return f"rss {mb['VmRSS'] / 1024:6.2f} GiB, peak {mb['VmHWM'] / 1024:6.2f} GiB"


def _reset_peak() -> None:
    """Start ``VmHWM`` again from the current resident size (Linux: ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def fit_params(name: str, epochs: int) -> dict:
    """The default profile's parameters of ``name``, the first point of its grid, ``epochs`` epochs."""
    import inspect

    from trainer.models import MODELS
    from trainer.tuning import DEFAULT_PARAMS, GRIDS

    params = {k: v[0] for k, v in GRIDS.get(name, {}).items()}
    params.update(DEFAULT_PARAMS.get(name, {}))
    accepted = inspect.signature(MODELS[name].__init__).parameters
    if "epochs" in accepted:
        params["epochs"] = epochs
    return {k: v for k, v in params.items() if k in accepted}


def measure(path: Path, fit: str | None = None, epochs: int = 1) -> None:
    """The data path, step by step, in this process (then the fit of ``fit``)."""
    import pandas as pd  # noqa: F401 - the baseline holds the libraries a retrain imports

    from schemas.settings import Settings
    from trainer import splits
    from trainer.data.sources import load_source
    from trainer.models import make_model
    from trainer.pipeline import dataset_from_source, pairs_frame, restrict

    print(f"  {'libraries imported':<44} {_memory()}", flush=True)
    steps = []
    t0 = time.perf_counter()
    source = load_source(path)
    steps.append(("read the snapshot", len(source.events)))
    print(f"  {'read the snapshot (%d rows)' % len(source.events):<44} {_memory()}  {time.perf_counter() - t0:6.1f} s",
          flush=True)
    data = dataset_from_source(source, Settings(train_threads=1))
    del source
    print(f"  {'dataset (%d × %d, %d pairs)' % (data.n_users, data.n_items, data.matrix.nnz):<44} {_memory()}  "
          f"{time.perf_counter() - t0:6.1f} s", flush=True)
    train_pairs, val_pairs = splits.random_split(pairs_frame(data), 0.75, seed=42)
    train = restrict(data, train_pairs)
    print(f"  {'validation carve':<44} {_memory()}  {time.perf_counter() - t0:6.1f} s", flush=True)
    if fit is None:
        make_model("popularity").fit(train)
        print(f"  {'popularity fit':<44} {_memory()}  {time.perf_counter() - t0:6.1f} s", flush=True)
        return
    from trainer.pipeline import _limit_threads

    _limit_threads(1)
    del data, train_pairs, val_pairs
    params = fit_params(fit, epochs)
    _reset_peak()
    print(f"  {'before the fit (peak reset)':<44} {_memory()}", flush=True)
    t1 = time.perf_counter()
    make_model(fit, **params).fit(train)
    print(f"  {fit + ' fit':<44} {_memory()}  {time.perf_counter() - t1:6.1f} s  {params}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--models", default="", help="comma-separated models to fit after the data path, each alone")
    ap.add_argument("--epochs", type=int, default=1, help="epochs of the models trained by epochs (default 1)")
    ap.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--fit", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure, args.fit, args.epochs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot"
        print(f"writing a snapshot of {args.events:,} events ({args.users:,} users, {args.items:,} items)", flush=True)
        write_snapshot(path, args.events, args.users, args.items)
        size = sum(f.stat().st_size for f in path.iterdir()) / 2**30
        print(f"snapshot on disk: {size:.2f} GiB; the data path, in a fresh process:", flush=True)
        out = subprocess.run([sys.executable, __file__, "--measure", str(path)], cwd=ROOT)
        if out.returncode != 0:
            sys.exit(f"the data path failed (exit {out.returncode}; killed for memory when -9)")
        for name in filter(None, args.models.split(",")):
            print(f"{name}: the data path again, then its fit, in a fresh process:", flush=True)
            out = subprocess.run([sys.executable, __file__, "--measure", str(path), "--fit", name,
                                  "--epochs", str(args.epochs)], cwd=ROOT)
            if out.returncode != 0:
                print(f"  {name} failed (exit {out.returncode}; killed for memory when -9)", flush=True)


if __name__ == "__main__":
    main()
