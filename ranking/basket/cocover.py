"""Conditional cover: pick a list that covers *different* baskets, read off the training baskets.

Hit@K asks whether any of the K suggestions is in the rest of the basket. Ranking by pair
counts alone spends slots on items that come in the same baskets (milk, vegetables and buns):
once one is shown, the others mostly hit baskets already hit. Here each pick is scored by its
relevance (the blended score of ``ranking.basket.scoring``) times the share of its
co-occurrence with the basket items that is still *uncovered*: the training baskets holding a
basket item (``BasketIndex``) weigh ``w_u``, each earlier pick that a training basket holds
multiplies that basket's weight by ``1 − ρ`` (``COCOVER_RHO``), and

    pick = argmax_c  score(c) × Σ_u w_u,now X[u, c] / Σ_u w_u,start X[u, c].

ρ = 0 leaves the ranking as scored (plain co-occurrence is the point ρ = 0 with raw pair
counts), ρ = 1 is the hard greedy set cover of those baskets, which over-fits a few hundred
baskets; the tuning (``trainer.basket_tuning``) picks ρ per catalog on validation baskets.
The work is bounded: at most ``COCOVER_BASKETS`` training baskets (the latest) per request,
split over the basket's items.

>>> idx = BasketIndex.from_baskets([["milk", "veg"], ["milk", "veg"], ["milk", "beer"]])
>>> from ranking.basket.scoring import Candidate
>>> pool = [Candidate("veg", 2.0), Candidate("beer", 1.0), Candidate("bread", 0.5)]
>>> [c.item_id for c in cover_select(pool, ["milk"], idx, 3, rho=0.0)]
['veg', 'beer', 'bread']
>>> [c.item_id for c in cover_select(pool, ["milk"], idx, 2, rho=1.0)]
['veg', 'beer']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np


@dataclass
class BasketIndex:
    """Training baskets as two compressed sparse layouts: basket → items and item → baskets.

    Basket rows are in time order (oldest first) when the baskets had times, so "the latest
    ``n`` baskets of an item" is the tail of its row list.
    """

    items: list[str]
    basket_ptr: np.ndarray  # (baskets + 1,) offsets into basket_items
    basket_items: np.ndarray  # item positions
    item_ptr: np.ndarray = field(default=None)  # (items + 1,) offsets into item_baskets
    item_baskets: np.ndarray = field(default=None)  # basket rows, ascending
    pos: Mapping[str, int] = field(default=None)
    #: Where a caller keeps what is read off these baskets again and again (the tuner's
    #: ``ranking.basket.sized.SizedMemo``); None, as served: nothing kept.
    memo: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.basket_ptr = np.asarray(self.basket_ptr, dtype=np.int64)
        self.basket_items = np.asarray(self.basket_items, dtype=np.int32)
        if self.pos is None:
            self.pos = {it: n for n, it in enumerate(self.items)}
        if self.item_ptr is None:
            rows = np.repeat(np.arange(len(self.basket_ptr) - 1, dtype=np.int32), np.diff(self.basket_ptr))
            order = np.argsort(self.basket_items, kind="stable")
            self.item_baskets = rows[order]
            self.item_ptr = np.concatenate(
                [[0], np.cumsum(np.bincount(self.basket_items, minlength=len(self.items)))]).astype(np.int64)

    @classmethod
    def from_baskets(cls, baskets: Sequence[Sequence[str]]) -> "BasketIndex":
        items = sorted({i for b in baskets for i in b})
        pos = {it: n for n, it in enumerate(items)}
        lists = [sorted({pos[i] for i in b}) for b in baskets]
        ptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
        flat = np.fromiter((i for x in lists for i in x), dtype=np.int32, count=int(ptr[-1]))
        return cls(items, ptr, flat, pos=pos)

    @property
    def n_baskets(self) -> int:
        return len(self.basket_ptr) - 1

    def counts(self) -> dict[str, float]:
        """Baskets holding each item."""
        return dict(zip(self.items, np.diff(self.item_ptr).astype(float).tolist()))

    def baskets_of(self, item: str, limit: int) -> np.ndarray:
        """The latest ``limit`` basket rows holding ``item`` (empty when unknown)."""
        n = self.pos.get(item)
        if n is None or limit <= 0:
            return np.zeros(0, dtype=np.int32)
        lo, hi = int(self.item_ptr[n]), int(self.item_ptr[n + 1])
        return self.item_baskets[max(lo, hi - limit): hi]


def _gather(index: BasketIndex, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(local row, item position) of every item of the basket ``rows``."""
    starts, ends = index.basket_ptr[rows], index.basket_ptr[rows + 1]
    lengths = ends - starts
    local = np.repeat(np.arange(len(rows)), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return local, index.basket_items[np.repeat(starts, lengths) + offsets]


def cover_select(ranked: list, basket: Sequence[str], index: BasketIndex, k: int, rho: float,
                 per_item: int = 2000, item_weight: Mapping[str, float] | None = None) -> list:
    """k of the scored candidates ``ranked`` (``Candidate``s, best first), picked greedily by
    score × the uncovered share of their training baskets (see the module doc). At most
    ``per_item`` training baskets are read for the whole basket, split over its items (the
    latest of each, never fewer than 10 per item). A basket item's baskets weigh
    ``item_weight[item]`` (default 1) each."""
    if not ranked or k <= 0:
        return []
    rel = np.array([max(c.score, 0.0) for c in ranked], dtype=np.float64)
    chosen: list[int] = []
    free = np.ones(len(ranked), dtype=bool)
    shown = [a for a in dict.fromkeys(basket) if a in index.pos]
    if rho > 0 and shown:
        per_item = max(per_item // len(shown), 10)  # the budget is per basket: a large one reads fewer per item
        parts = [index.baskets_of(a, per_item) for a in shown]
        wparts = [np.full(len(r), (item_weight or {}).get(a, 1.0)) for a, r in zip(shown, parts)]
        rows, inv = np.unique(np.concatenate(parts), return_inverse=True)
        unc = np.bincount(inv, weights=np.concatenate(wparts), minlength=len(rows))
        local, cols = _gather(index, rows)
        pool_of = np.full(len(index.items), -1, dtype=np.int64)
        known = np.array([index.pos.get(c.item_id, -1) for c in ranked], dtype=np.int64)
        pool_of[known[known >= 0]] = np.flatnonzero(known >= 0)
        slot = pool_of[cols]
        keep = slot >= 0
        local, slot = local[keep], slot[keep]
        start = np.bincount(slot, weights=unc[local], minlength=len(ranked))
        while len(chosen) < k and free.any():
            now = np.bincount(slot, weights=unc[local], minlength=len(ranked))
            share = np.where(start > 0, now / np.where(start > 0, start, 1.0), 1.0)
            value = np.where(free, rel * share, -np.inf)
            j = int(np.argmax(value))  # ties: the better ranked candidate
            chosen.append(j)
            free[j] = False
            unc[local[slot == j]] *= 1.0 - rho
    else:
        chosen = list(range(min(k, len(ranked))))
        free[chosen] = False
    return [ranked[i] for i in chosen[:k]]
