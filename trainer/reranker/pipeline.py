"""``streamrec train-reranker`` end to end: pairs, split, fine-tuning, before/after
evaluation, report, and promotion when the new reranker wins.

The decision: on the validation lists, the new reranker's NDCG@10 must beat that of the
serving reranker (or, with none serving, the first stage's order) by more than
``Settings.reranker_min_delta``. Validation sets without a single liked item in a list have
no NDCG; AUC-ROC decides then (against the serving reranker's, or 0.5).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from schemas.errors import ArtifactError
from schemas.settings import Settings
from trainer.reranker import store
from ranking.rerank import DEFAULT_RERANK_WEIGHT, fusion_weight
from trainer.reranker.base import encoder_layers, keep_first_layers
from trainer.reranker.catalogue import MIN_ITEMS, pretrain_on_catalogue
from trainer.reranker.evaluate import choose_weight, cross_fitted_ndcg, evaluate_scores, predict, ranking_metrics
from trainer.reranker.finetune import FineTuneParams, fine_tune
from trainer.reranker.onnx_backend import export_onnx
from trainer.reranker.pairs import EXPLICIT, balance_warning, build_pairs, check_enough, split_by_query
from trainer.reranker.report import write_plots, write_report
from trainer.text_models import BASE_NAME, backend_name, load_cross_encoder, load_reranker

log = logging.getLogger(__name__)

PRIMARY = "ndcg@10"


@dataclass
class RerankerResult:
    run_dir: Path
    report: dict
    promoted: bool
    warnings: list[str] = field(default_factory=list)


def _decide(after: dict, baseline: dict, baseline_name: str, min_delta: float) -> tuple[bool, str]:
    metric = PRIMARY if after.get(PRIMARY) is not None and baseline.get(PRIMARY) is not None else "auc_roc"
    new = after.get(metric)
    old = baseline.get(metric)
    if old is None and metric == "auc_roc":
        old = 0.5  # the first stage does not classify: a coin
    if new is None:
        return False, f"not promoted: the validation set gives no {metric} for the new reranker"
    if new > old + min_delta:
        return True, f"promoted: {metric} {new:.4f} beats {baseline_name} {old:.4f}"
    return False, f"not promoted: {metric} {new:.4f} does not beat {baseline_name} {old:.4f} (+{min_delta})"


def train_reranker(settings: Settings, events: pd.DataFrame, texts: Mapping[str, str], *,
                   allow_small: bool = False, implicit: bool = False, params: FineTuneParams = FineTuneParams(),
                   start_from: str = "base", device: str = "auto", progress: bool = True, promote: bool = True,
                   val_ratio: float = 0.2, say: Callable[[str], None] = log.info) -> RerankerResult:
    """Train, evaluate and (maybe) promote a reranker from ``events`` and item ``texts``."""
    from trainer.device import pick_device

    warnings: list[str] = []
    pairs = build_pairs(events, texts, implicit=implicit)
    explicit = pairs[pairs["kind"].isin(EXPLICIT)] if len(pairs) else pairs
    minimum = settings.reranker_min_feedback_small if allow_small else settings.reranker_min_feedback
    check_enough(explicit, minimum)
    w = balance_warning(pairs)
    if w:
        warnings.append(w)
        say(f"warning: {w}")
    train, val = split_by_query(pairs, val_ratio, seed=params.seed)
    say(f"{len(pairs)} pairs over {pairs['query'].nunique()} queries: {len(train)} to train, {len(val)} to validate")

    if settings.train_threads:
        import torch

        torch.set_num_threads(settings.train_threads)
    dev = str(pick_device(device))
    serving_dir = store.current_reranker(settings.artifact_dir)
    if start_from == "base":
        start_dir, start_name = None, BASE_NAME
    elif start_from == "current":
        if serving_dir is None:
            raise ArtifactError("--from current: no reranker is promoted yet; start from the base instead")
        start_dir, start_name = serving_dir / "model", f"reranker {serving_dir.name}"
    else:
        start_dir, start_name = Path(start_from) / "model", f"reranker {Path(start_from).name}"
    max_len = settings.rerank_max_length
    model = load_cross_encoder(start_dir, settings.hf_offline, dev, max_len)
    if start_dir is None and settings.rerank_base_layers:
        # a smaller cross-encoder: the base's first N layers (trainer/reranker/base.py); the run keeps the cut
        keep_first_layers(model, settings.rerank_base_layers)
        start_name = f"{start_name}, first {encoder_layers(model)} layers"
    before = predict(model, val)
    pretrain = None
    if start_dir is None and settings.rerank_pretrain_items:
        # the base has never scored a pair: it learns the task on the catalogue's titles and bodies first
        # (trainer/reranker/catalogue.py); a run that continues a reranker has learnt it already
        pretrain = pretrain_on_catalogue(model, texts, settings.rerank_pretrain_items, settings.rerank_pretrain_epochs,
                                         seed=params.seed, device=dev, progress=progress)
        if pretrain is None:
            say(f"no catalogue pre-training: fewer than {MIN_ITEMS} item texts are shaped 'title. body'")
        else:
            start_name = f"{start_name}, pre-trained on {pretrain['items']} catalogue titles"
            say(f"pre-trained on {pretrain['pairs']} pairs of {pretrain['items']} catalogue titles in "
                f"{pretrain['seconds']:.0f} s")
    serving_scores = None
    if serving_dir is not None:  # scored as the API serves it (its ONNX export when it has one)
        serving_scores = predict(_served(settings, serving_dir / "model"), val)
        serving_weight = fusion_weight(settings.rerank_weight, store.read_info(serving_dir))

    t0 = time.perf_counter()
    fine_tune(model, train, params, device=dev, progress=progress)
    train_seconds = time.perf_counter() - t0

    run_dir = store.new_run_dir(settings.artifact_dir)
    run_dir.mkdir(parents=True)
    model.save_pretrained(str(run_dir / "model"))
    export = _export(model, run_dir / "model", settings, warnings, say)
    # what is served is what is evaluated: the new reranker's scores come from the backend the API will load
    served = _served(settings, run_dir / "model")
    after = predict(served, val)
    backend = {"served": backend_name(served), "max_length": getattr(served, "max_length", max_len), **export}
    # the reranker's weight in its fusion with the first stage: fixed by STREAMREC_RERANK_WEIGHT, else the one that
    # does best on these validation lists (the run records it and the API serves it). The best of 11 weights on the
    # lists that also decide promotion flatters the reranker, so the gate takes the cross-fitted NDCG instead (each
    # half of the lists at the weight the other half chose; evaluate.cross_fitted_ndcg)
    gate_ndcg = None
    if settings.rerank_weight is not None:
        wt, weight_table = settings.rerank_weight, {}
    else:
        wt, weight_table = choose_weight(val, after, prefer=DEFAULT_RERANK_WEIGHT)
        gate_ndcg = cross_fitted_ndcg(val, after, prefer=DEFAULT_RERANK_WEIGHT, seed=params.seed)
        say(f"fusion weight {wt} (NDCG@10 on validation: "
            + ", ".join(f"{w}: {v:.4f}" for w, v in weight_table.items() if v is not None) + ")")
    if backend["served"] != "torch fp32":
        fp32 = predict(model, val)  # the same weights in torch fp32: what the int8 export costs
        backend["torch_fp32"] = evaluate_scores(val, fp32, weight=wt)
        backend["max_abs_score_diff"] = float(abs(fp32 - after).max()) if len(after) else 0.0

    # the lists are reordered as serving reorders them, each reranker at the weight it serves with
    columns = {"first_stage": ranking_metrics(val, None), "before": evaluate_scores(val, before, weight=wt)}
    if serving_scores is not None:
        columns["serving"] = evaluate_scores(val, serving_scores, weight=serving_weight)
    columns["after"] = evaluate_scores(val, after, weight=wt)
    baseline_name = "the serving reranker" if serving_scores is not None else "the first stage"
    baseline = columns["serving"] if serving_scores is not None else columns["first_stage"]
    judged = columns["after"]
    if gate_ndcg is not None:
        columns["after"]["ndcg@10_cross_fitted"] = gate_ndcg
        judged = {**columns["after"], PRIMARY: gate_ndcg}
    decision, reason = _decide(judged, baseline, baseline_name, settings.reranker_min_delta)
    if gate_ndcg is not None:
        reason += " (the new reranker's ndcg@10 cross-fitted: each half of the validation lists at the weight chosen " \
                  "on the other half)"
    if not promote:
        reason = reason.replace("promoted:", "would be promoted (--no-promote):") if decision else reason
        decision = False

    split = pd.concat([train.assign(split="train"), val.assign(split="val")], ignore_index=True)
    split.to_parquet(run_dir / "pairs.parquet", index=False)
    trained_at = datetime.now(timezone.utc).isoformat()
    report = {
        "run_id": run_dir.name, "start_from": start_name, "device": dev, "params": params.to_dict(), "rerank_weight": wt,
        "rerank_weight_validation": {str(w): v for w, v in weight_table.items()},
        "layers": encoder_layers(model), "pretrain": pretrain,
        "train_seconds": train_seconds, "trained_at": trained_at, "backend": backend, "columns": list(columns),
        **columns,
        "data": {"pairs": len(pairs), "feedbacks": len(explicit), "positive": int((pairs["label"] > 0.5).sum()),
                 "negative": int((pairs["label"] <= 0.5).sum()), "queries": int(pairs["query"].nunique()),
                 "train_pairs": len(train), "val_pairs": len(val), "val_queries": int(val["query"].nunique()),
                 "implicit": implicit},
        "baseline": baseline_name, "decision": reason, "promoted": decision, "warnings": warnings,
        "serving_before": serving_dir.name if serving_dir else None,
    }
    write_report(run_dir, report)
    report["plots"] = write_plots(run_dir, pairs, val, before, after, report)
    info = {"run_id": run_dir.name, "model": "cross-encoder", "base": BASE_NAME, "started_from": start_name,
            "feedbacks": len(explicit), "pairs": len(pairs), "metrics": columns["after"],
            "first_stage": columns["first_stage"], "trained_at": trained_at, "promoted": False,
            "params": params.to_dict(), "backend": backend["served"], "max_length": backend["max_length"],
            "rerank_weight": wt, "layers": encoder_layers(model), "pretrain": pretrain}
    (run_dir / "info.json").write_text(json.dumps(info, indent=2, default=float))
    (run_dir / "COMPLETE").write_text(trained_at)
    if decision:
        store.promote(settings.artifact_dir, run_dir)
        store.mark_promoted(run_dir, True)
    say(reason)
    return RerankerResult(run_dir, report, decision, warnings)


def _served(settings: Settings, model_dir: Path):
    return load_reranker(model_dir, settings.rerank_backend, settings.rerank_threads, settings.rerank_max_length,
                         settings.hf_offline)


def _export(model, model_dir: Path, settings: Settings, warnings: list[str], say: Callable[[str], None]) -> dict:
    """The int8 ONNX export beside the torch weights (none when the torch backend is forced).
    A failed export costs the run its fast backend, not the training: it serves with torch."""
    if settings.rerank_backend == "torch":
        return {"onnx": None}
    t0 = time.perf_counter()
    try:
        path = export_onnx(model, model_dir)
    except (RuntimeError, ValueError, OSError, ImportError) as exc:
        if settings.rerank_backend == "onnx":
            raise ArtifactError(f"the reranker's ONNX export failed ({exc}); STREAMREC_RERANK_BACKEND=onnx needs it")
        msg = f"ONNX export failed ({exc}): this run serves with torch fp32"
        warnings.append(msg)
        say(f"warning: {msg}")
        return {"onnx": None}
    return {"onnx": str(path.relative_to(model_dir.parent)), "export_seconds": time.perf_counter() - t0}


def events_and_texts(settings: Settings, events_file: Path | None = None, items_file: Path | None = None,
                     do_replay: bool = True, progress: bool = False,
                     say: Callable[[str], None] = log.info) -> tuple[pd.DataFrame, dict[str, str]]:
    """The feedback events (a JSON-lines file, or the snapshot after a replay) and the
    items' texts (``items_file``, else the snapshot's catalog, else the serving search index)."""
    from trainer.data.snapshot import Snapshot
    from trainer.data.sources import ITEM_FIELDS, read_meta
    from trainer.reranker.pairs import read_events
    from trainer.text_index import current_index, load_text_index, texts_from_meta

    snap = Snapshot(settings.snapshot_path())
    if events_file is not None:
        events = read_events(events_file)
    else:
        if do_replay and settings.kafka_bootstrap:
            from trainer.replay import replay

            say(replay(settings, progress=progress).describe())
        if not snap.exists():
            from schemas.errors import InvalidDataset

            raise InvalidDataset(f"no feedback events: no snapshot at {snap.path}; replay the topics "
                                 f"(`streamrec replay`) or pass --events FILE")
        events = snap.frame()
    texts: dict[str, str] = {}
    index_dir = current_index(settings.artifact_dir)
    if index_dir is not None:
        idx = load_text_index(index_dir)
        texts.update(zip(idx.item_ids, idx.texts))
    if items_file is not None:
        texts.update(texts_from_meta(read_meta(items_file, "item_id", ITEM_FIELDS)))
    elif snap.meta("catalog").exists():
        texts.update(texts_from_meta(snap.meta("catalog").meta_frame()))
    return events, texts


__all__ = ["train_reranker", "events_and_texts", "RerankerResult", "FineTuneParams"]
