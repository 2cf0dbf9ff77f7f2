"""The runs registry and the log: ``replay``, ``promote``, ``rollback``, ``verify``, ``reindex``,
``runs``. ``verify``, ``reindex`` and ``runs`` are offline.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import typer

from infra.cli.common import FormatOption, _errors, _log, _settings, _source
from schemas.errors import InvalidDataset, ServiceUnavailable

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
    keep_restarted: bool = typer.Option(False, "--keep-restarted",
                                        help="When a topic's log restarted (broker restart, recreated topic), "
                                             "keep the snapshot rows of the old log instead of dropping them."),
) -> None:
    """Copy new records of the interactions topic into the local Parquet snapshot (incremental)."""
    from trainer.replay import replay as run_replay

    _log()
    when = _parse_since(since) if since else None
    with _errors():
        settings = _settings()
        result = run_replay(settings, since=when, reset=reset, progress=progress, keep_restarted=keep_restarted)
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
    canary: float = typer.Option(None, "--canary", help="Serve RUN to this percentage of users as a canary "
                                                       "against the serving run; `streamrec monitor` widens it, "
                                                       "rolls it back or promotes it (docs/experiments.md)."),
) -> None:
    """Serve RUN if it beats the serving run on a shared holdout of the newest events.

    Champion/challenger: both policies measured on one holdout; without data for one, on their
    validation figures. With --canary N: an online canary instead."""
    from trainer.artifacts import current_run, resolve_run
    from trainer.pipeline import dataset_from_source
    from trainer.promotion import promote as do_promote

    _log()
    if canary is not None:
        _canary(run, canary)
        return
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


def _canary(run: str, percent: float) -> None:
    import redis

    from schemas.errors import StoreUnavailable
    from trainer import canary
    from trainer.artifacts import resolve_run

    with _errors():
        settings = _settings()
        if not settings.redis_url:
            raise ValueError("a canary needs Redis (STREAMREC_REDIS_URL, or a running `streamrec up`)")
        from trainer.redis_client import sync_client

        client = sync_client(settings, decode_responses=True, socket_timeout=5)
        try:
            doc = canary.start(settings, client, resolve_run(settings.artifact_dir, run), percent / 100.0)
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis: {exc}") from None
    c = doc["canary"]
    typer.echo(f"canary {doc['name']}: {c['challenger']} to {percent:g}% of users against {c['champion']}; "
               f"steps {', '.join(f'{s:.0%}' for s in c['steps'])}; `streamrec monitor` widens, rolls back or "
               f"promotes it; `streamrec experiment report {doc['name']}` shows it")


def rollback() -> None:
    """Serve the previously promoted run again."""
    from trainer.promotion import rollback as do_rollback

    _log()
    with _errors():
        result = do_rollback(_settings())
    typer.echo(result.describe())


def verify(
    run: str = typer.Argument(..., help="Run directory or name, or 'current'."),
    api: str = typer.Option(None, "--api", help="Also check that the API at this URL serves the run "
                                                "(its /version names it), waiting up to --wait seconds."),
    wait: float = typer.Option(30.0, "--wait", help="How long to wait for the API to load the run."),
) -> None:
    """Check that a run is complete (exit 1 and list the problems when it is not)."""
    from trainer.artifacts import resolve_run, verify_run

    with _errors():
        run_dir = resolve_run(_settings().artifact_dir, run)
    problems = verify_run(run_dir)
    if not problems and api:
        problems = _serving_problems(api, run_dir.name, wait)
    if problems:
        for p in problems:
            typer.echo(f"{run_dir.name}: {p}")
        raise typer.Exit(1)
    typer.echo(f"{run_dir.name}: complete" + (f", served by {api}" if api else ""))


def _serving_problems(api: str, run_id: str, wait_s: float) -> list[str]:
    """Whether the API's ``/version`` names ``run_id`` as its serving run (it reloads on the
    model-updates topic, so a just-promoted run shows within seconds)."""
    import time

    import httpx

    deadline = time.monotonic() + wait_s
    seen = None
    while True:
        try:
            seen = httpx.get(f"{api.rstrip('/')}/version", timeout=5.0).json().get("model_run")
        except (httpx.HTTPError, ValueError) as exc:
            seen = f"no answer ({exc})"
        if seen == run_id:
            return []
        if time.monotonic() >= deadline:
            return [f"the API at {api} serves {seen or 'no run'}, not this run"]
        time.sleep(0.5)


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
    app.command()(replay)
    app.command()(promote)
    app.command()(rollback)
    app.command()(verify)
    app.command()(reindex)
    app.command()(runs)
