"""``streamrec ope``: a challenger run's CTR estimated from logged traffic (docs/off-policy.md)."""
from __future__ import annotations

import json

import typer

from infra.cli.common import _errors, _log, _settings


def ope(
    run: str = typer.Option(..., "--run", help="The challenger: a run directory or name."),
    do_replay: bool = typer.Option(False, "--replay/--no-replay",
                                   help="Replay new events from the broker into the snapshot first."),
    reward: str = typer.Option("click", "--reward", help="Comma list of event types that count as a reward."),
    window_s: float = typer.Option(1800.0, "--window", min=0.0,
                                   help="Seconds after an impression in which a reward without a request id counts."),
    strategy: str = typer.Option(None, "--strategy", help="Only lists served under this strategy / arm label."),
    alpha: float = typer.Option(0.05, "--alpha", min=1e-6, max=0.5, help="1 - confidence level of the intervals."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
) -> None:
    """Estimate the run's policy CTR with IPS, self-normalised IPS and doubly robust estimators
    from the replayed snapshot's impressions (with their propensities) and clicks, beside the
    logging policy's observed CTR. The run's list for each logged request is computed through the
    one policy path (as `streamrec recommend` does)."""
    from trainer.artifacts import resolve_run
    from trainer.data.snapshot import Snapshot
    from trainer.ope import estimate_all
    from trainer.ope_data import challenger_lists, logged_slots
    from trainer.replay import replay

    _log(verbose=False)
    with _errors():
        settings = _settings()
        run_dir = resolve_run(settings.artifact_dir, run)
        if do_replay:
            typer.echo(replay(settings).describe(), err=True)
        snap = Snapshot(settings.snapshot_path())
        if not snap.exists():
            raise FileNotFoundError(f"{snap.path}: no snapshot yet; run `streamrec replay` (or pass --replay)")
        types = [t.strip() for t in reward.split(",") if t.strip()]
        logged = logged_slots(snap.frame(), types, window_s, strategy)
        k = int(logged.logs.position.max()) + 1
        targets, policy = challenger_lists(run_dir, logged.users, k)
        est = estimate_all(logged.logs, targets, alpha)
    logs = logged.logs
    summary = {
        "run": run_dir.name, "policy": policy, "requests": logs.n_requests, "impressions": len(logs.item),
        "rewards": int(logs.reward.sum()), "explored_share": float((logs.propensity < 1).mean()),
        "logged_strategies": logged.strategies, "alpha": alpha,
        "estimates": {name: e.to_dict() for name, e in est.items()},
    }
    if as_json:
        typer.echo(json.dumps(summary))
        return
    level = round(100 * (1 - alpha))
    typer.echo(f"{logs.n_requests} logged lists, {len(logs.item)} impressions, {summary['rewards']} rewarded "
               f"({', '.join(types)}); {summary['explored_share']:.1%} of impressions with propensity < 1; "
               f"logged strategies: {', '.join(f'{s} {n}' for s, n in logged.strategies.items())}")
    typer.echo(f"challenger {run_dir.name} (policy {policy}), CTR per shown slot, {level}% intervals:")
    typer.echo(f"{'':<26}{'CTR':>9}  {'interval':<21}{'matched':>9}{'ESS':>10}")
    names = {"logged": "logging policy (observed)", "ips": "IPS", "snips": "self-normalised IPS", "dr": "doubly robust"}
    for key, label in names.items():
        e = est[key]
        typer.echo(f"{label:<26}{e.value:>9.4f}  [{e.ci[0]:.4f}, {e.ci[1]:.4f}]".ljust(56)
                   + (f"{e.matched:>9}{e.ess:>10.1f}" if key != "logged" else ""))
    if est["ips"].matched == 0:
        typer.echo("no logged slot shows the challenger's item at its position: IPS has no evidence; turn on "
                   "exploration (STREAMREC_EXPLORE_EPSILON) to log some", err=True)


def register(app: typer.Typer) -> None:
    app.command()(ope)
