"""Fit, save and load the coverage model of basket complements (``ranking.basket.cover``).

A mixture of independent Bernoullis over baskets, fitted by EM on a sparse basket × item
matrix (items limited to the ``max_items`` most frequent so the run file stays small), with
additive smoothing of θ towards each item's overall frequency (rare items do not get 0/1
probabilities from a handful of baskets) and several restarts averaged into one mixture (each
restart weighted 1/R: a mixture of mixtures, which is steadier than any one EM solution).

>>> import pandas as pd
>>> ev = pd.DataFrame({"basket_id": ["b1", "b1", "b2", "b2", "b3", "b3"] * 5,
...                    "item_id": ["milk", "veg", "milk", "veg", "beer", "chips"] * 5})
>>> m = fit_cover_model(ev, n_components=2, restarts=1, seed=0)
>>> m.theta.shape, sorted(m.index)
((2, 4), ['beer', 'chips', 'milk', 'veg'])
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ranking.basket.cover import CoverModel

COVER_FILE = "basket_cover.npz"


def _em(x: sp.csr_matrix, freq: np.ndarray, z: int, iters: int, smooth: float, rng: np.random.Generator
        ) -> tuple[np.ndarray, np.ndarray]:
    n = x.shape[0]
    resp = rng.dirichlet(np.ones(z), size=n)
    for _ in range(iters):
        nz = resp.sum(axis=0)
        weights = (nz + 1.0) / (n + z)
        theta = np.clip((np.asarray(x.T @ resp).T + smooth * freq) / (nz[:, None] + smooth), 1e-6, 1 - 1e-6)
        log1m = np.log1p(-theta)
        # log P(basket | z) = Σ_j x log θ + (1 − x) log(1 − θ), without densifying x
        ll = np.asarray(x @ (np.log(theta) - log1m).T) + log1m.sum(axis=1) + np.log(weights)
        ll -= ll.max(axis=1, keepdims=True)
        resp = np.exp(ll)
        resp /= resp.sum(axis=1, keepdims=True)
    return weights, theta


def fit_cover_model(
    events: pd.DataFrame, n_components: int = 20, restarts: int = 3, iters: int = 60, smooth: float = 1.0,
    max_items: int = 5000, seed: int = 0, basket_col: str = "basket_id",
) -> CoverModel:
    """EM fit on the baskets of ``events`` (``basket_id``, ``item_id``); raise ``ValueError``
    when there are no baskets."""
    if basket_col not in events or events.empty:
        raise ValueError("cover model: no baskets to fit")
    ev = events[[basket_col, "item_id"]].dropna().astype(str).drop_duplicates()
    top = ev["item_id"].value_counts().sort_index().sort_values(ascending=False, kind="stable").head(max_items)
    items = sorted(top.index)
    ev = ev[ev["item_id"].isin(set(items))]
    baskets = pd.Index(sorted(ev[basket_col].unique()))
    index = {it: n for n, it in enumerate(items)}
    rows = baskets.get_indexer(ev[basket_col])
    cols = ev["item_id"].map(index).to_numpy()
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(baskets), len(items)))
    freq = np.asarray(x.sum(axis=0)).ravel() / max(len(baskets), 1)
    rng = np.random.default_rng(seed)
    fits = [_em(x, freq, n_components, iters, smooth, rng) for _ in range(max(restarts, 1))]
    weights = np.concatenate([w / len(fits) for w, _ in fits])
    theta = np.vstack([t for _, t in fits])
    return CoverModel(index, weights, theta)


def save_cover_model(model: CoverModel, run_dir: Path) -> Path:
    path = Path(run_dir) / COVER_FILE
    items = sorted(model.index, key=model.index.get)
    np.savez(path, items=np.array(items, dtype=object).astype(str), weights=model.weights,
             theta=model.theta.astype(np.float32))
    return path


def load_cover_model(run_dir: Path) -> CoverModel | None:
    """The run's cover model, or None when the run has none."""
    path = Path(run_dir) / COVER_FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        return CoverModel({str(i): n for n, i in enumerate(z["items"])}, z["weights"], z["theta"])
