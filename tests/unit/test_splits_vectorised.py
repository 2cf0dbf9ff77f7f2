"""The vectorised per-user split is the one MS Recommenders' python_stratified_split makes:
each user's rows shuffled by ``group.sample(frac=1, random_state=seed)`` and cut by ratio."""
import numpy as np
import pandas as pd
import pytest

from trainer.splits import _cut_points, stratified_split


def reference(events, ratios, seed, temporal):
    frame = events.reset_index(drop=True)
    if temporal:
        frame = frame.sort_values(["user_id", "timestamp"], kind="stable")
    part = np.empty(len(frame), dtype=np.int8)
    for _, group in frame.groupby("user_id", sort=False):
        rows = group if temporal else group.sample(frac=1, random_state=seed)
        labels = np.zeros(len(rows), dtype=np.int8)
        for cut in _cut_points(len(rows), ratios):
            labels[cut:] += 1
        part[rows.index.to_numpy()] = labels
    base = events.reset_index(drop=True)
    return [base[part == p].reset_index(drop=True) for p in range(len(ratios))]


@pytest.mark.parametrize("ratios,temporal", [([0.75, 0.25], False), ([0.72, 0.08, 0.2], False),
                                             ([0.72, 0.08, 0.2], True)])
def test_same_parts_as_the_group_by_group_split(ratios, temporal):
    rng = np.random.default_rng(0)
    n = 2000
    events = pd.DataFrame({"user_id": rng.choice([f"u{i}" for i in range(60)], n), "item_id": rng.integers(0, 300, n),
                           "timestamp": rng.integers(0, 50, n)}, index=rng.permutation(n) + 10)
    got = stratified_split(events, ratios, seed=42, temporal=temporal)
    want = reference(events, ratios, 42, temporal)
    assert all(a.equals(b) for a, b in zip(got, want))
