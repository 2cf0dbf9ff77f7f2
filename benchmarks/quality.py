"""Model quality on MovieLens-100K: every streamrec model and the served policy, one table.

Protocol (the Microsoft Recommenders benchmark's, so the figures compare with its table):
per-user random 75/25 split (seed 42), every rating is an interaction, top-10 over all
items the user did not rate in train. Leave-last-out (each user's latest rating) is
reported too, in full ranking and in the sampled protocol (target + 99 random unseen
items, labelled "sampled").

The benchmark holds no search of its own: it calls the trainer (``trainer.pipeline.train_run``,
what ``streamrec train`` runs) on the training part. The trainer searches each model's grid
and the blend weights and MMR λ on a validation split carved from that training part, never
on the test set, refits the winners on the whole training part and saves the run with its
policy. The table then gives every model of that run, and the **served policy** row: the
lists ``ranking.home`` serves for the run (``trainer.policy_eval``, the code path of the API
and ``streamrec recommend``), evaluated once on test.
``--quick`` fixes the cheap models' hyperparameters (no grid search) and trains the deep
models for fewer epochs.

    python benchmarks/quality.py --quick          # a few minutes on 2 cores
    python benchmarks/quality.py --json out.json  # the full run (~20 min on 2 cores)

The data is read from ``../shared/data/ml-100k`` relative to the repository (MovieLens may
not be redistributed, so it is not in the repository); ``--data DIR`` points elsewhere.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.settings import Settings  # noqa: E402
from trainer.artifacts import load_run  # noqa: E402
from trainer.candidates import PolicyScorer  # noqa: E402
from trainer.data.interactions import Interactions  # noqa: E402
from trainer.data.rows import LoadReport, Source  # noqa: E402
from trainer.device import describe, pick_device  # noqa: E402
from trainer.evaluation import format_table, ranking_metrics, sampled_ranking_metrics  # noqa: E402
from trainer.models import make_model  # noqa: E402
from trainer.pipeline import policy_scorer, train_run  # noqa: E402
from trainer.policy_eval import evaluate_policy  # noqa: E402
from trainer.splits import leave_last_out, random_split  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ml-100k"
K = 10

# --quick: the values the full run's validation searches selected (no grid search), fewer epochs.
QUICK_PARAMS: dict[str, dict] = {
    "itemknn": {"neighbors": 200, "shrink": 20.0},
    "rp3beta": {"alpha": 0.8, "beta": 0.35, "neighbors": 200},
    "ease": {"lambda_": 300.0, "user_weight": 0.5, "dropout": 0.5},
}
QUICK_EPOCHS = {"ncf": 10, "two_tower": 8, "lightfm": 15, "multvae": 100}
QUICK_ENSEMBLE = 2
MODELS = ["popularity", "content", "itemknn", "rp3beta", "ease", "multvae", "lightfm", "two_tower", "ncf"]
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


# --- the run ------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="no grid searches, fewer epochs: a few minutes")
    ap.add_argument("--json", type=Path, help="also write every figure to this file")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--no-loo", action="store_true", help="skip the leave-last-out tables")
    ap.add_argument("--val-ratio", type=float, default=None, help="the trainer's validation share (default: its own)")
    args = ap.parse_args(argv)
    if not (args.data / "u.data").exists():
        print(f"MovieLens-100K not found at {args.data} (expected u.data, u.item, u.user): "
              "download it yourself and pass --data DIR; it is not redistributed with streamrec.", file=sys.stderr)
        return 2

    device = pick_device("auto")
    events, item_meta, user_meta = load_movielens(args.data)
    train_df, test_df = random_split(events, 0.75, seed=42)
    log(f"ml-100k: {len(events)} ratings; train {len(train_df)}, test {len(test_df)}; device {describe(device)}")

    params: dict[str, dict] = {n: {"threads": args.threads} for n in ("ncf", "two_tower", "multvae")}
    if args.quick:
        for n, p in QUICK_PARAMS.items():
            params[n] = dict(p)
        for n, e in QUICK_EPOCHS.items():
            params.setdefault(n, {})["epochs"] = e
        params["multvae"]["ensemble"] = QUICK_ENSEMBLE
    settings = Settings(artifact_dir=Path(tempfile.mkdtemp(prefix="quality-")), train_threads=args.threads)
    source = Source(train_df, LoadReport("ml-100k train 75%", rows=len(train_df)), item_meta=item_meta, user_meta=user_meta)
    extra = {} if args.val_ratio is None else {"val_ratio": args.val_ratio}
    t0 = time.perf_counter()
    result = train_run(source, settings, MODELS, params, tag="quality", **extra)
    train_s = time.perf_counter() - t0
    run = load_run(result.run_dir)
    train = next(iter(run.models.values())).data  # the run's own index space and metadata
    log(f"trained {run.run_id} in {train_s:.0f} s; policy {run.policy.name} {run.policy.weights} λ={run.policy.mmr_lambda}")

    rows, timing = {}, {}
    for name in MODELS:
        model = run.models[name]
        rows[name] = {**ranking_metrics(model, train, test_df, K), "fit_s": result.fit_seconds.get(name, 0.0)}
        if hasattr(model, "seconds_per_epoch") and model.history_:
            timing[name] = {"seconds_per_epoch": model.seconds_per_epoch, "epochs": len(model.history_),
                            "batch_size": model.batch_size, "device": describe(pick_device(model.device))}
        log(f"{name}: ndcg@{K}={rows[name][f'ndcg@{K}']:.4f} p@{K}={rows[name][f'precision@{K}']:.4f}")
    scorer = PolicyScorer(run.models, list(run.item_ids), run.embeddings)
    served = f"served policy ({run.policy.name})"
    rows[served] = {**evaluate_policy(scorer, run.policy, train, test_df, K), "fit_s": train_s}
    log(f"{served}: ndcg@{K}={rows[served][f'ndcg@{K}']:.4f}")
    table = pd.DataFrame.from_dict(rows, orient="index")

    loo_table = None
    if not args.no_loo:
        loo_train_df, loo_test_df = leave_last_out(events)
        loo_train = Interactions.from_events(loo_train_df, item_meta=item_meta, user_meta=user_meta)
        chosen = {n: run.models[n].get_params() for n in run.policy.models}
        loo_fitted = {n: make_model(n, **p).fit(loo_train) for n, p in chosen.items()}
        loo_rows = {}
        for name, model in loo_fitted.items():
            loo_rows[name] = {**ranking_metrics(model, loo_train, loo_test_df, K),
                              **sampled_ranking_metrics(model, loo_train, loo_test_df, K, n_negatives=99, seed=0)}
        loo_rows[served] = evaluate_policy(policy_scorer(loo_fitted, loo_train), run.policy, loo_train, loo_test_df, K)
        loo_table = pd.DataFrame.from_dict(loo_rows, orient="index")

    # --- report ---------------------------------------------------------------------------
    print(f"## MovieLens-100K, per-user random 75/25 (seed 42), top-{K} over all unseen items "
          f"({'quick' if args.quick else 'full'} run)\n")
    print(format_table(table, [f"precision@{K}", f"recall@{K}", f"ndcg@{K}", f"map@{K}", f"hit_rate@{K}",
                               f"mrr@{K}", f"coverage@{K}", "fit_s"]))
    s_ndcg, s_p = table.loc[served, f"ndcg@{K}"], table.loc[served, f"precision@{K}"]
    print(f"\nserved policy {run.policy.name}: ndcg@{K}={s_ndcg:.4f} p@{K}={s_p:.4f} "
          f"(target ≥ {TARGET[0]} / {TARGET[1]}; BiVAE published {PUBLISHED['bivae'][0]} / {PUBLISHED['bivae'][1]})")
    print(f"policy (chosen on validation by the trainer): {json.dumps(run.policy.to_dict()['components'])}, "
          f"mmr λ {run.policy.mmr_lambda}")
    print(f"ncf: ndcg@{K}={table.loc['ncf', f'ndcg@{K}']:.4f} p@{K}={table.loc['ncf', f'precision@{K}']:.4f} "
          f"(published NCF {PUBLISHED['ncf'][0]} / {PUBLISHED['ncf'][1]})")
    if loo_table is not None:
        print("\n## Leave-last-out: full ranking (headline) and sampled (target + 99 unseen negatives)\n")
        print(format_table(loo_table, [f"hit_rate@{K}", f"ndcg@{K}", f"mrr@{K}", f"sampled_hit_rate@{K}",
                                       f"sampled_ndcg@{K}", f"sampled_mrr@{K}"]))
    print("\n## Seconds per training epoch\n")
    print("| model | device | batch | epochs run | s/epoch |\n|---|---|---:|---:|---:|")
    for name, t in timing.items():
        print(f"| {name} | {t['device']} | {t['batch_size']} | {t['epochs']} | {t['seconds_per_epoch']:.2f} |")
    if args.json:
        out = {"random_75_25": table.to_dict(orient="index"), "policy": run.policy.to_dict(),
               "params": {n: m.get_params() for n, m in run.models.items()}, "timing": timing, "quick": args.quick,
               "leave_last_out": None if loo_table is None else loo_table.to_dict(orient="index")}
        args.json.write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
