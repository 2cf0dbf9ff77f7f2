"""The one score rescaler and the one blend.

Models score on different scales (an EASE score, a cosine, a logit); before they are mixed
each model's scores for a user are put on one scale, then added with the policy's weights.
The API (one user, the candidates of a request) and the offline evaluation (score matrices
of many users) call the same two functions, so a blend ranks the same items either way.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

RESCALERS = ("zscore", "minmax", "max")


def rescale(scores: np.ndarray, how: str = "zscore") -> np.ndarray:
    """Each row (or the one vector) on a common scale: ``zscore``, ``minmax`` or ``max``.

    ``max`` divides by the row's largest value, for scores that are counts or probabilities
    (zero stays zero, so an item a list does not name and one it names with 0 agree); a row
    whose largest value is not positive becomes 0.

    Non-finite entries (-inf for excluded items, NaN; also the padding of lists of unequal
    length) stay out of the statistics and become 0; a row whose finite values are all equal
    becomes 0 (``zscore``, ``minmax``).

    >>> [round(float(v), 3) for v in rescale(np.array([1.0, 2.0, 3.0]))]
    [-1.225, 0.0, 1.225]
    >>> rescale(np.array([[1.0, 3.0, -np.inf]]), "minmax").tolist()
    [[0.0, 1.0, 0.0]]
    >>> rescale(np.array([[4.0, 1.0, -np.inf], [0.0, 0.0, 0.0]]), "max").tolist()
    [[1.0, 0.25, 0.0], [0.0, 0.0, 0.0]]
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.copy()
    rows = s[None, :] if s.ndim == 1 else s
    finite = np.isfinite(rows)
    masked = np.where(finite, rows, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        if how == "zscore":
            mu = np.nanmean(np.where(finite.any(axis=1, keepdims=True), masked, 0.0), axis=1, keepdims=True)
            sd = np.nanstd(np.where(finite.any(axis=1, keepdims=True), masked, 0.0), axis=1, keepdims=True)
            out = (rows - mu) / np.where(sd > 0, sd, 1.0)
        elif how == "minmax":
            lo = np.nanmin(np.where(finite.any(axis=1, keepdims=True), masked, 0.0), axis=1, keepdims=True)
            hi = np.nanmax(np.where(finite.any(axis=1, keepdims=True), masked, 0.0), axis=1, keepdims=True)
            out = (rows - lo) / np.where(hi > lo, hi - lo, 1.0)
        elif how == "max":
            hi = np.nanmax(np.where(finite.any(axis=1, keepdims=True), masked, 0.0), axis=1, keepdims=True)
            out = np.where(hi > 0, rows / np.where(hi > 0, hi, 1.0), 0.0)
        else:
            raise ValueError(f"unknown rescaling {how!r}: use one of {', '.join(RESCALERS)}")
    out = np.where(finite, out, 0.0)
    return out[0] if s.ndim == 1 else out


def minmax(scores: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] (used where only the order within one list matters, e.g. MMR relevance).

    >>> minmax(np.array([1.0, 3.0, 2.0])).tolist()
    [0.0, 1.0, 0.5]
    """
    return rescale(scores, "minmax")


def blend(parts: Mapping[str, np.ndarray], weights: Mapping[str, float], how: str = "zscore") -> np.ndarray:
    """Weighted sum of rescaled score rows (all of one shape); parts without weight are skipped.

    >>> a, b = np.array([[3.0, 2.0, 1.0]]), np.array([[0.0, 0.5, 1.0]])
    >>> np.argsort(-blend({"a": a, "b": b}, {"a": 1.0, "b": 2.0})[0]).tolist()
    [2, 1, 0]
    >>> np.argsort(-blend({"a": a, "b": b}, {"a": 1.0})[0]).tolist()
    [0, 1, 2]
    """
    total: np.ndarray | None = None
    for name, scores in parts.items():
        w = float(weights.get(name, 0.0))
        if w == 0.0:
            continue
        part = w * rescale(scores, how)
        total = part if total is None else total + part
    if total is None:
        first = next(iter(parts.values()), np.zeros(0))
        return np.zeros(np.shape(first))
    return total
