"""``streamrec keys new``: a producer key for the HTTP API, and the settings entry that accepts it."""
from __future__ import annotations

import json
import secrets

import typer

keys_app = typer.Typer(help="Producer API keys (X-Api-Key).", no_args_is_help=True)


@keys_app.command("new")
def new(
    name: str = typer.Argument(..., help="A name for the key (shows in logs; the key itself never does)."),
    scope: list[str] = typer.Option(..., "--scope", "-s", help="events, feedback or read; repeatable."),
    writes_per_s: float = typer.Option(100.0, "--writes-per-s", help="Write requests per second, per API process."),
    burst: int = typer.Option(200, "--burst", help="Writes allowed at once before the rate applies."),
) -> None:
    """Make a key: print it once (give it to the producer) and the entry for STREAMREC_API_KEYS."""
    from pydantic import ValidationError

    from schemas.security import ApiKeySpec, hash_key

    key = f"sr_{secrets.token_urlsafe(32)}"
    try:
        spec = ApiKeySpec(name=name, sha256=hash_key(key), scopes=scope, writes_per_s=writes_per_s, burst=burst)
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    typer.echo(f"key (shown once): {key}")
    typer.echo("add to STREAMREC_API_KEYS (a JSON list):")
    typer.echo(json.dumps(spec.model_dump()))


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
