"""Warm starts: a model fitted on new data starting from an earlier fit of the same model.

Two callers: the refit of a run (the validation fit is the start, the data a superset in the
same index space) and ``streamrec train --incremental`` (the serving run's model is the start,
the data the snapshot with the events since; users and items may be new). Rows of id-indexed
weights are carried over by id (``carry_rows``); a new user or item gets a freshly initialised
row. A model without ``_fit_warm`` is fitted from scratch (the item-item models: their closed
form or neighbour search is cheaper than any warm start).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trainer.base import Recommender
from trainer.data.interactions import Interactions


def index_map(old_ids: np.ndarray, new_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new positions, old positions) of the ids both hold.

    >>> new, old = index_map(np.array(["a", "b"]), np.array(["b", "c", "a"]))
    >>> new.tolist(), old.tolist()
    ([0, 2], [1, 0])
    """
    old = pd.Index(np.asarray(old_ids).astype(str)).get_indexer(np.asarray(new_ids).astype(str))
    new = np.flatnonzero(old >= 0)
    return new, old[new]


def carry_rows(fresh, previous, new_pos: np.ndarray, old_pos: np.ndarray, dim: int = 0) -> None:
    """Copy ``previous``'s rows (``dim`` 0) or columns (``dim`` 1) at ``old_pos`` into ``fresh`` at
    ``new_pos`` (torch tensors, in place, no gradient)."""
    import torch

    with torch.no_grad():
        idx_new, idx_old = torch.as_tensor(new_pos), torch.as_tensor(old_pos)
        fresh.index_copy_(dim, idx_new, previous.index_select(dim, idx_old).to(fresh.dtype))


def can_warm_start(model: Recommender, previous: Any) -> bool:
    return (previous is not None and type(previous) is type(model) and hasattr(model, "_fit_warm")
            and getattr(previous, "data", None) is not None)


def warm_fit(model: Recommender, data: Interactions, previous: Recommender | None) -> Recommender:
    """``model`` fitted on ``data``, from ``previous`` where the model can start warm."""
    if not can_warm_start(model, previous):
        return model.fit(data)
    model.data = data
    model._fit_warm(data, previous)  # noqa: SLF001 - the warm-start half of the model's own contract
    return model
