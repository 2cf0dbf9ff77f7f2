"""Basket complements on every dev catalog: the tuned policy vs co-occurrence vs popularity.

    python benchmarks/basket_eval.py                       # every dataset, 5 seeds
    python benchmarks/basket_eval.py --seeds 1 --datasets bread-basket
    python benchmarks/basket_eval.py --out table.json      # also the raw rows

For each dataset in ``../shared/data/baskets-dev`` (see its PROVENANCE.md): ``--n-samples``
baskets are held out — the latest ones when the file has timestamps (bread-basket, Complete
Journey; the seeds then draw the items shown), else a random draw per seed (groceries; the
spread then covers the split too) — the basket policy is **tuned on the training baskets
alone** (``trainer.basket_tuning``: validation baskets carved from them, the latest ones when
timed) exactly as ``streamrec train`` and ``streamrec eval-basket`` tune it, and the three
methods rank the same draws at M = 1, 2, 3 through ``trainer.basket_eval`` (streamrec is
``ranking.basket.complements``, the served path).

Also printed, the baseline of the same run being co-occurrence:
- where baskets carry segments, the same tuned policy without them (segment pairs and segment
  popularity off): what segments add;
- the shipped ``diversity`` profile (without the Bernoulli cover model, which it would read
  from a run): distinct categories per list against Hit@10, next to the tuned policy's.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.basket_profiles import load_profiles  # noqa: E402
from trainer.basket_eval import (EvalConfig, item_meta, learn, metrics_at_k, policy_ranker,  # noqa: E402
                                 score_heldout, split_baskets)
from trainer.basket_tuning import tune_policy  # noqa: E402
from trainer.data.baskets import read_any  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "baskets-dev"
DATASETS = {  # name: (file, format, catalog or None)
    "groceries": ("groceries.csv", "baskets", None),
    "bread-basket": ("bread-basket.basket-lines.csv", "basket-lines", None),
    "completejourney": ("completejourney.basket-lines.csv", "basket-lines", "completejourney.catalog.csv"),
}
METRICS = ("hit@10", "recall@10", "mrr@10")


def categories_of(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["item_id"].strip(): (r.get("category") or "").strip() for r in csv.DictReader(fh)}


def diversity_contrast(model, test, cfg: EvalConfig, profiles: dict[str, dict], meta, n: int = 1000) -> dict:
    """M=1 over up to ``n`` held-out baskets: Hit@10 and distinct categories per list per profile."""
    rng = random.Random(f"{cfg.seed}:div")
    rows = [(b, rng.sample(b.items, 1)) for b in test if len(b.items) >= 2][:n]
    out = {}
    for name, prof in profiles.items():
        rank = policy_ranker(model, prof, cfg.segment_mode, cfg.k)
        hits, cats = [], []
        for b, shown in rows:
            got = rank(shown, b)
            hits.append(metrics_at_k(got, set(b.items) - set(shown), cfg.k)[0])
            cats.append(len({meta[i].category for i in got if i in meta and meta[i].category}))
        out[name] = {"hit@10": float(np.mean(hits)), "categories": float(np.mean(cats))}
    return out


def run_dataset(name: str, seeds: list[int], n_samples: int, val_samples: int | None) -> tuple[pd.DataFrame, list[dict]]:
    """Where every basket has a time, the held-out baskets are the latest (as ``eval-basket``
    does) and the policy is tuned once on the rest; the seeds draw the items shown. Otherwise
    each seed draws its own held-out baskets and the policy is tuned again on each training set."""
    file, fmt, catalog = DATASETS[name]
    baskets = read_any(DATA / file, fmt)
    cats = categories_of(DATA / catalog if catalog else None)
    has_segments = any(b.segment for b in baskets)
    timed = all(b.ts is not None for b in baskets)
    mode = "use_order" if has_segments else "none"
    meta = item_meta(baskets, cats)
    rows, extras = [], []
    fitted: dict = {}
    for seed in seeds:
        t0 = time.perf_counter()
        cfg = EvalConfig(basket_m=1, max_basket_m=3, n_samples=n_samples, seed=seed, segment_mode=mode,
                         holdout="auto" if timed else "random", cover=False)
        if not fitted or not timed:
            train, test = split_baskets(baskets, n_samples, seed, cfg.holdout)
            tuned = tune_policy(train, meta, mode, cfg.k, n_val=val_samples, seed=seed)
            fitted = {"test": test, "tuned": tuned, "model": learn(train, cfg, meta, tuned.profile())}
        test, tuned, model = fitted["test"], fitted["tuned"], fitted["model"]
        profile = tuned.profile()
        table = score_heldout(model, test, cfg, set(meta), profile)
        if has_segments:
            plain = {b: {**p, "W_SEG_PAIRS": 0.0, "W_POPP": 0.0} for b, p in tuned.params.items()}
            ablation = score_heldout(model, test, EvalConfig(**{**cfg.__dict__, "segment_mode": "none"}), set(meta), plain)
            ablation = ablation[ablation["method"] == "streamrec"].assign(method="streamrec, no segments")
            table = pd.concat([table, ablation], ignore_index=True)
        div = diversity_contrast(model, test, cfg, {"tuned": profile, "diversity": load_profiles()["diversity"]}, meta)
        rows.append(table.assign(seed=seed, dataset=name))
        extras.append({"dataset": name, "seed": seed, "tuning": tuned.summary(), "diversity": div,
                       "held_out": "latest baskets" if timed else f"random, seed {seed}",
                       "seconds": round(time.perf_counter() - t0, 1)})
        print(f"  {name} seed {seed}: held out {extras[-1]['held_out']}; tuned {tuned.changed()} "
              f"({tuned.holdout}, {len(tuned.trials)} configurations, {tuned.seconds:.0f}s); "
              f"diversity {json.dumps(div)}; {time.perf_counter() - t0:.0f}s", flush=True)
    return pd.concat(rows, ignore_index=True), extras


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds per (dataset, M, method)."""
    g = df.groupby(["dataset", "M", "method"], sort=False)
    out = g[list(METRICS)].agg(["mean", "std"])
    out.columns = [f"{m} {s}" for m, s in out.columns]
    return out.reset_index().assign(n=g["n"].mean().round().astype(int).values)


