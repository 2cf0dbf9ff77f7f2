"""Commands for data in and out: ``import``, ``schema export``, ``config``."""
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
    """Print the effective settings (environment + defaults) as JSON."""
    typer.echo(get_settings().model_dump_json(indent=2))


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.add_typer(schema_app, name="schema")
    app.command()(config)
