"""What a run carries for basket complements: offline pairs, segment centroids, cover model.

The run-export step calls ``export_basket(run_dir, events, item_ids, item_embeddings)``:
``pairs.parquet`` (``trainer.pairs``), ``basket_segments.npz`` (one centroid per
segment: the purchase-weighted mean of its items' embeddings, which is what basket
segment detection compares a basket's embedding with) and ``basket_cover.npz`` (the
Bernoulli mixture of ``trainer.basket_cover`` that coverage-greedy assortment reads).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from trainer.basket_cover import fit_cover_model, save_cover_model
from trainer.pairs import mine_pairs, save_pairs

SEGMENTS_FILE = "basket_segments.npz"


def segment_centroids(
    events: pd.DataFrame, item_ids: Sequence[str], embeddings: np.ndarray, segment_col: str = "segment"
) -> dict[str, np.ndarray]:
    """Unit-norm, count-weighted mean embedding of the items each segment interacted with.

    >>> ev = pd.DataFrame({"item_id": ["a", "a", "b"], "segment": ["s", "s", "t"]})
    >>> c = segment_centroids(ev, ["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]))
    >>> {k: v.round(2).tolist() for k, v in c.items()}
    {'s': [1.0, 0.0], 't': [0.0, 1.0]}
    """
    if segment_col not in events or embeddings is None or len(item_ids) == 0:
        return {}
    index = pd.Index([str(i) for i in item_ids])
    ev = events[[segment_col, "item_id"]].dropna()
    ev = ev[ev[segment_col].astype(str) != ""]
    out: dict[str, np.ndarray] = {}
    for seg, g in ev.groupby(segment_col):
        counts = g["item_id"].astype(str).value_counts()
        pos = index.get_indexer(counts.index)
        keep = pos >= 0
        if not keep.any():
            continue
        v = (np.asarray(embeddings, dtype=np.float32)[pos[keep]] * counts.to_numpy()[keep, None]).sum(axis=0)
        n = float(np.linalg.norm(v))
        if n > 1e-12:
            out[str(seg)] = (v / n).astype(np.float32)
    return out


def save_segment_centroids(centroids: dict[str, np.ndarray], run_dir: Path, model: str | None = None) -> Path:
    """``model`` names the run model whose embeddings the centroids live in, so serving
    compares baskets in the same space."""
    path = Path(run_dir) / SEGMENTS_FILE
    names = sorted(centroids)
    vecs = np.stack([centroids[n] for n in names]) if names else np.zeros((0, 0), np.float32)
    np.savez(path, names=np.array(names, dtype=object).astype(str), vectors=vecs, model=np.array(model or ""))
    return path


def load_segment_centroids(run_dir: Path) -> dict[str, np.ndarray]:
    path = Path(run_dir) / SEGMENTS_FILE
    if not path.exists():
        return {}
    with np.load(path) as z:
        return {str(n): z["vectors"][i] for i, n in enumerate(z["names"])}


def segment_centroids_model(run_dir: Path) -> str | None:
    """The model the centroids were computed with, when the run recorded it."""
    path = Path(run_dir) / SEGMENTS_FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        return str(z["model"]) or None if "model" in z.files else None


def export_basket(
    run_dir: Path, events: pd.DataFrame, item_ids: Sequence[str], embeddings: np.ndarray | None,
    min_count: int = 1, top_k: int = 100, model: str | None = None, cover_components: int = 20,
) -> None:
    """Write the basket artefacts of a run. ``events`` needs ``basket_id`` and ``item_id``
    (``segment`` and ``timestamp`` when known); the centroids need item embeddings, and
    ``model`` names the run model they come from (serving then detects segments with it).
    ``cover_components`` 0 writes no cover model."""
    save_pairs(mine_pairs(events, min_count=min_count, top_k=top_k), run_dir)
    if cover_components > 0 and not events.empty:
        save_cover_model(fit_cover_model(events, n_components=cover_components), run_dir)
    if embeddings is not None:
        save_segment_centroids(segment_centroids(events, item_ids, embeddings), run_dir, model)
