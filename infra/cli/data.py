"""Commands for data in and out: ``import``, ``check-data``, ``schema export``, ``config``."""
from __future__ import annotations

import asyncio
import json
from enum import Enum
from pathlib import Path

import typer

from schemas.errors import InvalidEvent, ServiceUnavailable
from schemas.settings import get_settings

schema_app = typer.Typer(help="Event and API schemas.", no_args_is_help=True)


def _format_enum() -> type[Enum]:
    from infra.importers import FORMATS

    return Enum("ImportFormat", {name.replace("-", "_"): name for name in FORMATS}, type=str)


ImportFormat = _format_enum()


def import_(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="File to import."),
    fmt: ImportFormat = typer.Option(..., "--format", "-f", help="File format."),
    rejects: Path = typer.Option(None, help="Write refused rows and their reasons here."),
) -> None:
    """Produce events (or catalog records) from a file to the broker, with progress."""
    from infra.importers import FORMATS
    from infra.producer import produce_records

    settings = get_settings()
    if not settings.kafka_bootstrap:
        stack = Path(settings.data_dir) / "stack.json"
        if not stack.exists():
            raise typer.BadParameter("no broker: set STREAMREC_KAFKA_BOOTSTRAP or start `streamrec up` first")
        settings = settings.model_copy(update={"kafka_bootstrap": json.loads(stack.read_text())["kafka_bootstrap"]})
    try:
        report = asyncio.run(produce_records(settings, FORMATS[fmt.value](file), description=f"importing {file.name}"))
    except InvalidEvent as exc:
        typer.echo(f"error: {exc.reason}", err=True)
        raise typer.Exit(2) from None
    except ServiceUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    topics = ", ".join(f"{n} to {t}" for t, n in report.by_topic.items()) or "nothing"
    typer.echo(f"sent {report.sent} records ({topics}); refused {len(report.rejected)}")
    for reason in report.rejected[:10]:
        typer.echo(f"  refused: {reason}", err=True)
    if rejects and report.rejected:
        rejects.write_text("\n".join(report.rejected) + "\n")
        typer.echo(f"all refused rows: {rejects}")


@schema_app.command("export")
def schema_export(directory: Path = typer.Argument(..., help="Directory for the JSON Schema files.")) -> None:
    """Write one JSON Schema per event, catalog and API model."""
    from schemas.export import export

    for path in export(directory):
        typer.echo(path)


def config() -> None:
    """Print the effective settings (environment + defaults) as JSON; secrets are masked."""
    typer.echo(json.dumps(masked(get_settings().model_dump(mode="json")), indent=2))


def masked(values: dict) -> dict:
    """Settings with their secrets hidden: the admin key, passwords, a password in a URL.

    >>> masked({"admin_key": "k", "redis_url": "rediss://:pw@h:6380/0", "kafka_sasl_password": "**********"})
    {'admin_key': '***', 'redis_url': 'rediss://:***@h:6380/0', 'kafka_sasl_password': '**********'}
    """
    import re

    out = dict(values)
    if out.get("admin_key"):
        out["admin_key"] = "***"
    if out.get("redis_url"):
        out["redis_url"] = re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", out["redis_url"])
    return out


#: exit code of check-data when there is too little new data to retrain: the Airflow DAG skips the run
NOTHING_NEW_EXIT = 99


def check_data(
    min_new_events: int = typer.Option(1, "--min-new-events", help="Fewer new events than this: exit 99 (skip)."),
    max_dlq_rate: float = typer.Option(0.05, "--max-dlq-rate", help="DLQ records / records arrived since the last check."),
    max_invalid_rate: float = typer.Option(0.01, "--max-invalid-rate",
                                           help="Share of the newest records that fail the event schema."),
    sample: int = typer.Option(500, "--sample", help="How many of the newest records to validate."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Check the data before a retrain: new volume, DLQ rate, schema of the newest records.

    Exit 0 when healthy, 1 when a check fails, 99 when there is too little new data, 3 when
    the broker does not answer."""
    from infra.cli.common import _errors
    from trainer.data_quality import check_data as run_check

    with _errors():
        quality = run_check(get_settings(), min_new_events=min_new_events, max_dlq_rate=max_dlq_rate,
                            max_invalid_rate=max_invalid_rate, sample=sample)
    typer.echo(json.dumps(quality.to_dict()) if as_json else quality.describe())
    if not quality.healthy:
        raise typer.Exit(1)
    if not quality.enough_new_data:
        raise typer.Exit(NOTHING_NEW_EXIT)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command("check-data")(check_data)
    app.add_typer(schema_app, name="schema")
    app.command()(config)
