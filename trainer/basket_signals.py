"""The basket policy's signals learnt from training baskets, with sparse matrices.

What the stream keeps in Redis for baskets (pair counts per segment and for ``ANY``,
popularity per segment and global), computed in one pass over a basket × item matrix ``X``
(co-occurrence ``Xᵀ X``), plus what the run adds for the tuned policy: the number of baskets
holding each item (``PAIR_NORM``) and the training baskets themselves (``BasketIndex``, the
conditional cover). Pair lists are cut to their ``top_k`` best entries (the API reads at
most ``TOP_PAIRS`` per basket item) and turned into dicts only when the policy reads them
(``PairLists``), so a 30k-item catalog costs seconds and a few hundred MB, not minutes and GBs.

>>> from trainer.data.baskets import Basket
>>> st = learn_stats([Basket("b1", ["milk", "bread"]), Basket("b2", ["milk", "bread", "jam"])])
>>> st.signals.pairs["ANY"]["milk"], st.signals.item_count["milk"], st.signals.n_baskets
({'bread': 2.0, 'jam': 1.0}, 2.0, 2.0)
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
import scipy.sparse as sp

from ranking.basket import BasketSignals, ItemMeta
from ranking.basket.cocover import BasketIndex
from trainer.data.baskets import Basket

ANY = "ANY"
#: Popular items kept per popularity list: the API reads the top ``TOP_POPG``/``TOP_POPP`` of
#: the Redis zsets, so the policy never sees the long tail of popularity either.
POP_HEAD = 500


def head(scores: dict[str, float], n: int) -> dict[str, float]:
    """The ``n`` largest entries, best first (ties by id)."""
    return dict(sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


class PairLists(Mapping):
    """``item → {other: count}`` over a CSR matrix whose rows are already cut and sorted (best
    first, ties by item id); a row becomes a dict when it is read."""

    def __init__(self, matrix: sp.csr_matrix, items: list[str], pos: Mapping[str, int], cache: int = 4096):
        self.m, self.items, self.pos = matrix, items, pos
        self._row = lru_cache(maxsize=cache)(self._build)  # an evaluation reads the same rows again and again

    def _build(self, n: int) -> dict[str, float]:
        lo, hi = self.m.indptr[n], self.m.indptr[n + 1]
        return dict(zip([self.items[j] for j in self.m.indices[lo:hi]], self.m.data[lo:hi].tolist()))

    def __getitem__(self, item: str) -> dict[str, float]:
        n = self.pos.get(item)
        if n is None or self.m.indptr[n] == self.m.indptr[n + 1]:
            raise KeyError(item)
        return self._row(n)  # shared: callers must not change it (the policy only reads)

    def __iter__(self) -> Iterator[str]:
        return (self.items[n] for n in np.flatnonzero(np.diff(self.m.indptr)))

    def __len__(self) -> int:
        return int(np.count_nonzero(np.diff(self.m.indptr)))


def top_rows(c: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Each row cut to its ``k`` largest entries, best first (ties: lower column first)."""
    c = c.tocsr()
    c.sort_indices()
    ptr, idx, val = c.indptr, c.indices, c.data
    out_ptr, out_idx, out_val = [0], [], []
    for r in range(c.shape[0]):
        lo, hi = ptr[r], ptr[r + 1]
        if hi == lo:
            out_ptr.append(out_ptr[-1])
            continue
        v, j = val[lo:hi], idx[lo:hi]
        order = np.lexsort((j, -v))[:k]
        out_idx.append(j[order])
        out_val.append(v[order])
        out_ptr.append(out_ptr[-1] + len(order))
    if not out_idx:
        return sp.csr_matrix(c.shape, dtype=np.float64)
    m = sp.csr_matrix((np.concatenate(out_val).astype(np.float64), np.concatenate(out_idx), np.array(out_ptr)),
                      shape=c.shape)
    m.has_sorted_indices = False  # rows are in rank order, not column order: keep scipy from sorting them away
    return m


@dataclass
class BasketStats:
    """Signals for the policy (``signals``) and, for the co-occurrence baseline, the full
    ``ANY`` count matrix and each item's basket count in index order."""

    signals: BasketSignals
    index: BasketIndex
    cooc: sp.csr_matrix
    pop: np.ndarray


def basket_matrix(baskets: list[Basket], pos: Mapping[str, int]) -> sp.csr_matrix:
    ptr = np.concatenate([[0], np.cumsum([len(b.items) for b in baskets])]).astype(np.int64)
    cols = np.fromiter((pos[i] for b in baskets for i in b.items), dtype=np.int32, count=int(ptr[-1]))
    return sp.csr_matrix((np.ones(len(cols), dtype=np.float64), cols, ptr), shape=(len(baskets), len(pos)))


def cooccurrence(x: sp.csr_matrix) -> sp.csr_matrix:
    c = (x.T @ x).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    return c


def learn_stats(train: list[Basket], top_k: int = 200, meta: dict[str, ItemMeta] | None = None) -> BasketStats:
    """Everything the policy and the baselines read, from the training baskets (time order
    when every basket has a time, so the index's "latest baskets" are the latest)."""
    if train and all(b.ts is not None for b in train):
        train = sorted(train, key=lambda b: (b.ts, b.basket_id))
    index = BasketIndex.from_baskets([b.items for b in train])
    items, pos = index.items, index.pos
    x = basket_matrix(train, pos)
    cooc = cooccurrence(x)
    pop = np.asarray(x.sum(axis=0)).ravel()
    pairs = {ANY: PairLists(top_rows(cooc, top_k), items, pos)}
    pop_global = head(dict(zip(items, pop.tolist())), POP_HEAD)
    pop_seg: dict[str, dict[str, float]] = {}
    segs = np.array([b.segment or "" for b in train], dtype=object)
    for seg in sorted(set(segs) - {""}):
        xs = x[np.flatnonzero(segs == seg)]
        pairs[seg] = PairLists(top_rows(cooccurrence(xs), top_k), items, pos)
        ps = np.asarray(xs.sum(axis=0)).ravel()
        pop_seg[seg] = head({items[j]: float(ps[j]) for j in np.flatnonzero(ps)}, POP_HEAD)
    sig = BasketSignals(pairs=pairs, pairs_rev=pairs, pop_seg=pop_seg, pop_global=pop_global, meta=meta or {},
                        item_count=dict(zip(items, pop.tolist())), n_baskets=float(len(train)), index=index)
    return BasketStats(sig, index, cooc, pop)
