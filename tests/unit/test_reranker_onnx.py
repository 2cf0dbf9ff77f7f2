"""The reranker's ONNX backend on a tiny BERT (2 layers, width 32, the packaged MiniLM's
tokenizer, random weights): its scores match torch's, the loader picks the export when it
is there, and the API's search service falls back to torch when a run has none."""
from __future__ import annotations

import json

import numpy as np
import pytest

from schemas.errors import ArtifactError

QUERY = "heat transfer in hypersonic flow"
TEXTS = ["heat transfer to a flat plate at hypersonic speeds",
         "boundary layer transition on a cone",
         "buckling of thin cylindrical shells under axial compression",
         "an experimental study of the laminar wake behind a blunt body " * 8,  # past max_length: truncated
         "shock waves", "slender wings in supersonic flow at incidence"]
LONG_QUERY = "what is known about " * 12 + "heat transfer"  # over 2 x MAX_LENGTH tokens: tokenised whole
PAIRS = [(QUERY, t) for t in TEXTS] + [("buckling of shells", t) for t in TEXTS] + [(LONG_QUERY, t) for t in TEXTS]
MAX_LENGTH = 24


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A saved cross-encoder folder like a reranker run's ``model/``, without an export."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from trainer.text_models import base_model_path, offline

    offline()
    tok = AutoTokenizer.from_pretrained(str(base_model_path()), local_files_only=True)
    torch.manual_seed(0)
    # a wide initialisation spreads the scores over (0, 1), so a difference between backends shows
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=1, initializer_range=0.3)
    out = tmp_path_factory.mktemp("tiny") / "model"
    BertForSequenceClassification(config).save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return out


def test_pair_tokens_with_cached_items_equal_the_tokenizer_on_whole_pairs(tiny_model_dir):
    from transformers import AutoTokenizer

    from trainer.reranker.pair_tokens import PairTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir), local_files_only=True)
    queries = [QUERY, "shells", "", "a" * 10, "buckling " * 14, LONG_QUERY, "Ünïcode HEAT"]
    for max_length in (MAX_LENGTH, 8, 64):
        pairs_of = PairTokenizer(tiny_model_dir / "tokenizer.json", max_length)
        for query in queries:
            for _ in range(2):  # the second time the items' tokens come from the cache
                got = pairs_of([(query, t) for t in TEXTS])
                want = tok([query] * len(TEXTS), TEXTS, padding=True, truncation=True, max_length=max_length,
                           return_tensors="np")
                for key in ("input_ids", "token_type_ids", "attention_mask"):
                    np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} {query[:20]!r} {max_length}")


def _exported(tiny_model_dir, tmp_path, quantize: bool):
    import shutil

    from trainer.reranker.onnx_backend import export_onnx
    from trainer.text_models import load_cross_encoder

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    torch_model = load_cross_encoder(model_dir, max_length=MAX_LENGTH)
    export_onnx(torch_model, model_dir, quantize=quantize)
    return model_dir, torch_model


def test_onnx_fp32_graph_gives_torch_scores(tiny_model_dir, tmp_path):
    """Same tokenizer, truncation, graph and activation: fp32 ONNX equals torch."""
    from trainer.reranker.onnx_backend import OnnxCrossEncoder

    model_dir, torch_model = _exported(tiny_model_dir, tmp_path, quantize=False)
    onnx_model = OnnxCrossEncoder(model_dir, threads=1)
    assert onnx_model.max_length == MAX_LENGTH and onnx_model.backend == "onnx fp32"
    expected = torch_model.predict(PAIRS, batch_size=5, show_progress_bar=False)
    got = onnx_model.predict(PAIRS, batch_size=5)
    assert got.shape == (len(PAIRS),)
    assert np.ptp(expected) > 0.1  # the scores differ between pairs: the comparison means something
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert onnx_model.predict([]).shape == (0,)


