"""The reranker run's report: ``report.json``, ``report.txt`` and PNG plots in ``plots/``.

Plots (matplotlib, no display): label distribution, query lengths, before/after metrics,
score distributions before and after by label, the confusion matrix after.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ["accuracy", "precision", "recall", "f1", "auc_roc", "ndcg@10", "mrr"]
PLOTS = ["label_distribution.png", "query_lengths.png", "metrics_before_after.png", "score_distributions.png",
         "confusion_matrix.png"]


def _fmt(v) -> str:
    return "   n/a" if v is None else f"{v:.4f}"


def format_report(report: dict) -> str:
    """The text report: data, the comparison table and the decision."""
    d = report["data"]
    lines = [f"reranker run {report['run_id']}  (from {report['start_from']})",
             f"feedback pairs: {d['pairs']} ({d['positive']} like, {d['negative']} dislike), "
             f"queries: {d['queries']}; train {d['train_pairs']} pairs / validation {d['val_pairs']} pairs "
             f"({d['val_queries']} queries, {report['after'].get('lists', 0)} lists with a like)",
             f"fine-tuning: {report['params']}  on {report['device']}, {report['train_seconds']:.1f} s", "",
             f"{'metric':<10} " + " ".join(f"{c:>12}" for c in report["columns"])]
    for m in METRICS:
        lines.append(f"{m:<10} " + " ".join(f"{_fmt(report[c].get(m)):>12}" for c in report["columns"]))
    b = report.get("backend") or {}
    if b:
        line = f"evaluated as served: {b.get('served')}, max length {b.get('max_length')}"
        if b.get("torch_fp32"):
            fp32 = b["torch_fp32"]
            line += (f"; the same weights in torch fp32: ndcg@10 {_fmt(fp32.get('ndcg@10'))}, auc_roc "
                     f"{_fmt(fp32.get('auc_roc'))}, max |score diff| {b.get('max_abs_score_diff', 0):.4f}")
        lines += ["", line]
    if report.get("rerank_weight") is not None:
        tried = {w: v for w, v in (report.get("rerank_weight_validation") or {}).items() if v is not None}
        lines.append(f"fused with the first stage at weight {report['rerank_weight']}"
                     + (" (chosen on these validation lists; ndcg@10 by weight: "
                        + ", ".join(f"{w} {v:.4f}" for w, v in tried.items()) + ")" if tried else " (fixed)"))
        if report["after"].get("ndcg@10_cross_fitted") is not None:
            lines.append(f"ndcg@10 with the weight chosen on the other half of the lists (what promotion judges): "
                         f"{report['after']['ndcg@10_cross_fitted']:.4f}")
    lines += ["", report["decision"]]
    for w in report.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, report: dict) -> None:
    run_dir = Path(run_dir)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    (run_dir / "report.txt").write_text(format_report(report))


def write_plots(run_dir: Path, pairs: pd.DataFrame, val: pd.DataFrame, before: np.ndarray, after: np.ndarray,
                report: dict) -> list[str]:
    """The five PNG files; returns their names (none when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out = Path(run_dir) / "plots"
    out.mkdir(parents=True, exist_ok=True)

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=80)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 3))
    counts = [int((pairs["label"] <= 0.5).sum()), int((pairs["label"] > 0.5).sum())]
    ax.bar(["dislike (0)", "like (1)"], counts, color=["#c44", "#4a4"])
    ax.set_title("label distribution")
    save(fig, PLOTS[0])

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.hist(pairs["query"].astype(str).str.split().str.len(), bins=20, color="#47a")
    ax.set_xlabel("words per query")
    ax.set_title("query lengths")
    save(fig, PLOTS[1])

    fig, ax = plt.subplots(figsize=(7, 3.5))
    cols = report["columns"]
    x = np.arange(len(METRICS))
    width = 0.8 / len(cols)
    for n, c in enumerate(cols):
        ax.bar(x + n * width, [report[c].get(m) or 0.0 for m in METRICS], width, label=c)
    ax.set_xticks(x + width * (len(cols) - 1) / 2, METRICS, rotation=20)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("validation: before / after")
    save(fig, PLOTS[2])

    fig, axes = plt.subplots(1, 2, figsize=(7, 3), sharey=True)
    y = val["label"].to_numpy() > 0.5
    for ax, scores, name in ((axes[0], before, "before"), (axes[1], after, "after")):
        ax.hist(scores[y], bins=20, range=(0, 1), alpha=0.6, label="like", color="#4a4")
        ax.hist(scores[~y], bins=20, range=(0, 1), alpha=0.6, label="dislike", color="#c44")
        ax.set_title(f"scores {name}")
        ax.legend(fontsize=7)
    save(fig, PLOTS[3])

    fig, ax = plt.subplots(figsize=(3.5, 3))
    cm = np.asarray(report["after"]["confusion"])
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set_xticks([0, 1], ["pred 0", "pred 1"])
    ax.set_yticks([0, 1], ["dislike", "like"])
    ax.set_title("confusion (after)")
    save(fig, PLOTS[4])
    return list(PLOTS)
