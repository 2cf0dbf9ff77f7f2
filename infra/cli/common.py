"""What the trainer commands share: settings with the stack's services, error → exit code,
logging, the training data source, and the options ``train`` and ``eval`` both take.

Exit codes: 2 bad input, 3 a service is unavailable, 1 a check failed. Logs go to stderr;
what a script reads goes to stdout.
"""
from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from typer.core import TyperCommand

from schemas.errors import ServiceUnavailable, StreamrecError
from schemas.settings import Settings, get_settings

# Options `train` and `eval` share.
ItemsOption = Annotated[Optional[Path], typer.Option(
    "--items", exists=True, readable=True,
    help="Item metadata: CSV item_id[,title][,text][,category][,subcategory] or "
         "catalog JSON lines (the content model needs it; MovieLens brings u.item).")]
ProfilesOption = Annotated[Optional[Path], typer.Option(
    "--user-profiles", exists=True, readable=True,
    help="User metadata: CSV user_id[,segment|profession][,level] or JSON lines.")]
FormatOption = Annotated[str, typer.Option("--format", help="auto | csv | movielens | snapshot")]

MODELS_PLACEHOLDER = "{models}"


class ModelListCommand(TyperCommand):
    """Fills the list of model names into the help only when help is shown: importing the
    models (torch, LightFM, scikit-learn) costs seconds every other command should not pay."""

    def format_help(self, ctx, formatter) -> None:
        from trainer.models import MODELS

        names = ", ".join(MODELS)
        if self.help:
            self.help = self.help.replace(MODELS_PLACEHOLDER, names)
        for param in self.params:
            if getattr(param, "help", None):
                param.help = param.help.replace(MODELS_PLACEHOLDER, names)
        super().format_help(ctx, formatter)


# --- shared helpers -------------------------------------------------------------------------------
def _log(verbose: bool = True) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports every CPU probe


def _settings(**overrides) -> Settings:
    """Settings from the environment, with the stack's broker and Redis when `streamrec up`
    runs and none is configured, and the command's overrides."""
    settings = get_settings()
    stack = Path(settings.data_dir) / "stack.json"
    if (not settings.kafka_bootstrap or not settings.redis_url) and stack.exists():
        try:
            found = json.loads(stack.read_text())
            settings = settings.model_copy(update={
                "kafka_bootstrap": settings.kafka_bootstrap or found.get("kafka_bootstrap"),
                "redis_url": settings.redis_url or found.get("redis_url"),
            })
        except ValueError:
            pass
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return settings.model_copy(update=overrides) if overrides else settings


@contextmanager
def _errors() -> Iterator[None]:
    """Turn streamrec's errors into a message and an exit code, never a traceback."""
    try:
        yield
    except ServiceUnavailable as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(3) from None
    except (StreamrecError, ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def _check_models(names: list[str]) -> list[str]:
    from trainer.models import MODELS

    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise typer.BadParameter(f"unknown model {', '.join(unknown)}; known: {', '.join(MODELS)}", param_hint="--model")
    return list(dict.fromkeys(names))


def _source(settings: Settings, interactions: Path | None, fmt: str, do_replay: bool, progress: bool,
            items: Path | None = None, profiles: Path | None = None):
    """The training data: the file, or the snapshot (after a replay when a broker is set),
    with item / user metadata from ``items`` / ``profiles`` when given."""
    from trainer.data.sources import ITEM_FIELDS, USER_FIELDS, read_meta

    src = _events(settings, interactions, fmt, do_replay, progress)
    if items is not None:
        src.item_meta = read_meta(items, "item_id", ITEM_FIELDS)
    if profiles is not None:
        src.user_meta = read_meta(profiles, "user_id", USER_FIELDS)
    return src


def _events(settings: Settings, interactions: Path | None, fmt: str, do_replay: bool, progress: bool):
    """The file, or replay-then-snapshot: the trainer's one ``events_for_training``."""
    from trainer.data.sources import events_for_training

    return events_for_training(settings, interactions, fmt, do_replay=do_replay, progress=progress,
                               say=lambda msg: typer.echo(msg, err=True)).source


def _progress_default() -> bool:
    return sys.stderr.isatty()


