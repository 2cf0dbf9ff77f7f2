"""The served reranker's fast backend: an int8 ONNX export of the fine-tuned cross-encoder,
scored with ONNX Runtime.

``export_onnx`` traces the ``CrossEncoder``'s transformer and its activation (sigmoid for one
label, so the graph outputs the same score ``CrossEncoder.predict`` gives) with the
TorchScript-based ``torch.onnx.export``, then quantises the weights of its MatMuls to int8,
one scale per output channel, with ``onnxruntime.quantization.quantize_dynamic``
(activations are quantised per call).
optimum would do the same, but optimum-onnx pins transformers < 4.58. The export lands in
the model folder of a reranker run, next to the torch weights and the tokenizer::

    model/onnx/model.int8.onnx
    model/onnx/export.json     max_length, opset, quantisation, library versions

``OnnxCrossEncoder`` loads it with the run's tokenizer (``pair_tokens``: the items' tokens
cached) and scores (query, text) pairs with the ``predict`` call the torch ``CrossEncoder``
has, truncated at the max length the export records, so search and ``train-reranker``'s
evaluation call either backend the same way.
"""
from __future__ import annotations

import copy
import json
import logging
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from schemas.errors import ArtifactError
from trainer.reranker.pair_tokens import PairTokenizer

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
INT8_FILE = "model.int8.onnx"
META_FILE = "export.json"
OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_path(model_dir: Path) -> Path:
    return Path(model_dir) / ONNX_DIR / INT8_FILE


def has_onnx(model_dir: Path | None) -> bool:
    return model_dir is not None and onnx_path(model_dir).exists() and (Path(model_dir) / ONNX_DIR / META_FILE).exists()


def read_meta(model_dir: Path) -> dict:
    try:
        return json.loads((Path(model_dir) / ONNX_DIR / META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{model_dir}: unreadable ONNX export metadata ({exc})") from exc


def _scores_module(model, activation, names: list[str]):
    """The transformer and the CrossEncoder's activation as one module: the graph outputs scores."""
    import torch

    class Scores(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.activation = model, activation

        def forward(self, *inputs):
            return self.activation(self.model(**dict(zip(names, inputs))).logits).reshape(-1)

    return Scores().eval()


def export_onnx(cross_encoder, model_dir: Path, quantize: bool = True) -> Path:
    """Write ``model_dir/onnx/model.int8.onnx`` (int8 weights; fp32 with ``quantize`` False,
    for tests that check the graph itself) and its ``export.json``; returns the model path."""
    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = Path(model_dir)
    out_dir = model_dir / ONNX_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    max_length = int(cross_encoder.max_seq_length or cross_encoder.tokenizer.model_max_length)
    tok = cross_encoder.tokenizer
    sample = tok(["a query"] * 2, ["an item text, a little longer"] * 2, padding=True, truncation=True,
                 max_length=max_length, return_tensors="pt")
    names = [n for n in INPUTS if n in sample]
    # traced from a copy with eager attention: the SDPA path exports its mask handling as Where / IsNaN
    # nodes, about a tenth of the graph's time at 64 tokens (ONNX Runtime profile); the weights are the same
    traced = copy.deepcopy(cross_encoder.model).cpu().eval()  # trained on a GPU or not, exported for the CPU
    traced.set_attn_implementation("eager")
    module = _scores_module(traced, cross_encoder.activation_fn, names)
    fp32 = out_dir / "model.fp32.onnx"
    axes = {n: {0: "pairs", 1: "tokens"} for n in names} | {"scores": {0: "pairs"}}
    with warnings.catch_warnings(), torch.inference_mode():
        # the TorchScript exporter (dynamo=False) is deprecated in favour of torch.export, which needs
        # onnxscript; it warns about itself and traces transformers' shape checks as constants (TracerWarning):
        # the axes that vary (pairs, tokens) are declared dynamic, and the test compares scores with torch's
        warnings.simplefilter("ignore")
        torch.onnx.export(module, tuple(sample[n] for n in names), str(fp32), input_names=names,
                          output_names=["scores"], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    target = out_dir / INT8_FILE
    if quantize:
        quiet = logging.getLogger()  # quantize_dynamic logs "consider pre-processing" at warning level on root
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            # one scale per output channel: a fine-tuned reranker's per-tensor int8 scores moved by up to 0.07
            # and lost 8% NDCG@10 on Cranfield; per channel, 0.04 and 2% (docs/search-reranking.md)
            quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            quiet.setLevel(level)
        fp32.unlink()
    else:
        fp32.replace(target)
    meta = {"file": INT8_FILE, "max_length": max_length, "inputs": names, "opset": OPSET,
            "quantization": ("dynamic int8 (weights QInt8 per channel, activations per call)" if quantize
                             else "none (fp32)"),
            "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    (out_dir / META_FILE).write_text(json.dumps(meta, indent=2))
    return target


class OnnxCrossEncoder:
    """Scores (query, text) pairs with an ONNX export, like ``CrossEncoder.predict``."""

    def __init__(self, model_dir: Path, threads: int = 2, max_length: int | None = None, hf_offline: bool = True):
        from trainer.text_models import offline

        offline(hf_offline)
        import onnxruntime as ort
        from transformers import AutoTokenizer

        model_dir = Path(model_dir)
        if not has_onnx(model_dir):
            raise ArtifactError(f"{model_dir} has no ONNX export ({ONNX_DIR}/{INT8_FILE} and {META_FILE})")
        self.meta = read_meta(model_dir)
        self.max_length = int(max_length or self.meta["max_length"])
        tokenizer_file = model_dir / "tokenizer.json"  # a fast tokenizer's: items' tokens cached (pair_tokens)
        if tokenizer_file.exists():
            self.features = PairTokenizer(tokenizer_file, self.max_length)
        else:
            tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            self.features = lambda pairs: tok([q for q, _ in pairs], [t for _, t in pairs], padding=True,
                                              truncation=True, max_length=self.max_length, return_tensors="np")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # no spin-waiting between ops: on 2 cores shared with the API's event loop (and neighbours), a thread
        # spinning for a descheduled peer burns the core the peer needs (measured: wall p50 of 20 pairs 354 ms
        # without, 502 ms with, at load ~10; CPU per call 180 vs 248 ms)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path(model_dir)), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.backend = "onnx int8" if "int8" in self.meta.get("quantization", "") else "onnx fp32"
        self.path = model_dir

    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32, show_progress_bar: bool = False,
                **_) -> np.ndarray:
        """Scores of ``pairs``, in batches of ``batch_size`` (``CrossEncoder.predict``'s signature)."""
        pairs = list(pairs)
        out = []
        for start in range(0, len(pairs), max(1, batch_size)):
            chunk = pairs[start:start + batch_size]
            enc = self.features(chunk)
            feed = {n: np.asarray(enc[n], dtype=np.int64) for n in self.inputs}
            out.append(self.session.run(None, feed)[0].reshape(-1))
        return np.concatenate(out).astype(np.float32) if out else np.empty(0, dtype=np.float32)
