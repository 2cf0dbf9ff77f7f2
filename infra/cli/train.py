"""Trainer commands: ``train``, ``eval``, ``recommend``, ``score``, ``replay``, ``promote``,
``rollback``, ``verify``, ``reindex``, ``runs``.

The offline ones (``train --interactions``, ``eval --interactions``, ``recommend``, ``score``,
``verify``, ``reindex``, ``runs``) need no broker and no Redis. Logs go to stderr; what a
script reads goes to stdout (``train`` prints the run directory on its last line).
Exit codes: 2 bad input, 3 a service is unavailable, 1 a check failed.
"""
from __future__ import annotations

import json
import logging
import math
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from typer.core import TyperCommand

from schemas.errors import InvalidDataset, ServiceUnavailable, StreamrecError
from schemas.settings import Settings, get_settings

# Options `train` and `eval` share.
ItemsOption = Annotated[Optional[Path], typer.Option(
    "--items", exists=True, readable=True,
    help="Item metadata: CSV item_id[,title][,text][,category][,subcategory] or "
         "catalog JSON lines (the content model needs it; MovieLens brings u.item).")]
ProfilesOption = Annotated[Optional[Path], typer.Option(
    "--user-profiles", exists=True, readable=True,
    help="User metadata: CSV user_id[,segment|profession][,level] or JSON lines.")]
FormatOption = Annotated[str, typer.Option("--format", help="auto | csv | movielens | snapshot")]

MODELS_PLACEHOLDER = "{models}"


class ModelListCommand(TyperCommand):
    """Fills the list of model names into the help only when help is shown: importing the
    models (torch, LightFM, scikit-learn) costs seconds every other command should not pay."""

    def format_help(self, ctx, formatter) -> None:
        from trainer.models import MODELS

        names = ", ".join(MODELS)
        if self.help:
            self.help = self.help.replace(MODELS_PLACEHOLDER, names)
        for param in self.params:
            if getattr(param, "help", None):
                param.help = param.help.replace(MODELS_PLACEHOLDER, names)
        super().format_help(ctx, formatter)


# --- shared helpers -------------------------------------------------------------------------------
def _log(verbose: bool = True) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports every CPU probe


def _settings(**overrides) -> Settings:
    """Settings from the environment, with the stack's broker and Redis when `streamrec up`
    runs and none is configured, and the command's overrides."""
    settings = get_settings()
    stack = Path(settings.data_dir) / "stack.json"
    if (not settings.kafka_bootstrap or not settings.redis_url) and stack.exists():
        try:
            found = json.loads(stack.read_text())
            settings = settings.model_copy(update={
                "kafka_bootstrap": settings.kafka_bootstrap or found.get("kafka_bootstrap"),
                "redis_url": settings.redis_url or found.get("redis_url"),
            })
        except ValueError:
            pass
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return settings.model_copy(update=overrides) if overrides else settings


