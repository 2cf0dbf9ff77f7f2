"""Size-weighted co-occurrence: pair counts read off the run's training baskets, each basket
weighing ``|b| ** -γ`` (``PAIR_SIZE_POWER``).

Plain co-occurrence counts every training basket holding both a and c once. But a shopper
shows *one* item of the basket to come (or a few), and a large basket is no likelier to be
behind a given shown item than a small one: of a 20-item basket, a is only one of 20 items
that could have been shown. When the item shown is any item of the basket, Bayes gives

    P(c in the rest | a shown) = Σ_b [a, c ∈ b] / |b|  /  Σ_b [a ∈ b] / |b|,

that is co-occurrence with each basket weighed by ``1 / |b|`` (γ = 1; the denominator does not
change the order). γ = 0 is plain co-occurrence; the tuning (``trainer.basket_tuning``)
picks γ per catalog on validation baskets. Large baskets otherwise dominate the counts of
popular items (milk, vegetables) although they say the least about what goes with a.

The work is bounded as the conditional cover's (``ranking.basket.cocover``): at most
``limit`` training baskets per request (the latest), split over the basket's items.

>>> from ranking.basket.cocover import BasketIndex
>>> idx = BasketIndex.from_baskets([["milk", "jam"], ["milk", "veg", "a", "b", "c"], ["milk", "veg", "d", "e"]])
>>> sized_pairs(idx, "milk", 0.0, 100)["veg"], sized_pairs(idx, "milk", 0.0, 100)["jam"]
(2.0, 1.0)
>>> {c: round(w, 3) for c, w in sized_pairs(idx, "milk", 1.0, 100).items() if c in ("veg", "jam")}
{'jam': 0.5, 'veg': 0.45}
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ranking.basket.cocover import BasketIndex, _gather


class SizedMemo:
    """The last ``size`` size-weighted pair lists, by (item, γ, limit, top_n): a tuner scores the
    same basket items under a hundred configurations, and the lists depend on none of the other
    knobs. Set as ``BasketIndex.memo``; the lists are shared, never to be changed by a caller.

    >>> idx = BasketIndex.from_baskets([["milk", "jam"], ["milk", "veg"]])
    >>> idx.memo = SizedMemo(size=1)
    >>> sized_pairs(idx, "milk", 1.0, 10) is sized_pairs(idx, "milk", 1.0, 10), len(idx.memo)
    (True, 1)
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._lists: OrderedDict[tuple, dict[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lists)

    def get(self, key: tuple) -> dict[str, float] | None:
        got = self._lists.get(key)
        if got is not None:
            self._lists.move_to_end(key)
        return got

    def put(self, key: tuple, value: dict[str, float]) -> None:
        self._lists[key] = value
        if len(self._lists) > self.size:
            self._lists.popitem(last=False)


def sized_pairs(index: BasketIndex, item: str, power: float, limit: int, top_n: int | None = None
                ) -> dict[str, float]:
    """``{c: Σ_b |b| ** -power}`` over the latest ``limit`` training baskets b holding ``item``
    (``item`` itself left out), the ``top_n`` best first (ties by item id); empty when the
    run does not know ``item``. Kept in ``index.memo`` when the index has one."""
    memo = index.memo
    if memo is None:
        return _sized_pairs(index, item, power, limit, top_n)
    key = (item, power, limit, top_n)
    got = memo.get(key)
    if got is None:
        got = _sized_pairs(index, item, power, limit, top_n)
        memo.put(key, got)
    return got


def _sized_pairs(index: BasketIndex, item: str, power: float, limit: int, top_n: int | None) -> dict[str, float]:
    rows = index.baskets_of(item, limit)
    if not len(rows):
        return {}
    sizes = (index.basket_ptr[rows + 1] - index.basket_ptr[rows]).astype(np.float64)
    local, cols = _gather(index, rows)
    weights = (sizes ** -power)[local]
    own = index.pos[item]
    keep = cols != own
    uniq, inv = np.unique(cols[keep], return_inverse=True)
    total = np.bincount(inv, weights=weights[keep], minlength=len(uniq))
    order = np.lexsort((uniq, -total))[: top_n if top_n is not None else len(uniq)]  # index items are in id order
    return {index.items[j]: w for j, w in zip(uniq[order].tolist(), np.round(total[order], 12).tolist())}