def print_tables(s: pd.DataFrame, n_seeds: int) -> None:
    for ds, g in s.groupby("dataset", sort=False):
        print(f"\n{ds} (mean ± std over {n_seeds} seeds)\n")
        print("| M | method | baskets | Hit@10 | Recall@10 | MRR@10 |")
        print("|---|---|---|---|---|---|")
        for _, r in g.iterrows():
            cells = [f"{r[f'{m} mean']:.4f} ± {0.0 if np.isnan(r[f'{m} std']) else r[f'{m} std']:.4f}" for m in METRICS]
            print(f"| {r['M']} | {r['method']} | {r['n']} | " + " | ".join(cells) + " |")
        for m in sorted(g["M"].unique()):
            row = g[g["M"] == m].set_index("method")
            ours, base = row.loc["streamrec"], row.loc["cooccurrence"]
            gains = [f"{k} {100 * (ours[f'{k} mean'] / base[f'{k} mean'] - 1):+.1f}%" for k in ("hit@10", "mrr@10")]
            print(f"M={m}: streamrec vs co-occurrence: " + ", ".join(gains))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated: " + ", ".join(DATASETS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--n-samples", type=int, default=2000, help="held-out baskets per seed")
    ap.add_argument("--val-samples", type=int, default=None,
                    help="validation baskets of the tuning (default: as eval-basket, scaled to the data)")
    ap.add_argument("--out", type=Path, help="write every row and the tuning reports as JSON")
    args = ap.parse_args()
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        ap.error(f"unknown dataset(s) {unknown}; have {list(DATASETS)}")
    missing = [DATASETS[n][0] for n in names if not (DATA / DATASETS[n][0]).exists()]
    if missing:
        print(f"no data: {missing} not in {DATA} (see the dev datasets' PROVENANCE.md)")
        return
    frames, extras = [], []
    t0 = time.perf_counter()
    for name in names:
        df, ex = run_dataset(name, list(range(args.seeds)), args.n_samples, args.val_samples)
        frames.append(df)
        extras += ex
    rows = pd.concat(frames, ignore_index=True)
    print_tables(summary(rows), args.seeds)
    print(f"\ntotal {time.perf_counter() - t0:.0f}s")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows.to_dict(orient="records"), "runs": extras}, indent=1))


if __name__ == "__main__":
    main()
