"""Search and reranking commands: ``search-index`` (build the catalogue's search index) and
``train-reranker`` (fine-tune the cross-encoder on like/dislike feedback, evaluate it before
and after, promote it when it wins, and have the API reload it)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from infra.cli.common import _errors, _log, _progress_default, _settings


def _api_reload(settings, api_url: str | None) -> str:
    """Ask the running API to reload (``POST /admin/reload``); says what happened."""
    import httpx

    url = api_url
    stack = Path(settings.data_dir) / "stack.json"
    if url is None and stack.exists():
        try:
            url = json.loads(stack.read_text()).get("api_url")
        except ValueError:
            url = None
    if not url:
        return "no running API found (no --api-url, no stack.json): it loads the reranker at its next start"
    headers = {"X-Admin-Key": settings.admin_key} if settings.admin_key else {}
    try:
        r = httpx.post(f"{url.rstrip('/')}/admin/reload", headers=headers, timeout=60.0)
    except httpx.HTTPError as exc:
        return f"the API at {url} did not answer the reload ({exc}); it loads the reranker at its next start"
    if r.status_code != 200:
        return f"the API at {url} refused the reload: {r.status_code} {r.text[:200]}"
    return f"the API at {url} reloaded: {r.json().get('search')}"


def search_index(
    items: Optional[Path] = typer.Option(None, "--items", exists=True, readable=True,
                                         help="Item metadata: CSV item_id,title[,text][,category] or catalog JSON "
                                              "lines; default: the catalog in the replayed snapshot."),
    do_replay: bool = typer.Option(True, "--replay/--no-replay", help="Replay the topics into the snapshot first."),
    reload: bool = typer.Option(True, "--reload/--no-reload", help="Ask the running API to load the new index."),
    api_url: Optional[str] = typer.Option(None, "--api-url", help="The API to reload (default: stack.json's)."),
    progress: bool = typer.Option(None, "--progress/--no-progress"),
) -> None:
    """Build the search index (MiniLM embeddings in FAISS, and BM25) of the catalogue; it
    becomes the serving one. Prints its directory on the last line."""
    from trainer.data.snapshot import Snapshot
    from trainer.data.sources import ITEM_FIELDS, read_meta
    from trainer.text_index import build_text_index, new_index_dir, point_current, search_root, texts_from_meta
    from trainer.text_models import load_bi_encoder

    _log()
    progress = _progress_default() if progress is None else progress
    with _errors():
        settings = _settings()
        if items is not None:
            meta = read_meta(items, "item_id", ITEM_FIELDS)
        else:
            if do_replay and settings.kafka_bootstrap:
                from trainer.replay import replay

                typer.echo(replay(settings, progress=progress).describe(), err=True)
            cat = Snapshot(settings.snapshot_path()).meta("catalog")
            meta = cat.meta_frame() if cat.exists() else None
        texts = texts_from_meta(meta)
        out = build_text_index(texts, new_index_dir(settings.artifact_dir), load_bi_encoder(settings.hf_offline),
                               progress=progress)
        point_current(search_root(settings.artifact_dir), out)
        typer.echo(f"indexed {len(texts)} items", err=True)
        if reload:
            typer.echo(_api_reload(settings, api_url), err=True)
    typer.echo(str(out))


def train_reranker(
    events: Optional[Path] = typer.Option(None, "--events", exists=True, readable=True,
                                          help="JSON lines of events (impressions with context.query, likes, "
                                               "dislikes); default: the replayed snapshot."),
    items: Optional[Path] = typer.Option(None, "--items", exists=True, readable=True,
                                         help="Item texts: CSV item_id,title[,text] or catalog JSON lines "
                                              "(default: the snapshot's catalog and the search index)."),
    allow_small: bool = typer.Option(False, "--allow-small", help="Train on as few as "
                                     "STREAMREC_RERANKER_MIN_FEEDBACK_SMALL (10) feedbacks instead of 50."),
    implicit: bool = typer.Option(False, "--implicit", help="Also clicks (1) and skips (0) as labels."),
    start_from: str = typer.Option("base", "--from", help="base (the packaged MiniLM, new head) | current "
                                                          "(continue the serving reranker) | a reranker run dir"),
    epochs: float = typer.Option(3.0, "--epochs", min=0.01),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lr: float = typer.Option(2e-5, "--lr", min=0.0),
    loss: str = typer.Option("bce", "--loss", help="bce (like/dislike pairs) | lambda (the shown lists, ordered "
                                                   "for NDCG; --batch-size then counts lists)"),
    max_steps: int = typer.Option(-1, "--max-steps", help="Stop after this many steps (> 0; quick runs)."),
    seed: int = typer.Option(42, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda[:N]"),
    promote: bool = typer.Option(True, "--promote/--no-promote", help="Promote when it beats the serving "
                                                                       "reranker (or the first stage)."),
    do_replay: bool = typer.Option(True, "--replay/--no-replay"),
    api_url: Optional[str] = typer.Option(None, "--api-url", help="The API to reload (default: stack.json's)."),
    progress: bool = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: on a terminal)."),
) -> None:
    """Fine-tune the cross-encoder reranker on like/dislike feedback; report before/after on
    one validation set (80/20 by query); promote and hot-reload it when it wins. Prints the
    run directory on the last line."""
    from trainer.reranker.finetune import FineTuneParams
    from trainer.reranker.pipeline import events_and_texts, train_reranker as run
    from trainer.reranker.report import format_report

    _log()
    progress = _progress_default() if progress is None else progress
    say = lambda msg: typer.echo(msg, err=True)  # noqa: E731
    with _errors():
        settings = _settings()
        frame, texts = events_and_texts(settings, events, items, do_replay=do_replay, progress=progress, say=say)
        params = FineTuneParams(epochs=epochs, batch_size=batch_size, learning_rate=lr, seed=seed, max_steps=max_steps,
                                loss=loss)
        result = run(settings, frame, texts, allow_small=allow_small, implicit=implicit, params=params,
                     start_from=start_from, device=device, progress=progress, promote=promote, say=say)
    typer.echo(format_report(result.report))
    if result.promoted:
        typer.echo(_api_reload(settings, api_url), err=True)
    typer.echo(str(result.run_dir))


def export_reranker(
    run: Optional[Path] = typer.Option(None, "--run", help="A reranker run dir (default: the serving one, "
                                                           "artifacts/reranker/current)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=16, max=512,
                                             help="Tokens the export reads (default: the run's, else "
                                                  "STREAMREC_RERANK_MAX_LENGTH)."),
    reload: bool = typer.Option(True, "--reload/--no-reload", help="Ask the running API to load it."),
    api_url: Optional[str] = typer.Option(None, "--api-url", help="The API to reload (default: stack.json's)."),
) -> None:
    """Write the int8 ONNX export of a reranker run trained before train-reranker made one
    (model/onnx/), so the API serves it with ONNX Runtime. Prints the export's path."""
    from schemas.errors import ArtifactError
    from trainer.reranker.onnx_backend import export_onnx
    from trainer.reranker.store import current_reranker, read_info
    from trainer.text_models import load_cross_encoder

    _log()
    with _errors():
        settings = _settings()
        run_dir = run or current_reranker(settings.artifact_dir)
        if run_dir is None:
            raise ArtifactError("no reranker is promoted yet and no --run given: "
                                "train one with `streamrec train-reranker`")
        length = max_length or read_info(run_dir).get("max_length") or settings.rerank_max_length
        model = load_cross_encoder(Path(run_dir) / "model", settings.hf_offline, "cpu", int(length))
        out = export_onnx(model, Path(run_dir) / "model")
        typer.echo(f"exported {Path(run_dir).name} at max length {length}", err=True)
        if reload:
            typer.echo(_api_reload(settings, api_url), err=True)
    typer.echo(str(out))


def register(app: typer.Typer) -> None:
    app.command("search-index")(search_index)
    app.command("train-reranker")(train_reranker)
    app.command("export-reranker")(export_reranker)
