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

import numpy as np

from ranking.basket.cocover import BasketIndex, _gather


def sized_pairs(index: BasketIndex, item: str, power: float, limit: int, top_n: int | None = None
                ) -> dict[str, float]:
    """``{c: Σ_b |b| ** -power}`` over the latest ``limit`` training baskets b holding ``item``
    (``item`` itself left out), the ``top_n`` best first (ties by item id); empty when the
    run does not know ``item``."""
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
