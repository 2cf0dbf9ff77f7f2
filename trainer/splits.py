"""Train/test splits of an event frame (columns ``user_id, item_id, timestamp, ...``).

Every split is per user, so each user with enough events lands in every part:

- ``random_split``: per-user random split by ratio (75/25 by default), the way Microsoft
  Recommenders' ``python_stratified_split`` does it, so figures are comparable with its
  published benchmark;
- ``train_val_test_split``: the same with three parts (72/8/20 by default);
- ``leave_last_out``: each user's latest event is the test set (users with one event stay
  in train).

Splits return plain frames; build ``Interactions`` from the train part and evaluate on the
others with ``trainer.evaluation``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def _cut_points(n: int, ratios: list[float]) -> list[int]:
    """Where a group of ``n`` rows is cut for ``ratios`` (Python rounding, as MS Recommenders).

    >>> _cut_points(10, [0.75, 0.25])
    [8]
    >>> _cut_points(100, [0.72, 0.08, 0.2])
    [72, 80]
    """
    return [round(x * n) for x in np.cumsum(ratios).tolist()[:-1]]


def stratified_split(
    events: pd.DataFrame, ratios: list[float], seed: int = 42, temporal: bool = False
) -> list[pd.DataFrame]:
    """Split every user's events into ``len(ratios)`` parts by ratio.

    Random (shuffled with ``seed``) by default; ``temporal=True`` keeps time order, so the
    last part holds each user's latest events.
    """
    if not np.isclose(sum(ratios), 1.0):
        raise ValueError(f"split ratios must sum to 1, got {ratios}")
    if events.empty:
        return [events.copy() for _ in ratios]
    frame = events.reset_index(drop=True)
    if temporal:
        frame = frame.sort_values(["user_id", "timestamp"], kind="stable")
    # Vectorised over users (a loop over 200k users' groups took minutes): a group's rows in
    # frame order, shuffled as ``group.sample(frac=1, random_state=seed)`` shuffles them (a fresh
    # RandomState(seed) per group, so every group of ``n`` rows gets the same permutation of n).
    groups = frame.groupby("user_id", sort=False, dropna=False)
    position = groups.cumcount().to_numpy()
    size = groups["user_id"].transform("size").to_numpy() if len(frame) else np.zeros(0, dtype=np.int64)
    labels = np.zeros(len(frame), dtype=np.int8)
    by_size = np.argsort(size, kind="stable")
    sizes, starts = np.unique(size[by_size], return_index=True)
    for n, rows in zip(sizes.tolist(), np.split(by_size, starts[1:])):
        where = position[rows]
        if not temporal:  # where row p of the group lands once shuffled
            where = np.argsort(np.random.RandomState(seed).choice(n, size=n, replace=False))[where]
        for cut in _cut_points(n, ratios):
            labels[rows] += (where >= cut).astype(np.int8)
    part = np.empty(len(events), dtype=np.int8)
    part[frame.index.to_numpy()] = labels
    base = events.reset_index(drop=True)
    return [base[part == p].reset_index(drop=True) for p in range(len(ratios))]


def random_split(events: pd.DataFrame, ratio: float = 0.75, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random ``ratio`` / ``1 - ratio`` split (train, test)."""
    train, test = stratified_split(events, [ratio, 1.0 - ratio], seed=seed)
    return train, test


def train_val_test_split(
    events: pd.DataFrame, ratios: tuple[float, float, float] = (0.72, 0.08, 0.20), seed: int = 42,
    temporal: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-user train / validation / test split (72/8/20 by default)."""
    train, val, test = stratified_split(events, list(ratios), seed=seed, temporal=temporal)
    return train, val, test


def leave_last_out(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's latest event (by ``timestamp``, ties by row order) is the test set.

    >>> ev = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"], "timestamp": [1, 2, 1]})
    >>> train, test = leave_last_out(ev)
    >>> test[["user_id", "item_id"]].values.tolist(), len(train)
    ([['a', 'y']], 2)
    """
    frame = events.reset_index(drop=True)
    order = frame.sort_values(["user_id", "timestamp"], kind="stable")
    counts = order.groupby("user_id")["item_id"].transform("size")
    last = order.groupby("user_id").cumcount(ascending=False) == 0
    is_test = pd.Series(False, index=frame.index)
    is_test.loc[order.index[(last & (counts > 1)).to_numpy()]] = True
    return frame[~is_test].reset_index(drop=True), frame[is_test].reset_index(drop=True)
