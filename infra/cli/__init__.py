"""The ``streamrec`` command. Each module adds its commands to the one Typer app."""
from __future__ import annotations

import typer

app = typer.Typer(
    name="streamrec",
    help="Event-driven streaming recommendations: Kafka + Faust into Redis, served by FastAPI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

from infra.cli import basket, batch, data, experiment, forget, keys, monitor, ope, reranker, runs, stack, train  # noqa: E402  (each registers its commands)

for module in (stack, data, train, batch, runs, basket, reranker, keys, monitor, experiment, ope, forget):
    module.register(app)


def main() -> None:
    app()