@contextmanager
def _errors() -> Iterator[None]:
    """Turn streamrec's errors into a message and an exit code, never a traceback."""
    try:
        yield
    except ServiceUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    except (StreamrecError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _check_models(names: list[str]) -> list[str]:
    from trainer.models import MODELS

    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise typer.BadParameter(f"unknown model {', '.join(unknown)}; known: {', '.join(MODELS)}", param_hint="--model")
    return list(dict.fromkeys(names))


def _source(settings: Settings, interactions: Path | None, fmt: str, do_replay: bool, progress: bool,
            items: Path | None = None, profiles: Path | None = None):
    """The training data: the file, or the snapshot (after a replay when a broker is set),
    with item / user metadata from ``items`` / ``profiles`` when given."""
    from trainer.data.sources import ITEM_FIELDS, USER_FIELDS, read_meta

    src = _events(settings, interactions, fmt, do_replay, progress)
    if items is not None:
        src.item_meta = read_meta(items, "item_id", ITEM_FIELDS)
    if profiles is not None:
        src.user_meta = read_meta(profiles, "user_id", USER_FIELDS)
    return src


def _events(settings: Settings, interactions: Path | None, fmt: str, do_replay: bool, progress: bool):
    """The file, or replay-then-snapshot: the trainer's one ``events_for_training``."""
    from trainer.data.sources import events_for_training

    return events_for_training(settings, interactions, fmt, do_replay=do_replay, progress=progress,
                               say=lambda msg: typer.echo(msg, err=True)).source


def _progress_default() -> bool:
    return sys.stderr.isatty()


# --- train / eval ---------------------------------------------------------------------------------
def train(
    interactions: Path = typer.Option(None, "--interactions", "-i", exists=True, readable=True,
                                      help="CSV user_id,item_id,timestamp[,type][,value], MovieLens u.data / "
                                           "ratings.dat, or a snapshot; default: the replayed snapshot."),
    model: list[str] = typer.Option(None, "--model", "-m", help="Model to train, repeatable: {models}. "
                                                                "Default: STREAMREC_RETRAIN_MODELS."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Hyperparameter MODEL.KEY=VALUE or KEY=VALUE "
                                                                "(every model that takes it), repeatable."),
    tag: str = typer.Option(None, "--tag", help="Suffix of the run directory name."),
    promote: bool = typer.Option(False, "--promote", help="Promote the run if it beats the serving one."),
    items: ItemsOption = None,
    profiles: ProfilesOption = None,
    fmt: FormatOption = "auto",
    do_replay: bool = typer.Option(True, "--replay/--no-replay", help="Without --interactions: replay new "
                                                                       "records into the snapshot first."),
    val_ratio: float = typer.Option(0.1, "--val-ratio", min=0.0, max=0.5,
                                    help="Share of each user's pairs held out to validate (0: none)."),
    refit: bool = typer.Option(True, "--refit/--no-refit", help="Refit on all data after validating."),
    k: int = typer.Option(10, "--k", min=1, help="Cut-off of the validation metrics."),
    seed: int = typer.Option(42, "--seed"),
    min_user: int = typer.Option(None, "--min-user-interactions", help="Drop users with fewer events."),
    min_item: int = typer.Option(None, "--min-item-interactions", help="Drop items with fewer events."),
    max_items: int = typer.Option(None, "--max-items", help="Keep the N most popular items."),
    cold: bool = typer.Option(None, "--include-cold-items/--no-cold-items",
                              help="Index catalog items that have no events."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Progress bars (default: on a terminal)."),
) -> None:
    """Train models on a dataset and save a run; prints the run directory on its last line.

    Models: {models}.
    """
    from trainer.pipeline import parse_params, train_run

    _log()
    progress = _progress_default() if progress is None else progress
    with _errors():
        settings = _settings(min_user_interactions=min_user, min_item_interactions=min_item, max_items=max_items,
                             include_cold_items=cold)
        names = _check_models(model or list(settings.retrain_models))
        params = parse_params(param or [], names)
        source = _source(settings, interactions, fmt, do_replay, progress, items, profiles)
        typer.echo(source.report.describe(), err=True)
        result = train_run(source, settings, names, params, tag=tag, promote=promote, val_ratio=val_ratio,
                           refit=refit, k=k, seed=seed, verbose=progress)
    for name, values in result.metrics.get("validation", {}).items():
        figures = " ".join(f"{m}={values[m]:.4f}" for m in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}") if m in values)
        typer.echo(f"{name}: {figures} (fit {result.fit_seconds.get(name, 0):.1f} s)")
    if result.promotion is not None:
        typer.echo(result.promotion.describe())
        for w in result.promotion.warnings:
            typer.echo(f"warning: {w}", err=True)
    typer.echo(str(result.run_dir.resolve()))


def eval_(
    interactions: Path = typer.Option(None, "--interactions", "-i", exists=True, readable=True,
                                      help="Dataset file (as for train); default: the replayed snapshot."),
    model: list[str] = typer.Option(None, "--model", "-m", help="Model to compare, repeatable: {models}. "
                                                                "Default: popularity, itemknn, ease."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Hyperparameter MODEL.KEY=VALUE, repeatable."),
    split: str = typer.Option("random", "--split", help="random (per-user 75/25) | leave-last-out | 72/8/20"),
    k: int = typer.Option(10, "--k", min=1),
    sampled: bool = typer.Option(True, "--sampled/--no-sampled", help="Also report sampled ranking (1 + 99)."),
    json_out: str = typer.Option(None, "--json", help="Write the figures as JSON to this file ('-': stdout, "
                                                      "instead of the table)."),
    items: ItemsOption = None,
    profiles: ProfilesOption = None,
    fmt: FormatOption = "auto",
    seed: int = typer.Option(42, "--seed"),
    progress: bool = typer.Option(None, "--progress/--no-progress"),
) -> None:
    """Train several models on one split and print a comparison table.

    Full ranking over unseen items is the headline; sampled_* columns are the 1 + 99
    sampled protocol, labelled as such.

    Models: {models}.
    """
    from trainer.evaluation import format_table
    from trainer.pipeline import SPLITS, evaluate_split, parse_params

    _log()
    progress = _progress_default() if progress is None else progress
    if split not in SPLITS:
        raise typer.BadParameter(f"use one of {', '.join(SPLITS)}", param_hint="--split")
    with _errors():
        settings = _settings()
        names = _check_models(model or ["popularity", "itemknn", "ease"])
        params = parse_params(param or [], names)
        source = _source(settings, interactions, fmt, do_replay=False, progress=progress, items=items,
                         profiles=profiles)
        table = evaluate_split(source, settings, names, params, split=split, k=k, seed=seed, sampled=sampled,
                               verbose=progress)
    payload = {"split": split, "k": k, "source": source.report.source,
               "models": {n: {c: (None if isinstance(v, float) and math.isnan(v) else v) for c, v in row.items()}
                          for n, row in table.to_dict(orient="index").items()}}
    if json_out == "-":
        typer.echo(json.dumps(payload, indent=2))
        return
    head = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", f"mrr@{k}", f"hit_rate@{k}", f"coverage@{k}"]
    typer.echo(f"split: {split}, full ranking over unseen items, k={k}")
    typer.echo(format_table(table, head + ["rmse", "fit_s"]))
    if sampled and f"sampled_ndcg@{k}" in table:
        typer.echo(f"\nsampled ranking (each test item among 99 random unseen items; labelled, not the headline):")
        typer.echo(format_table(table, [f"sampled_hit_rate@{k}", f"sampled_ndcg@{k}", f"sampled_mrr@{k}"]))
    if json_out:
        Path(json_out).write_text(json.dumps(payload, indent=2))
        typer.echo(f"figures: {json_out}", err=True)


# --- batch inference ---------------------------------------------------------------------------------
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
    """Top-k items per user: the run's policy (or one model), served exactly as the API serves
    it for the same run and state — items the user interacted with in training excluded."""
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
def _parse_since(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), tz=timezone.utc)
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is neither epoch seconds nor ISO 8601", param_hint="--since") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)


def replay(
    since: str = typer.Option(None, "--since", help="Only records appended at or after this time "
                                                   "(ISO 8601 or epoch seconds)."),
    reset: bool = typer.Option(False, "--reset", help="Delete the snapshot and read from the earliest record."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Copy new records of the interactions topic into the local Parquet snapshot (incremental)."""
    from trainer.replay import replay as run_replay

    _log()
    when = _parse_since(since) if since else None
    with _errors():
        settings = _settings()
        result = run_replay(settings, since=when, reset=reset, progress=progress)
    typer.echo(result.describe())
    typer.echo(str(settings.snapshot_path()))


def promote(
    run: str = typer.Argument(..., help="Run directory or name."),
    force: bool = typer.Option(False, "--force", help="Promote without comparing it with the serving run."),
    interactions: Path = typer.Option(None, "--interactions", "-i", exists=True, readable=True,
                                      help="Data to cut the shared holdout from (as for train); "
                                           "default: the replayed snapshot."),
    fmt: FormatOption = "auto",
    do_replay: bool = typer.Option(True, "--replay/--no-replay", help="Without --interactions: replay new "
                                                                       "records into the snapshot first."),
) -> None:
    """Serve RUN if it beats the serving run on a shared holdout of the newest events
    (champion/challenger; without data for one, on their validation figures)."""
    from trainer.artifacts import current_run, resolve_run
    from trainer.pipeline import dataset_from_source
    from trainer.promotion import promote as do_promote

    _log()
    with _errors():
        settings = _settings()
        run_dir = resolve_run(settings.artifact_dir, run)
        data, note = None, ""
        serving = current_run(settings.artifact_dir)
        if not force and serving is not None and serving != run_dir:
            try:  # no data for a holdout is no error: promotion then compares validation figures
                data = dataset_from_source(_source(settings, interactions, fmt, do_replay, False), settings)
            except (InvalidDataset, ServiceUnavailable) as exc:
                note = f"no data for a shared holdout ({exc})"
        result = do_promote(settings, run_dir, force=force, data=data, holdout_note=note)
    typer.echo(result.describe())
    if result.holdout and "challenger" in result.holdout:
        h = result.holdout
        fig = {who: "n/a" if h[who] is None else f"{h[who]:.4f}" for who in ("challenger", "champion")}
        typer.echo(f"holdout: {h['mode']} after {h['after']}, {h['events']} events, {h['users']} users, "
                   f"fingerprint {h['fingerprint']}; {h['metric']} challenger {fig['challenger']}, "
                   f"champion {fig['champion']}")
    if not result.promoted:
        raise typer.Exit(1)


def rollback() -> None:
    """Serve the previously promoted run again."""
    from trainer.promotion import rollback as do_rollback

    _log()
    with _errors():
        result = do_rollback(_settings())
    typer.echo(result.describe())


def verify(run: str = typer.Argument(..., help="Run directory or name, or 'current'.")) -> None:
    """Check that a run is complete (exit 1 and list the problems when it is not)."""
    from trainer.artifacts import resolve_run, verify_run

    with _errors():
        run_dir = resolve_run(_settings().artifact_dir, run)
    problems = verify_run(run_dir)
    if problems:
        for p in problems:
            typer.echo(f"{run_dir.name}: {p}")
        raise typer.Exit(1)
    typer.echo(f"{run_dir.name}: complete")


def reindex(run: str = typer.Argument("current", help="Run directory or name (default: the serving run).")) -> None:
    """Rebuild the FAISS indexes of a run from its item embeddings."""
    from trainer.artifacts import reindex_run, resolve_run

    with _errors():
        run_dir = resolve_run(_settings().artifact_dir, run)
        done = reindex_run(run_dir)
    typer.echo(f"{run_dir.name}: rebuilt {len(done)} indexes ({', '.join(done) or 'no model has embeddings'})")


def runs(
    cleanup: bool = typer.Option(False, "--cleanup", help="Delete all but the newest STREAMREC_KEEP_RUNS runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the runs, oldest first; * marks the serving one."""
    from trainer.artifacts import current_run, list_runs, run_score, verify_run
    from trainer.promotion import cleanup as do_cleanup

    settings = _settings()
    if cleanup:
        for path in do_cleanup(settings.artifact_dir, settings.keep_runs):
            typer.echo(f"removed {path.name}", err=True)
    cur = current_run(settings.artifact_dir)
    rows = []
    for path in list_runs(settings.artifact_dir):
        try:
            metrics = json.loads((path / "metrics.json").read_text())
        except (OSError, ValueError):
            metrics = {}
        models = sorted(p.name for p in (path / "models").iterdir()) if (path / "models").is_dir() else []
        rows.append({"run_id": path.name, "current": path == cur, "complete": not verify_run(path),
                     "models": models, "best_model": metrics.get("best_model"),
                     settings.promote_metric: run_score(metrics, settings.promote_metric)})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"no runs under {settings.artifact_dir}")
    for r in rows:
        value = r[settings.promote_metric]
        figure = f"{settings.promote_metric}={value:.4f}" if value is not None else "no validation"
        state = "" if r["complete"] else " INCOMPLETE"
        typer.echo(f"{'*' if r['current'] else ' '} {r['run_id']}  {figure}  {','.join(r['models'])}{state}")


def register(app: typer.Typer) -> None:
    app.command(cls=ModelListCommand)(train)
    app.command("eval", cls=ModelListCommand)(eval_)
    app.command()(recommend)
    app.command()(score)
    app.command()(replay)
    app.command()(promote)
    app.command()(rollback)
    app.command()(verify)
    app.command()(reindex)
    app.command()(runs)
