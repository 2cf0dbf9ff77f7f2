"""What the torch models share: early stopping with best weights, seeding, epoch progress."""
from __future__ import annotations

import copy
import logging
from contextlib import contextmanager
from typing import Iterator

import numpy as np

log = logging.getLogger("streamrec.trainer")


class EarlyStopping:
    """Stop after ``patience`` epochs without improving ``value`` (lower is better) by
    ``min_delta``; remembers a deep copy of the best state."""

    def __init__(self, patience: int | None, min_delta: float = 1e-4):
        self.patience = patience
        self.min_delta = min_delta
        self.best = np.inf
        self.best_epoch = -1
        self.best_state = None
        self.bad_epochs = 0

    def step(self, value: float, epoch: int, state) -> bool:
        """Record an epoch; True when training should stop."""
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_state = copy.deepcopy(state)
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience


def seed_everything(seed: int) -> np.random.Generator:
    import torch

    torch.manual_seed(seed)
    return np.random.default_rng(seed)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch CPU threads (None: leave as is), restoring the previous value."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def epoch_progress(name: str, epochs: int, enabled: bool) -> Iterator:
    """A rich progress bar over epochs when ``enabled``; a no-op callable otherwise.

    Yields ``advance(**fields)``, to call once per epoch.
    """
    if not enabled:
        yield lambda **_: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(name, total=epochs, info="")

        def advance(**fields) -> None:
            bar.update(task, advance=1, info=" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                       for k, v in fields.items()))

        yield advance


class NegativeSampler:
    """Uniform random items a user has not interacted with.

    >>> import scipy.sparse as sp
    >>> s = NegativeSampler(sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1]])))
    >>> s.sample(np.random.default_rng(0), np.array([0, 0, 1, 1])).tolist()
    [2, 2, 0, 0]
    """

    def __init__(self, matrix, rounds: int = 10):
        m = matrix.tocsr()
        m.sort_indices()
        self.n_items = m.shape[1]
        self.rounds = rounds
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        self._keys = rows * self.n_items + m.indices.astype(np.int64)  # sorted: CSR order

    def seen(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users.astype(np.int64) * self.n_items + items
        if len(self._keys) == 0:
            return np.zeros(len(keys), dtype=bool)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        return self._keys[pos] == keys

    def sample(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        """One negative per entry of ``users`` (re-drawn on collision a few times; a user
        who has seen nearly everything may keep a rare collision)."""
        items = rng.integers(0, self.n_items, size=len(users))
        for _ in range(self.rounds):
            clash = self.seen(users, items)
            if not clash.any():
                break
            items[clash] = rng.integers(0, self.n_items, size=int(clash.sum()))
        return items