def test_onnx_int8_scores_within_tolerance_and_the_loader_prefers_it(tiny_model_dir, tmp_path):
    from trainer.reranker.onnx_backend import OnnxCrossEncoder, read_meta
    from trainer.text_models import backend_name, load_reranker

    model_dir, torch_model = _exported(tiny_model_dir, tmp_path, quantize=True)
    meta = read_meta(model_dir)
    assert meta["max_length"] == MAX_LENGTH and "int8" in meta["quantization"]
    served = load_reranker(model_dir, "auto", threads=1, max_length=256)  # the export's max length wins
    assert isinstance(served, OnnxCrossEncoder) and backend_name(served) == "onnx int8"
    assert served.max_length == MAX_LENGTH
    expected = torch_model.predict(PAIRS, batch_size=len(PAIRS), show_progress_bar=False)
    got = served.predict(PAIRS, batch_size=len(PAIRS))
    assert np.abs(got - expected).max() < 0.05
    assert np.corrcoef(got, expected)[0, 1] > 0.98
    forced = load_reranker(model_dir, "torch", max_length=256)
    assert backend_name(forced) == "torch fp32" and forced.max_seq_length == MAX_LENGTH


def test_the_loader_falls_back_to_torch_without_an_export(tiny_model_dir):
    from trainer.text_models import backend_name, load_reranker

    model = load_reranker(tiny_model_dir, "auto", max_length=MAX_LENGTH)
    assert backend_name(model) == "torch fp32"
    with pytest.raises(ArtifactError, match="no ONNX export"):
        load_reranker(tiny_model_dir, "onnx")
    with pytest.raises(ValueError, match="backend"):
        load_reranker(tiny_model_dir, "tensorrt")


