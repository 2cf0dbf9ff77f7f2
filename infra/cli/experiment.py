"""``streamrec experiment create|list|shares|stop|report`` (docs/experiments.md).

The commands write Redis and the artifact registry directly (``trainer.experiment_store``) and
announce each change on the control channel, so the API replicas serve it within a second; the
checks are those of ``POST /admin/experiments``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from infra.cli.common import _errors, _settings

app = typer.Typer(help="A/B experiments: create, list, reshare, stop, report.", no_args_is_help=True)


def _store(settings):  # noqa: ANN001, ANN202
    from schemas.keys import Keys
    from trainer.experiment_store import ExperimentStore
    from trainer.redis_client import sync_client

    if not settings.redis_url:
        raise typer.BadParameter("experiments need STREAMREC_REDIS_URL (or a running `streamrec up`)")
    client = sync_client(settings, decode_responses=True, socket_timeout=5)
    return ExperimentStore(client, Keys(settings.redis_prefix), settings.artifact_dir)


def _redis_errors():  # noqa: ANN202
    import redis

    return redis.RedisError


def _parse_arm(text: str) -> dict:
    """``NAME=SHARE[,strategy=S][,run=R][,KEY=VALUE...]`` (other keys are policy params)."""
    head, *rest = text.split(",")
    name, sep, share = head.partition("=")
    if not sep:
        raise typer.BadParameter(f"--arm {text!r}: expected NAME=SHARE[,strategy=S][,run=R][,param=V]")
    try:
        arm: dict = {"name": name.strip(), "share": float(share)}
    except ValueError:
        raise typer.BadParameter(f"--arm {text!r}: the share {share!r} is not a number") from None
    params = {}
    for part in rest:
        key, sep, value = part.partition("=")
        if not sep:
            raise typer.BadParameter(f"--arm {text!r}: {part!r} is not KEY=VALUE")
        key = key.strip()
        if key in ("strategy", "run"):
            arm[key] = value.strip()
        else:
            try:
                params[key] = json.loads(value)
            except ValueError:
                params[key] = value
    if params:
        arm["params"] = params
    return arm


def create(
    name: str = typer.Argument(..., help="Experiment name (letters, digits, _ or -)."),
    arm: list[str] = typer.Option(None, "--arm", help="NAME=SHARE[,strategy=S][,run=R][,param=V]; repeat; "
                                                     "the first is the control."),
    spec: Path = typer.Option(None, "--file", exists=True, readable=True,
                              help="JSON body of POST /admin/experiments instead of the options."),
    namespace: str = typer.Option("default", "--namespace"),
    traffic: str = typer.Option("0,1", "--traffic", help="LO,HI: this experiment's slice of its namespace."),
    audience: list[str] = typer.Option(None, "--audience", help="Only users of this segment (repeat)."),
    salt: str = typer.Option(None, "--salt"),
    days: float = typer.Option(None, "--days", help="Stop after this many days (default: until stopped)."),
    description: str = typer.Option("", "--description"),
) -> None:
    """Create and start an experiment; prints its stored document."""
    from pydantic import ValidationError

    from inference.routes.experiments import ExperimentCreate, build_experiment

    with _errors():
        settings = _settings()
        if spec is not None:
            body = json.loads(spec.read_text())
            body.setdefault("name", name)
        else:
            if not arm:
                raise typer.BadParameter("give the arms with --arm (twice at least) or a --file")
            try:
                lo, hi = (float(x) for x in traffic.split(","))
            except ValueError:
                raise typer.BadParameter(f"--traffic {traffic!r}: expected LO,HI") from None
            body = {"name": name, "arms": [_parse_arm(a) for a in arm], "namespace": namespace,
                    "traffic": [lo, hi], "audience": audience or None, "salt": salt, "description": description,
                    "stop": time.time() + days * 86400 if days else None}
        try:
            req = ExperimentCreate.model_validate(body)
        except ValidationError as exc:
            raise ValueError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
        exp = build_experiment(req, settings.artifact_dir)
        try:
            doc = _store(settings).create(exp, req.description)
        except _redis_errors() as exc:
            from schemas.errors import StoreUnavailable

            raise StoreUnavailable(f"Redis: {exc}") from None
    typer.echo(json.dumps(doc, indent=2))


def list_(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The experiments, running first."""
    from trainer.experiment_store import is_running

    with _errors():
        docs = list(_store(_settings()).all().values())
    now = time.time()
    if as_json:
        typer.echo(json.dumps(docs, indent=2))
        return
    if not docs:
        typer.echo("no experiments")
    for d in sorted(docs, key=lambda d: (not is_running(d, now), -(d.get("created_at") or 0))):
        shares = ", ".join(f"{a['name']} {a['share']:.2f}" for a in d["arms"])
        typer.echo(f"{'*' if is_running(d, now) else ' '} {d['name']:<20} {d.get('kind', 'ab'):<8} "
                   f"{d.get('status'):<11} {shares}")


def shares(
    name: str = typer.Argument(...),
    share: list[str] = typer.Option(..., "--share", help="ARM=SHARE; repeat for every arm (they add up to 1)."),
    note: str = typer.Option("", "--note"),
) -> None:
    """New shares, moving as few users between arms as possible."""
    with _errors():
        new = {}
        for s in share:
            arm, _, value = s.partition("=")
            new[arm] = float(value)
        doc = _store(_settings()).set_shares(name, new, note)
    typer.echo(f"{name}: " + ", ".join(f"{a['name']} {a['share']:.2f}" for a in doc["arms"])
               + f" (moved {doc['history'][-1]['moved']:.1%} of users)")


def stop(name: str = typer.Argument(...), note: str = typer.Option("", "--note")) -> None:
    """Stop serving an experiment (its report stays)."""
    with _errors():
        doc = _store(_settings()).finish(name, "stopped", note)
    typer.echo(f"{name}: {doc['status']}")


def report(
    name: str = typer.Argument(...),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON of GET /api/v1/experiments/NAME."),
    cuped: bool = typer.Option(False, "--cuped", help="Add CUPED (clicks per exposed user, adjusted by their "
                                                     "clicks before the start; a sample of users)."),
) -> None:
    """Per arm: exposure, CTR, conversion, positive rate, mean rating; lifts against the control
    with always-valid intervals and p-values."""
    from trainer.experiment_report import describe, read_cuped, read_days, read_shadow, report as build

    with _errors():
        settings = _settings()
        st = _store(settings)
        doc = st.get(name)
        days, users = read_days(st.client, st.keys, doc, time.time())
        shadow = read_shadow(st.client, st.keys, name) if doc.get("kind") == "shadow" else None
        values = read_cuped(st.client, st.keys, doc, time.time()) if cuped else None
        rep = build(doc, days, users, alpha=settings.experiment_alpha, shadow=shadow, cuped=values)
    typer.echo(json.dumps(rep, indent=2) if as_json else describe(rep))


app.command("create")(create)
app.command("list")(list_)
app.command("shares")(shares)
app.command("stop")(stop)
app.command("report")(report)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="experiment")
