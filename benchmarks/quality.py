"""Model quality on MovieLens-100K: every streamrec model, one table.

Protocol (the Microsoft Recommenders benchmark's, so the figures compare with its table):
per-user random 75/25 split (seed 42), every rating is an interaction, top-10 over all
items the user did not rate in train. Leave-last-out (each user's latest rating) is
reported too, in full ranking and in the sampled protocol (target + 99 random unseen
items, labelled "sampled").

Hyperparameters are chosen on a validation split carved from the *training* part (a
per-user 75/25 split of it, seed 1), never on the test set: the grids below are searched
on validation, the winners are refitted on the whole training part and evaluated once on
test. ``--quick`` skips the searches (it uses the values the full run selected, recorded
in ``TUNED``) and trains the deep models for fewer epochs.

    python benchmarks/quality.py --quick          # a few minutes on 2 cores
    python benchmarks/quality.py --json out.json  # the full run (~15 min on 2 cores)

The data is read from ``../shared/data/ml-100k`` relative to the repository (MovieLens may
not be redistributed, so it is not in the repository); ``--data DIR`` points elsewhere.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.base import Recommender  # noqa: E402
from trainer.data.interactions import Interactions  # noqa: E402
from trainer.device import describe, pick_device  # noqa: E402
from trainer.evaluation import format_table, ranking_metrics, sampled_ranking_metrics  # noqa: E402
from trainer.models import make_model  # noqa: E402
from trainer.models.blend import Blend, standardize_rows  # noqa: E402
from trainer.splits import leave_last_out, random_split  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"
K = 10

# Values selected by the full run's validation searches (see README, section quality).
TUNED: dict[str, dict] = {
    "popularity": {},
    "itemknn": {"neighbors": 200, "shrink": 20.0},
    "rp3beta": {"alpha": 0.8, "beta": 0.35, "neighbors": 200},
    "ease": {"lambda_": 300.0, "user_weight": 0.5, "dropout": 0.5},
    "content": {},
}
GRIDS: dict[str, dict[str, list]] = {
    "itemknn": {"neighbors": [100, 200], "shrink": [0.0, 20.0]},
    "rp3beta": {"alpha": [0.6, 0.8, 1.0], "beta": [0.2, 0.35, 0.5], "neighbors": [200]},
    "ease": {"lambda_": [200.0, 300.0, 500.0], "user_weight": [0.0, 0.5], "dropout": [0.0, 0.5]},
}
# Deep models: fixed architectures; epochs are picked by their own early stopping.
DEEP: dict[str, dict] = {
    "ncf": {"loss": "bce", "negatives": 4, "batch_size": 1024, "lr": 2e-3, "epochs": 30, "patience": 5},
    "two_tower": {"epochs": 30, "patience": 5},
    "lightfm": {"loss": "warp", "no_components": 64, "learning_rate": 0.05, "epochs": 40},
    "multvae": {"latent_dim": 200, "dropout": 0.5, "beta": 0.2, "epochs": 150, "ensemble": 5},
}
QUICK_EPOCHS = {"ncf": 10, "two_tower": 8, "lightfm": 15, "multvae": 100}
QUICK_ENSEMBLE = 2
BLEND_GRID = [0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]
PUBLISHED = {"ncf": (0.396, 0.347), "bivae": (0.475, 0.412)}
TARGET = (0.49, 0.43)


# --- data ---------------------------------------------------------------------------------------
def load_movielens(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Ratings as events, movie metadata (title, genres as category) and user metadata
    (occupation as profession, gender as segment)."""
    ratings = pd.read_csv(path / "u.data", sep="\t", names=["user_id", "item_id", "value", "timestamp"])
    events = ratings.astype({"user_id": str, "item_id": str}).assign(type="rate")
    genres = pd.read_csv(path / "u.genre", sep="|", header=None)[0].tolist()
    items = pd.read_csv(path / "u.item", sep="|", header=None, encoding="latin-1")
    flags = items.iloc[:, 5 : 5 + len(genres)].to_numpy()
    item_meta = pd.DataFrame({
        "title": items[1].to_numpy(),
        "category": ["|".join(g for g, f in zip(genres, row) if f) for row in flags],
    }, index=items[0].astype(str))
    users = pd.read_csv(path / "u.user", sep="|", header=None)
    user_meta = pd.DataFrame({"profession": users[3].to_numpy(), "segment": users[2].to_numpy()},
                             index=users[0].astype(str))
    return events, item_meta, user_meta


class Precomputed(Recommender):
    """Fixed score rows (a blend under evaluation, without refitting anything)."""

    name = "precomputed"

    def __init__(self, scores: np.ndarray | None = None):
        self.scores = scores

    def _fit(self, data: Interactions) -> None:
        pass

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        return self.scores[uidx]


# --- the run ------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fit_timed(name: str, params: dict, data: Interactions) -> tuple[Recommender, float]:
    t0 = time.perf_counter()
    model = make_model(name, **params).fit(data)
    return model, time.perf_counter() - t0


