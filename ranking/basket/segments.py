"""Which segments (professions) a basket looks like, when the request names none.

The basket's embedding (mean of its items' L2-normalised vectors) is compared by cosine to
each segment's centroid; the top-K similarities go through a softmax with a temperature,
and segments below a minimum mass are dropped (the rest renormalised).

>>> import numpy as np
>>> cents = {"plumber": np.array([1.0, 0.0]), "painter": np.array([0.0, 1.0])}
>>> detect_segments(np.array([0.9, 0.1]), cents, top_k=2, temperature=0.1, min_mass=0.05)
[('plumber', 1.0)]
>>> [(s, round(w, 2)) for s, w in detect_segments(np.array([1.0, 0.9]), cents, 2, 1.0, 0.05)]
[('plumber', 0.52), ('painter', 0.48)]
"""
from __future__ import annotations

from typing import Mapping

import numpy as np


def basket_vector(vectors: np.ndarray) -> np.ndarray | None:
    """Unit-norm mean of the basket items' vectors (rows); None when there are none."""
    if vectors is None or len(vectors) == 0:
        return None
    v = np.asarray(vectors, dtype=np.float32).mean(axis=0)
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-12 else None


def detect_segments(
    basket_vec: np.ndarray | None,
    centroids: Mapping[str, np.ndarray],
    top_k: int = 3,
    temperature: float = 0.1,
    min_mass: float = 0.1,
) -> list[tuple[str, float]]:
    """Segments and weights (summing to 1), heaviest first; empty when nothing to compare."""
    if basket_vec is None or not centroids or top_k <= 0:
        return []
    names = list(centroids)
    mat = np.stack([np.asarray(centroids[n], dtype=np.float32) for n in names])
    mat = mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)
    sims = mat @ (basket_vec / max(float(np.linalg.norm(basket_vec)), 1e-12))
    order = np.argsort(-sims, kind="stable")[:top_k]
    z = sims[order] / max(temperature, 1e-6)
    w = np.exp(z - z.max())
    w /= w.sum()
    keep = w >= min_mass
    if not keep.any():
        keep[0] = True
    w = w[keep] / w[keep].sum()
    return [(names[i], float(round(x, 6))) for i, x in zip(order[keep], w)]
