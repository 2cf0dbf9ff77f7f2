"""``streamrec forget USER``: write the user's tombstone to the ``users`` topic (the same as
``DELETE /api/v1/users/{id}``), then, with ``--wait``, watch Redis until the worker has deleted
everything it held of the user (the footprint of ``GET /admin/users/{id}/footprint``)."""
from __future__ import annotations

import asyncio
import time

import typer

from infra.cli.common import _errors, _settings


def forget(
    user_id: str = typer.Argument(..., help="The user to forget."),
    wait: float = typer.Option(30.0, "--wait", help="Seconds to wait for the worker to apply it (0: do not wait)."),
) -> None:
    """Forget a user: the worker deletes their state; the next replay drops their events."""
    from inference.routes.users import footprint, send_tombstone
    from schemas.keys import Keys

    settings = _settings()
    with _errors():
        asyncio.run(send_tombstone(settings, user_id))
        typer.echo(f"tombstone of {user_id} written to {settings.topic('users')}")
        if wait <= 0:
            return
        if not settings.redis_url:
            typer.echo("no Redis configured (STREAMREC_REDIS_URL): cannot watch the footprint", err=True)
            raise typer.Exit(3)

        async def watch() -> list[dict[str, str]]:
            from streams.state import make_client

            client = make_client(settings)
            keys = Keys(settings.redis_prefix)
            deadline = time.monotonic() + wait
            try:
                while True:
                    # the worker leaves a marker first: once it exists, the deletion has started
                    started = await client.exists(keys.forgotten(Keys.user_digest(user_id)))
                    held = await footprint(client, keys, user_id)
                    if (started and not held) or time.monotonic() > deadline:
                        return held if started else held or [{"key": "-", "what": "the worker has not applied it yet"}]
                    await asyncio.sleep(0.2)
            finally:
                await client.aclose()

        held = asyncio.run(watch())
    if held:
        typer.echo(f"still held of {user_id} after {wait:.0f} s:")
        for h in held:
            typer.echo(f"  {h['key']}: {h['what']}")
        raise typer.Exit(1)
    typer.echo(f"forgotten: Redis holds nothing of {user_id}; the next `streamrec replay` drops their events")


def register(app: typer.Typer) -> None:
    app.command("forget")(forget)