def grid(space: dict[str, list]) -> list[dict]:
    """Every combination of a parameter grid.

    >>> grid({"a": [1, 2], "b": [0]})
    [{'a': 1, 'b': 0}, {'a': 2, 'b': 0}]
    """
    keys = list(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]


def tune(name: str, fit_data: Interactions, val: pd.DataFrame) -> dict:
    best, best_score = TUNED[name], -1.0
    for params in grid(GRIDS[name]):
        model, _ = fit_timed(name, params, fit_data)
        score = ranking_metrics(model, fit_data, val, K)[f"ndcg@{K}"]
        log(f"  tune {name} {params}: val ndcg@{K}={score:.4f}")
        if score > best_score:
            best, best_score = params, score
    return best


def tune_blend(val_scores: dict[str, np.ndarray], fit_data: Interactions, val: pd.DataFrame) -> dict[str, float]:
    """Coordinate search of blend weights on validation, anchored on the best single model
    (weight 1); the others' weights come from ``BLEND_GRID``."""
    z = {n: standardize_rows(s) for n, s in val_scores.items()}

    def score(w: dict[str, float]) -> float:
        mix = sum(wt * z[n] for n, wt in w.items() if wt)
        return ranking_metrics(Precomputed(mix).fit(fit_data), fit_data, val, K)[f"ndcg@{K}"]

    single = {n: score({n: 1.0}) for n in z}
    anchor = max(single, key=single.get)
    weights = {n: (1.0 if n == anchor else 0.0) for n in z}
    best = single[anchor]
    for _ in range(2):
        for name in [n for n in z if n != anchor]:
            for value in BLEND_GRID:
                trial = {**weights, name: value}
                s = score(trial)
                if s > best + 1e-5:
                    best, weights = s, trial
        log(f"  blend weights {weights}: val ndcg@{K}={best:.4f}")
    return {n: w for n, w in weights.items() if w > 0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="no searches, fewer epochs: a few minutes")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--no-loo", action="store_true", help="skip the leave-last-out tables")
    args = ap.parse_args(argv)
    if not (args.data / "u.data").exists():
        print(f"MovieLens-100K not found at {args.data} (expected u.data, u.item, u.user): "
              "download it yourself and pass --data DIR; it is not redistributed with streamrec.", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    device = pick_device("auto")
    events, item_meta, user_meta = load_movielens(args.data)
    build = lambda frame: Interactions.from_events(frame, item_meta=item_meta, user_meta=user_meta)  # noqa: E731
    train_df, test_df = random_split(events, 0.75, seed=42)
    fit_df, val_df = random_split(train_df, 0.75, seed=1)
    train, fit_data = build(train_df), build(fit_df)
    log(f"ml-100k: {len(events)} ratings; train {len(train_df)}, test {len(test_df)}; "
        f"validation carved from train: {len(fit_df)} / {len(val_df)}; device {describe(device)}")

    deep = {n: dict(p, threads=args.threads) for n, p in DEEP.items()}
    if args.quick:
        for n, e in QUICK_EPOCHS.items():
            deep[n]["epochs"] = e
        deep["multvae"]["ensemble"] = QUICK_ENSEMBLE
    params: dict[str, dict] = dict(TUNED)
    if not args.quick:
        for name in GRIDS:
            params[name] = tune(name, fit_data, val_df)
    params.update(deep)

    # validation scores of the blend candidates, to choose the blend weights
    # NCF is left out of the blend search: it is the slowest to train and the weakest here
    blend_parts = ["ease", "rp3beta", "multvae", "lightfm", "two_tower"]
    if args.quick:
        weights = dict(TUNED_BLEND)
    else:
        users = np.arange(fit_data.n_users)
        val_scores = {}
        for name in blend_parts:
            model, _ = fit_timed(name, params[name], fit_data)
            val_scores[name] = model.score_matrix(users)
            log(f"  validation fit {name}: val ndcg@{K}={ranking_metrics(model, fit_data, val_df, K)[f'ndcg@{K}']:.4f}")
        weights = tune_blend(val_scores, fit_data, val_df)

    # the headline: every model refitted on the whole train part, evaluated once on test
    rows, fitted, timing = {}, {}, {}
    for name in ["popularity", "content", "itemknn", "rp3beta", "ease", "multvae", "lightfm", "two_tower", "ncf"]:
        model, seconds = fit_timed(name, params[name], train)
        fitted[name] = model
        rows[name] = {**ranking_metrics(model, train, test_df, K), "fit_s": seconds}
        if hasattr(model, "seconds_per_epoch"):
            timing[name] = {"seconds_per_epoch": model.seconds_per_epoch, "epochs": len(model.history_),
                            "batch_size": model.batch_size, "device": describe(pick_device(model.device))}
        log(f"{name}: ndcg@{K}={rows[name][f'ndcg@{K}']:.4f} p@{K}={rows[name][f'precision@{K}']:.4f} ({seconds:.0f}s)")
    blend = Blend.of([(fitted[n], w) for n, w in weights.items()])
    rows["blend"] = {**ranking_metrics(blend, train, test_df, K), "fit_s": sum(rows[n]["fit_s"] for n in weights)}
    log(f"blend {weights}: ndcg@{K}={rows['blend'][f'ndcg@{K}']:.4f}")
    table = pd.DataFrame.from_dict(rows, orient="index")

    if not args.quick:  # the issue's default NCF (batch 256) for its seconds per epoch
        ncf_default, _ = fit_timed("ncf", {"epochs": 2, "threads": args.threads, "val_fraction": 0.0}, train)
        timing["ncf (issue defaults, batch 256)"] = {"seconds_per_epoch": ncf_default.seconds_per_epoch,
                                                     "epochs": 2, "batch_size": 256,
                                                     "device": describe(pick_device("auto"))}

    loo_table = None
    if not args.no_loo:
        loo_train_df, loo_test_df = leave_last_out(events)
        loo_train = build(loo_train_df)
        loo_rows = {}
        # NCF is not refitted here (the slowest model; its LOO figure adds little): keeps the run short
        loo_models = ["popularity", "itemknn", "rp3beta", "ease", "multvae", "lightfm", "two_tower"]
        loo_fitted = {}
        for name in loo_models:
            model, _ = fit_timed(name, params[name], loo_train)
            loo_fitted[name] = model
            loo_rows[name] = {**ranking_metrics(model, loo_train, loo_test_df, K),
                              **sampled_ranking_metrics(model, loo_train, loo_test_df, K, n_negatives=99, seed=0)}
            log(f"loo {name}: hr@{K}={loo_rows[name][f'hit_rate@{K}']:.4f} "
                f"sampled hr@{K}={loo_rows[name][f'sampled_hit_rate@{K}']:.4f}")
        loo_blend = Blend.of([(loo_fitted[n], w) for n, w in weights.items()])
        loo_rows["blend"] = {**ranking_metrics(loo_blend, loo_train, loo_test_df, K),
                             **sampled_ranking_metrics(loo_blend, loo_train, loo_test_df, K, 99, 0)}
        loo_table = pd.DataFrame.from_dict(loo_rows, orient="index")

    # --- report ---------------------------------------------------------------------------
    print(f"## MovieLens-100K, per-user random 75/25 (seed 42), top-{K} over all unseen items "
          f"({'quick' if args.quick else 'full'} run)\n")
    print(format_table(table, [f"precision@{K}", f"recall@{K}", f"ndcg@{K}", f"map@{K}", f"hit_rate@{K}",
                               f"mrr@{K}", f"coverage@{K}", "fit_s"]))
    best = table[f"ndcg@{K}"].idxmax()
    print(f"\nbest: {best} ndcg@{K}={table.loc[best, f'ndcg@{K}']:.4f} p@{K}={table.loc[best, f'precision@{K}']:.4f} "
          f"(target ≥ {TARGET[0]} / {TARGET[1]}; BiVAE published {PUBLISHED['bivae'][0]} / {PUBLISHED['bivae'][1]})")
    print(f"ncf: ndcg@{K}={table.loc['ncf', f'ndcg@{K}']:.4f} p@{K}={table.loc['ncf', f'precision@{K}']:.4f} "
          f"(published NCF {PUBLISHED['ncf'][0]} / {PUBLISHED['ncf'][1]})")
    print(f"blend weights (chosen on validation): {weights}")
    if loo_table is not None:
        print(f"\n## Leave-last-out: full ranking (headline) and sampled (target + 99 unseen negatives)\n")
        print(format_table(loo_table, [f"hit_rate@{K}", f"ndcg@{K}", f"mrr@{K}", f"sampled_hit_rate@{K}",
                                       f"sampled_ndcg@{K}", f"sampled_mrr@{K}"]))
    print("\n## Seconds per training epoch\n")
    print("| model | device | batch | epochs run | s/epoch |\n|---|---|---:|---:|---:|")
    for name, t in timing.items():
        print(f"| {name} | {t['device']} | {t['batch_size']} | {t['epochs']} | {t['seconds_per_epoch']:.2f} |")
    if args.json:
        out = {"random_75_25": table.to_dict(orient="index"), "params": params, "blend_weights": weights,
               "timing": timing, "quick": args.quick,
               "leave_last_out": None if loo_table is None else loo_table.to_dict(orient="index")}
        args.json.write_text(json.dumps(out, indent=2, default=float))
    return 0


# Blend weights selected by the full run on validation (used by --quick).
TUNED_BLEND: dict[str, float] = {"ease": 0.2, "multvae": 1.0, "lightfm": 0.35, "two_tower": 0.5}

if __name__ == "__main__":
    raise SystemExit(main())
