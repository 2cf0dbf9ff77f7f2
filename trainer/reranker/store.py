"""Reranker runs on disk, and which one serves.

``artifact_dir/reranker/run_YYYYMMDD_HHMMSS_ffffff/``::

    model/          the fine-tuned CrossEncoder (save_pretrained)
    info.json       model, base, started from, feedbacks trained on, validation metrics, when
    report.json, report.txt, plots/*.png   the before/after evaluation (trainer.reranker.report)
    pairs.parquet   the pairs, with their split
    COMPLETE        written last

``artifact_dir/reranker/current`` points at the promoted run; the API loads it at start and
on ``POST /admin/reload``. With none promoted, search reranks with the untuned base.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from schemas.errors import ArtifactError
from trainer.text_index import current_under, point_current, stamped_dir

RERANKER_DIR = "reranker"
CURRENT = "current"


def reranker_root(artifact_dir: Path) -> Path:
    return Path(artifact_dir) / RERANKER_DIR


def new_run_dir(artifact_dir: Path) -> Path:
    return stamped_dir(reranker_root(artifact_dir), "run")


def current_reranker(artifact_dir: Path) -> Path | None:
    return current_under(reranker_root(artifact_dir), CURRENT)


def promote(artifact_dir: Path, run_dir: Path) -> None:
    run_dir = Path(run_dir)
    if not (run_dir / "COMPLETE").exists():
        raise ArtifactError(f"{run_dir} is not a complete reranker run")
    point_current(reranker_root(artifact_dir), run_dir, CURRENT)


def read_info(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "info.json").read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{run_dir}: unreadable reranker info ({exc})") from exc


def mark_promoted(run_dir: Path, promoted: bool) -> None:
    info = read_info(run_dir)
    info["promoted"] = promoted
    if promoted:
        info["promoted_at"] = datetime.now(timezone.utc).isoformat()
    (Path(run_dir) / "info.json").write_text(json.dumps(info, indent=2, default=float))