class _HashEncoder:
    """A bi-encoder stand-in for the search index (its vectors do not matter here)."""

    def encode(self, texts, **_):
        rng = np.random.default_rng(0)
        v = rng.normal(size=(len(texts), 8)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("exported", [False, True])
def test_the_api_search_service_serves_the_export_else_torch(tiny_model_dir, tmp_path, exported):
    """``SearchService`` loads the promoted run's ONNX export when it has one, torch otherwise;
    ``/api/v1/reranking/info`` says which."""
    import shutil

    from inference.search import SearchService
    from schemas.settings import Settings
    from trainer.reranker import store
    from trainer.reranker.onnx_backend import export_onnx
    from trainer.text_index import build_text_index, new_index_dir, point_current, search_root
    from trainer.text_models import load_cross_encoder

    artifacts = tmp_path / "artifacts"
    index_dir = build_text_index({f"d{n}": t for n, t in enumerate(TEXTS)}, new_index_dir(artifacts), _HashEncoder())
    point_current(search_root(artifacts), index_dir)
    run = store.new_run_dir(artifacts)
    shutil.copytree(tiny_model_dir, run / "model")
    if exported:
        export_onnx(load_cross_encoder(run / "model", max_length=MAX_LENGTH), run / "model")
    (run / "info.json").write_text(json.dumps({"run_id": run.name, "model": "cross-encoder"}))
    (run / "COMPLETE").write_text("now")
    store.promote(artifacts, run)

    svc = SearchService(Settings(artifact_dir=artifacts, rerank_threads=1, rerank_max_length=MAX_LENGTH))
    svc._encoder = _HashEncoder()  # our own service's cache of the bi-encoder: no MiniLM load in a unit test
    svc.loaded = svc._load()
    assert svc.info()["backend"] == ("onnx int8" if exported else "torch fp32")
    ranked = [(f"d{n}", 1.0 - n / 10) for n in range(len(TEXTS))]
    out = SearchService.rerank_sync(svc.loaded, QUERY, ranked, top_n=4, weight=1.0)
    assert [r.reranker_score is not None for r in out] == [True] * 4 + [False] * (len(TEXTS) - 4)
    if not exported:  # `streamrec export-reranker` gives the serving run its export; the next reload serves it
        from typer.testing import CliRunner

        from infra.cli import app
        from schemas.settings import get_settings

        get_settings.cache_clear()
        try:
            got = CliRunner().invoke(app, ["export-reranker", "--no-reload", "--max-length", str(MAX_LENGTH)],
                                     env={"STREAMREC_ARTIFACT_DIR": str(artifacts)})
        finally:
            get_settings.cache_clear()
        assert got.exit_code == 0, got.output
        assert got.output.strip().splitlines()[-1].endswith("model.int8.onnx")
        svc.loaded = svc._load()
        assert svc.info()["backend"] == "onnx int8"


def test_a_base_cut_to_its_first_layers_saves_reloads_and_exports_as_the_smaller_model(tiny_model_dir, tmp_path):
    """``STREAMREC_RERANK_BASE_LAYERS``: the cut model keeps the first layers' weights, is saved
    with its new layer count, reloads as it, and its export scores like it."""
    import torch

    from trainer.reranker.base import encoder_layers, keep_first_layers
    from trainer.reranker.onnx_backend import export_onnx
    from trainer.text_models import load_cross_encoder, load_reranker

    whole = load_cross_encoder(tiny_model_dir, max_length=MAX_LENGTH)
    cut = keep_first_layers(load_cross_encoder(tiny_model_dir, max_length=MAX_LENGTH), 1)
    assert encoder_layers(whole) == 2 and encoder_layers(cut) == 1
    first = lambda m: m.model.base_model.encoder.layer[0].attention.self.query.weight  # noqa: E731
    assert torch.equal(first(cut), first(whole))
    assert keep_first_layers(whole, 0) is whole and encoder_layers(keep_first_layers(whole, 5)) == 2
    model_dir = tmp_path / "model"
    cut.save_pretrained(str(model_dir))
    reloaded = load_cross_encoder(model_dir, max_length=MAX_LENGTH)
    assert encoder_layers(reloaded) == 1
    want = cut.predict(PAIRS, batch_size=len(PAIRS), show_progress_bar=False)
    np.testing.assert_allclose(reloaded.predict(PAIRS, batch_size=len(PAIRS), show_progress_bar=False), want,
                               atol=1e-5)
    assert np.abs(want - whole.predict(PAIRS, batch_size=len(PAIRS), show_progress_bar=False)).max() > 1e-3
    export_onnx(cut, model_dir)
    served = load_reranker(model_dir, "onnx", threads=1)
    assert np.abs(served.predict(PAIRS, batch_size=len(PAIRS)) - want).max() < 0.05


@pytest.mark.parametrize(("setting", "run_weight", "served"), [(None, 0.3, 0.3), (None, None, 0.5), (1.0, 0.3, 1.0)])
def test_the_search_service_serves_the_runs_fusion_weight_unless_one_is_set(tiny_model_dir, tmp_path, setting,
                                                                            run_weight, served):
    import shutil

    from inference.search import SearchService
    from schemas.settings import Settings
    from trainer.reranker import store
    from trainer.text_index import build_text_index, new_index_dir, point_current, search_root

    artifacts = tmp_path / "artifacts"
    index_dir = build_text_index({f"d{n}": t for n, t in enumerate(TEXTS)}, new_index_dir(artifacts), _HashEncoder())
    point_current(search_root(artifacts), index_dir)
    run = store.new_run_dir(artifacts)
    shutil.copytree(tiny_model_dir, run / "model")
    info = {"run_id": run.name, "model": "cross-encoder"} | ({"rerank_weight": run_weight} if run_weight else {})
    (run / "info.json").write_text(json.dumps(info))
    (run / "COMPLETE").write_text("now")
    store.promote(artifacts, run)
    svc = SearchService(Settings(artifact_dir=artifacts, rerank_threads=1, rerank_max_length=MAX_LENGTH,
                                 rerank_weight=setting))
    svc._encoder = _HashEncoder()
    svc.loaded = svc._load()
    assert svc.loaded.rerank_weight == served
