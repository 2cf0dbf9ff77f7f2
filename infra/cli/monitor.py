"""``streamrec monitor``: compare the online metrics with their baseline and raise alerts."""
from __future__ import annotations

import signal
import threading

import typer

from infra.cli.common import _errors, _log
from schemas.settings import get_settings


def monitor(
    once: bool = typer.Option(False, "--once", help="One look, print what changed and the open alerts, exit."),
    interval: float = typer.Option(None, "--interval", help="Seconds between looks (STREAMREC_MONITOR_INTERVAL_S)."),
    as_json: bool = typer.Option(False, "--json", help="With --once: the open alerts as JSON."),
) -> None:
    """Compare each online metric's recent window with its baseline and raise or resolve alerts
    (also run by the scheduler of `streamrec up`). Exit 1 with --once when an alert is open."""
    from trainer.alerts.monitor import Monitor, run_forever, to_json

    settings = get_settings()
    if not settings.redis_url:
        raise typer.BadParameter("`streamrec monitor` needs STREAMREC_REDIS_URL (and the broker for the DLQ rate)")
    _log()
    if not once:
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        run_forever(settings, stop, interval)
        return
    with _errors():
        result = Monitor(settings).run_once()
    typer.echo(to_json(result.open) if as_json else result.describe())
    if result.open:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(monitor)
