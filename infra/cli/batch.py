"""Batch inference: ``recommend`` (a run's policy — what the API serves — for a list of users)
and ``score`` (user–item pairs with one model). Offline: no broker, no Redis.
"""
from __future__ import annotations

import json
from pathlib import Path

import typer

from infra.cli.common import _errors, _log, _settings
from schemas.errors import InvalidDataset
from schemas.settings import Settings

def _load_model(settings: Settings, run: str | None, name: str | None):
    from trainer.artifacts import load_run, resolve_run

    run_dir = resolve_run(settings.artifact_dir, run or "current")
    if name is None:
        try:
            name = json.loads((run_dir / "metrics.json").read_text()).get("best_model")
        except (OSError, ValueError):
            name = None
        available = sorted(p.name for p in (run_dir / "models").iterdir()) if (run_dir / "models").is_dir() else []
        if name not in available:
            name = available[0] if available else None
    loaded = load_run(run_dir, models=[name] if name else None)
    if name not in loaded.models:
        raise InvalidDataset(f"{run_dir.name} has no model {name!r} (it has {', '.join(loaded.models) or 'none'})")
    return loaded, loaded.models[name], name


def _read_users(path: Path) -> list[str]:
    users = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            u = line.strip().split(",")[0].strip()
            if not u or (n == 0 and u == "user_id"):
                continue
            users.append(u)
    return users


def recommend(
    run: str = typer.Option(None, "--run", help="Run directory or name (default: the serving run)."),
    users: Path = typer.Option(..., "--users", exists=True, readable=True, help="One user_id per line."),
    k: int = typer.Option(10, "--k", min=1),
    out: Path = typer.Option(..., "--out", help="JSON lines {user_id, items, scores}."),
    model: str = typer.Option(None, "--model", "-m", help="Serve one model of the run instead of its policy."),
    fallback: bool = typer.Option(True, "--fallback/--no-fallback",
                                  help="Users unknown to the run get its most popular items."),
) -> None:
    """Top-k items per user from a run's policy (or one model), as the API serves them.

    The same code path as the API for the same run and state (ranking/home.py); items the user
    interacted with in training are excluded."""
    from ranking.policy import Policy
    from trainer.artifacts import load_run, resolve_run
    from trainer.candidates import PolicyScorer
    from trainer.policy_eval import item_infos, policy_lists
    from trainer.signals import OfflineSignals

    _log(verbose=False)
    with _errors():
        settings = _settings()
        loaded = load_run(resolve_run(settings.artifact_dir, run or "current"))
        policy = loaded.policy
        if model is not None:
            if model not in loaded.models:
                raise InvalidDataset(f"{loaded.run_id} has no model {model!r} (it has {', '.join(loaded.models) or 'none'})")
            policy = Policy.single(model, mmr_lambda=policy.mmr_lambda, category_cap=policy.category_cap,
                                   fill=policy.fill, rescale=policy.rescale, candidates=policy.candidates,
                                   full_scoring_max_items=policy.full_scoring_max_items)
        if not loaded.models:
            raise InvalidDataset(f"{loaded.run_id} has no model")
        data = next(iter(loaded.models.values())).data
        ids = _read_users(users)
        scorer = PolicyScorer(loaded.models, list(loaded.item_ids), loaded.embeddings)
        lists = policy_lists(scorer, policy, OfflineSignals(data), ids, k, item_infos(data), batch_rows=False)
        known = data.user_index
        cold = sum(1 for u in ids if u not in known)
        with open(out, "w", encoding="utf-8") as fh:
            for user in ids:
                served = lists[user].items if (fallback or user in known) else []
                fh.write(json.dumps({"user_id": user, "items": [i for i, _ in served],
                                     "scores": [round(float(s), 6) for _, s in served]}) + "\n")
    typer.echo(f"{len(ids)} users ({cold} unknown{' → popular items' if fallback else ''}) "
               f"from {loaded.run_id}, policy {policy.name}: {out}", err=True)


def score(
    run: str = typer.Option(None, "--run", help="Run directory or name (default: the serving run)."),
    pairs: Path = typer.Option(..., "--pairs", exists=True, readable=True, help="CSV with header user_id,item_id."),
    out: Path = typer.Option(..., "--out", help="The same rows with a score column (empty when unknown)."),
    model: str = typer.Option(None, "--model", "-m", help="Model of the run (default: its best)."),
) -> None:
    """Score user–item pairs with a run's model."""
    import pandas as pd

    _log(verbose=False)
    with _errors():
        settings = _settings()
        frame = pd.read_csv(pairs, dtype=str, keep_default_na=False)
        frame.columns = [c.strip() for c in frame.columns]
        missing = {"user_id", "item_id"} - set(frame.columns)
        if missing:
            raise InvalidDataset(f"{pairs}: header lacks {', '.join(sorted(missing))} (expected user_id,item_id)")
        loaded, rec, name = _load_model(settings, run, model)
        values = rec.score(list(zip(frame["user_id"].str.strip(), frame["item_id"].str.strip())))
        frame["score"] = values
        frame.to_csv(out, index=False)
    unknown = int(pd.isna(frame["score"]).sum())
    typer.echo(f"{len(frame)} pairs ({unknown} unknown) scored by {loaded.run_id}/{name}: {out}", err=True)


# --- the log and the registry -------------------------------------------------------------------------
def register(app: typer.Typer) -> None:
    app.command()(recommend)
    app.command()(score)
