"""Training commands: ``train`` (a run: models, tuned policy, optional promotion) and ``eval``
(several models on one split). Both work offline with ``--interactions`` (no broker, no Redis).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from infra.cli.common import (FormatOption, ItemsOption, ModelListCommand, ProfilesOption, _check_models, _errors,
                              _log, _progress_default, _settings, _source)

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
    val_ratio: float = typer.Option(None, "--val-ratio", min=0.0, max=0.5,
                                    help="Share of each user's pairs held out to choose params and the policy "
                                         "(0: none; default STREAMREC_VAL_RATIO, 0.25)."),
    refit: bool = typer.Option(True, "--refit/--no-refit", help="Refit on all data after validating."),
    k: int = typer.Option(10, "--k", min=1, help="Cut-off of the validation metrics."),
    seed: int = typer.Option(42, "--seed"),
    min_user: int = typer.Option(None, "--min-user-interactions", help="Drop users with fewer events."),
    min_item: int = typer.Option(None, "--min-item-interactions", help="Drop items with fewer events."),
    max_items: int = typer.Option(None, "--max-items", help="Keep the N most popular items."),
    cold: bool = typer.Option(None, "--include-cold-items/--no-cold-items",
                              help="Index catalog items that have no events."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Progress bars (default: on a terminal)."),
    incremental: bool = typer.Option(False, "--incremental", help="Update the serving run with the events since "
                                                                   "its snapshot offsets (warm start, its policy; "
                                                                   "no search) instead of a full retrain."),
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
        if incremental:
            _incremental(source, settings, tag, promote, progress)
            return
        result = train_run(source, settings, names, params, tag=tag, promote=promote, val_ratio=val_ratio,
                           refit=refit, k=k, seed=seed, verbose=progress)
    for name, values in result.metrics.get("validation", {}).items():
        figures = " ".join(f"{m}={values[m]:.4f}" for m in (f"precision@{k}", f"recall@{k}", f"ndcg@{k}") if m in values)
        typer.echo(f"{name}: {figures} (fit {result.fit_seconds.get(name, 0):.1f} s)")
    if result.promotion is not None:
        typer.echo(result.promotion.describe())
        for w in result.promotion.warnings:
            typer.echo(f"warning: {w}", err=True)
    for w in result.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(str(result.run_dir.resolve()))


def _incremental(source, settings, tag, promote: bool, progress: bool) -> None:  # noqa: ANN001
    from trainer.incremental import incremental_run

    result = incremental_run(source, settings, tag=tag or "incremental", promote=promote, verbose=progress)
    typer.echo(result.message)
    if result.run_dir is None:
        return
    for name, how in result.metrics["incremental"]["models"].items():
        typer.echo(f"{name}: {how} ({result.fit_seconds.get(name, 0):.1f} s)")
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
    policy: bool = typer.Option(False, "--policy", help="Also choose the policy as `train` does (grids, blend "
                                                        "weights, λ on validation from the train part) and "
                                                        "report the lists it serves, row `policy (NAME)`."),
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
                               verbose=progress, policy=policy)
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
        typer.echo("\nsampled ranking (each test item among 99 random unseen items; labelled, not the headline):")
        typer.echo(format_table(table, [f"sampled_hit_rate@{k}", f"sampled_ndcg@{k}", f"sampled_mrr@{k}"]))
    if json_out:
        Path(json_out).write_text(json.dumps(payload, indent=2))
        typer.echo(f"figures: {json_out}", err=True)


def register(app: typer.Typer) -> None:
    app.command(cls=ModelListCommand)(train)
    app.command("eval", cls=ModelListCommand)(eval_)
