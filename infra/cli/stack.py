"""Commands that run the stack: ``up``, ``worker``, ``api``."""
from __future__ import annotations

import logging
import socket

import typer

from infra.cli.common import _errors
from schemas.settings import Settings, get_settings


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _configured(settings: Settings, what: str) -> Settings:
    if not settings.kafka_bootstrap or not settings.redis_url:
        raise typer.BadParameter(
            f"`streamrec {what}` needs STREAMREC_KAFKA_BOOTSTRAP and STREAMREC_REDIS_URL "
            "(or run the whole stack with `streamrec up`)"
        )
    return settings


def up(
    demo: bool = typer.Option(False, "--demo", help="Load the built-in synthetic catalog and event history."),
    api_port: int = typer.Option(None, "--api-port", help="Port of the API (default: STREAMREC_API_PORT or 8000)."),
    scheduler: bool = typer.Option(True, "--scheduler/--no-scheduler", help="Run the retrain scheduler."),
) -> None:
    """Start broker, Redis, a Faust worker, the API and the scheduler; supervise them until Ctrl-C."""
    from infra.supervisor import Supervisor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = get_settings()
    if api_port is not None:
        settings = settings.model_copy(update={"api_port": api_port})
    if not _port_free(settings.api_host, settings.api_port):
        raise typer.BadParameter(f"port {settings.api_port} is in use: pick another with --api-port N")
    if not settings.admin_key and not settings.allow_insecure:
        from infra.secrets import local_admin_key

        key, path = local_admin_key(settings.data_dir)
        settings = settings.model_copy(update={"admin_key": key})
        typer.echo(f"admin key (X-Admin-Key) in {path}")
    Supervisor(settings, demo=demo, with_scheduler=scheduler).run()


def worker() -> None:
    """Run one Faust worker against the configured broker and Redis."""
    from streams.worker import run

    run(_configured(get_settings(), "worker"))


def api(
    workers: int = typer.Option(1, "--workers", min=1, max=64,
                                help="API processes on the one port (settings from the environment)."),
) -> None:
    """Run the API alone against the configured broker and Redis (needs STREAMREC_ADMIN_KEY, or
    STREAMREC_ALLOW_INSECURE=1)."""
    from inference.server import run

    settings = _configured(get_settings(), "api")
    with _errors():
        run(settings, workers=workers)


def register(app: typer.Typer) -> None:
    app.command()(up)
    app.command()(worker)
    app.command()(api)
