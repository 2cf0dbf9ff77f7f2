"""What a run carries for basket complements: offline pairs, segment centroids, cover model.

The run-export step calls ``export_basket(run_dir, events, item_ids, item_embeddings)``:
``pairs.parquet`` (``trainer.pairs``), ``basket_segments.npz`` (one centroid per
segment: the purchase-weighted mean of its items' embeddings, which is what basket
segment detection compares a basket's embedding with), ``basket_cover.npz`` (the
Bernoulli mixture of ``trainer.basket_cover`` that coverage-greedy assortment reads) and the
tuned policy: ``basket_policy.json`` (``trainer.basket_tuning``, served by default) with
``basket_index.npz`` (the training baskets its conditional cover and pair normalisation read).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import json
import logging

import numpy as np
import pandas as pd

from ranking.basket.cocover import BasketIndex
from trainer.basket_cover import fit_cover_model, save_cover_model
from trainer.pairs import mine_pairs, save_pairs

SEGMENTS_FILE = "basket_segments.npz"
POLICY_FILE = "basket_policy.json"  # the tuned basket policy and how it was chosen
INDEX_FILE = "basket_index.npz"  # the training baskets (conditional cover, item counts)


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


log = logging.getLogger(__name__)


def baskets_of(events: pd.DataFrame) -> list:
    """``trainer.data.baskets.Basket``s of an events frame (``basket_id``, ``item_id``, maybe
    ``segment`` and ``timestamp``), in order of first appearance."""
    from trainer.data.baskets import Basket

    ev = events.dropna(subset=["basket_id", "item_id"])
    if ev.empty:
        return []
    ev = ev.assign(basket_id=ev["basket_id"].astype(str), item_id=ev["item_id"].astype(str))
    g = ev.groupby("basket_id", sort=False)
    items = g["item_id"].agg(lambda s: list(dict.fromkeys(s)))
    seg = g["segment"].first() if "segment" in ev else None
    ts = None
    if "timestamp" in ev:  # epoch seconds (the trainer's events) or datetimes / ISO text
        raw = ev["timestamp"]
        if pd.api.types.is_numeric_dtype(raw):
            secs = raw.astype("float64")
        else:
            t = pd.to_datetime(raw, utc=True, errors="coerce")
            secs = (t.astype("int64") / 1e9).where(t.notna())
        ts = secs.groupby(ev["basket_id"], sort=False).max()
    out = []
    for bid, its in items.items():
        s = seg.get(bid) if seg is not None else None
        s = str(s) if s is not None and not pd.isna(s) and str(s) else None
        t = ts.get(bid) if ts is not None else None
        out.append(Basket(bid, its, segment=s, ts=float(t) if t is not None and not pd.isna(t) else None))
    return out


def save_index(index: BasketIndex, run_dir: Path) -> Path:
    path = Path(run_dir) / INDEX_FILE
    np.savez(path, items=np.array(index.items, dtype=str), basket_ptr=index.basket_ptr,
             basket_items=index.basket_items)
    return path


def load_index(run_dir: Path) -> BasketIndex | None:
    """The run's training baskets, or None when the run has none."""
    path = Path(run_dir) / INDEX_FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        return BasketIndex([str(i) for i in z["items"]], z["basket_ptr"], z["basket_items"])


def load_policy(run_dir: Path) -> dict | None:
    """The run's tuned basket policy (``{"profile": ..., "tuning": ...}``), or None."""
    path = Path(run_dir) / POLICY_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())


def tune_and_save(run_dir: Path, events: pd.DataFrame, seed: int = 0, n_val: int | None = None) -> dict | None:
    """Tune the basket policy on the run's baskets (``trainer.basket_tuning``) and write it
    with the baskets it reads (``basket_policy.json``, ``basket_index.npz``); None (nothing
    written) when there are too few baskets to tune on."""
    from trainer.basket_signals import learn_stats
    from trainer.basket_tuning import tune_policy

    baskets = baskets_of(events)
    if sum(1 for b in baskets if len(b.items) >= 2) < 40:
        log.info("basket policy not tuned: fewer than 40 baskets of 2+ items")
        return None
    mode = "use_order" if any(b.segment for b in baskets) else "none"
    res = tune_policy(baskets, {}, mode, n_val=n_val, seed=seed)
    save_index(learn_stats(baskets, top_k=1).index, run_dir)
    doc = {"profile": res.profile(), "tuning": {**res.summary(), "segment_mode": mode}}
    (Path(run_dir) / POLICY_FILE).write_text(json.dumps(doc, indent=2))
    return doc


def export_basket(
    run_dir: Path, events: pd.DataFrame, item_ids: Sequence[str], embeddings: np.ndarray | None,
    min_count: int = 1, top_k: int = 100, model: str | None = None, cover_components: int = 20,
    tune: bool = True,
) -> None:
    """Write the basket artefacts of a run. ``events`` needs ``basket_id`` and ``item_id``
    (``segment`` and ``timestamp`` when known); the centroids need item embeddings, and
    ``model`` names the run model they come from (serving then detects segments with it).
    ``cover_components`` 0 writes no cover model; ``tune`` tunes the basket policy on these
    baskets and stores it in the run (``tune_and_save``), which the API then serves."""
    save_pairs(mine_pairs(events, min_count=min_count, top_k=top_k), run_dir)
    if cover_components > 0 and not events.empty:
        save_cover_model(fit_cover_model(events, n_components=cover_components), run_dir)
    if embeddings is not None:
        save_segment_centroids(segment_centroids(events, item_ids, embeddings), run_dir, model)
    if tune and not events.empty:
        tune_and_save(run_dir, events)
