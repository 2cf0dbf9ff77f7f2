"""Tune the basket policy per catalog, on validation baskets carved from the training baskets.

The search is a coordinate descent over a few knobs of ``BasketParams`` (a few dozen
configurations), every one scored through the one policy path (``ranking.basket.complements``,
as the API serves it) on the same validation draws:

- how pair counts become links: ``PAIR_NORM`` (raw, conditional, cosine, lift, pmi, jaccard),
  ``PAIR_RESCALE`` and the IDF-style ``POP_DAMPING`` of popular candidates;
- the size-weighted co-occurrence ``PAIR_SIZE_POWER`` (``ranking.basket.sized``: each training
  basket counts ``|b| ** -γ``, the Bayes conditional when the item shown is any of the basket's);
- the conditional cover ``COCOVER_RHO`` (``ranking.basket.cocover``);
- the popularity weight ``W_POPG`` and the pool size ``TOP_PAIRS``;
- where baskets carry segments: ``W_SEG_PAIRS`` and ``W_POPP``.

It starts from **plain co-occurrence** (``COOCCURRENCE``: raw counts summed over the basket,
popularity breaking ties), which is a point of the space, and moves only to a configuration
whose Hit@k and MRR@k are both at least co-occurrence's at every M validated, and whose mean
relative gain over it is larger: the tuned policy is never worse than co-occurrence on
validation. The hold-out is the latest baskets when every basket has a time, else a seeded
random draw (reported). Its size scales with the data where that is cheap (``validation_size``):
500 baskets, and on a small catalog up to a quarter of the training baskets (at most 1,500).
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ranking.basket import ItemMeta
from ranking.basket.engine import SELECTION_KNOBS
from ranking.basket.sized import SizedMemo
from schemas.basket_profiles import TUNED, BasketParams
from trainer.data.baskets import Basket

log = logging.getLogger(__name__)

#: Plain co-occurrence through the policy path: raw counts summed over the basket items, no
#: rescaling, no cover, popularity only to break ties.
COOCCURRENCE: dict[str, Any] = {
    "W_PAIR": 1.0, "PAIR_ANY_WEIGHT": 1.0, "W_SEG_PAIRS": 0.0, "W_REV": 0.0, "W_EMB": 0.0, "W_POPP": 0.0,
    "W_POPG": 1e-6, "W_COVERAGE": 0.0, "W_PL_BASE": 0.0, "W_PL_PER_BASK_PL": 0.0, "CAP_PER_GAMME": 0,
    "DIVERSIFY": False, "PAIR_QUOTA": 0, "COVERAGE_GREEDY": False, "TOP_PAIRS": 100, "TOP_POPP": 50,
    "TOP_POPG": 50, "PAIR_NORM": "raw", "PAIR_RESCALE": False, "POP_DAMPING": 0.0, "COCOVER_RHO": 0.0,
    "PAIR_SIZE_POWER": 0.0,
}

#: The knobs searched, in the order of the descent, with their values. Where baskets carry
#: segments, ``SEGMENT_SEARCH`` goes first (the segment's own pairs are the strongest signal
#: there).
SEARCH: list[tuple[str, list[Any]]] = [
    ("PAIR_NORM", ["raw", "conditional", "cosine", "lift", "pmi", "jaccard"]),
    ("PAIR_SIZE_POWER", [0.0, 0.5, 0.75, 1.0]),
    ("POP_DAMPING", [0.0, 0.1, 0.2, 0.35]),
    ("PAIR_RESCALE", [False, True]),
    ("COCOVER_RHO", [0.0, 0.1, 0.2, 0.35, 0.5, 0.7, 0.85]),
    ("W_POPG", [1e-6, 0.02, 0.1]),
    ("TOP_PAIRS", [50, 100, 200]),
]
SEGMENT_SEARCH: list[tuple[str, list[Any]]] = [
    ("W_SEG_PAIRS", [0.0, 0.25, 1.0, 4.0, 16.0]),
    ("W_POPP", [0.0, 0.05, 0.2]),
]
#: The second pass revisits only these (the first pass settles the rest).
REFINE = ("PAIR_NORM", "PAIR_SIZE_POWER", "POP_DAMPING", "COCOVER_RHO", "W_SEG_PAIRS")

Metrics = dict[int, tuple[float, float, float]]  # M -> (hit, recall, mrr)
Scorer = Callable[[dict[str, Any]], Metrics]


@dataclass
class Trial:
    params: dict[str, Any]
    metrics: Metrics
    gain: float
    feasible: bool


#: The buckets tuned and the M each is validated on: one item shown, and more.
BUCKETS: list[tuple[str, tuple[int, ...]]] = [("1", (1,)), ("default", (2,))]


@dataclass
class TuneResult:
    """The chosen parameters per bucket (``"1"``: one basket item; ``"default"``: more), and
    how they were chosen."""

    params: dict[str, dict[str, Any]]
    holdout: str
    n_fit: int
    n_val: int
    baseline: Metrics
    best: Metrics
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0

    def profile(self) -> dict[str, Any]:
        """The tuned policy as a profile (``schemas.basket_profiles``)."""
        return {"_doc": f"tuned on {self.n_val} validation baskets ({self.holdout}), {len(self.trials)} configurations",
                **{b: dict(p) for b, p in self.params.items()}}

    def changed(self) -> dict[str, dict[str, Any]]:
        """Per bucket, the knobs that differ from plain co-occurrence."""
        return {b: {k: v for k, v in p.items() if COOCCURRENCE.get(k, getattr(BasketParams(), k, None)) != v}
                for b, p in self.params.items()}

    def summary(self) -> dict[str, Any]:
        """What the run records (``basket_policy.json``)."""
        def fmt(m: Metrics) -> dict[str, dict[str, float]]:
            return {str(k): {"hit": round(v[0], 4), "recall": round(v[1], 4), "mrr": round(v[2], 4)} for k, v in m.items()}

        return {"name": TUNED, "params": self.params, "changed_from_cooccurrence": self.changed(),
                "holdout": self.holdout, "n_fit": self.n_fit, "n_val": self.n_val,
                "validation": {"cooccurrence": fmt(self.baseline), "tuned": fmt(self.best)},
                "configurations": len(self.trials), "seconds": round(self.seconds, 1)}


#: Validation baskets by default. On a catalog of at most ``SMALL_CATALOG`` items a basket is
#: cheap to score, and the gains worth having there are small (Groceries at M=1: ~+0.5-1% on
#: Hit and MRR, against per-split swings of ~1% with 500 baskets), so the carve grows to a
#: quarter of the 2+-item training baskets, at most ``SMALL_VAL_MAX``. With 1,500 baskets every
#: Groceries seed took the size weighting at M=1 and met co-occurrence on both metrics held-out
#: (4/5 seeds; 500: 2/5).
VAL_BASKETS = 500
SMALL_CATALOG = 5000
SMALL_VAL_MAX = 1500


def validation_size(train: list[Basket], n_val: int | None = None) -> int:
    """The validation baskets to carve from ``train``: ``n_val`` when given, else
    ``VAL_BASKETS``, or on a catalog of at most ``SMALL_CATALOG`` items, a quarter of the
    2+-item baskets if larger (at most ``SMALL_VAL_MAX``). ``carve`` keeps at most a quarter.

    >>> few = [Basket(f"b{i}", ["a", "b"]) for i in range(8000)]
    >>> validation_size(few), validation_size(few[:2400]), validation_size(few, 300)
    (1500, 600, 300)
    """
    if n_val is not None:
        return n_val
    items = {i for b in train for i in b.items}
    if len(items) > SMALL_CATALOG:
        return VAL_BASKETS
    multi = sum(1 for b in train if len(b.items) >= 2)
    return max(VAL_BASKETS, min(multi // 4, SMALL_VAL_MAX))


def carve(train: list[Basket], n_val: int, seed: int) -> tuple[list[Basket], list[Basket], str]:
    """(fit, validation, how): the latest ``n_val`` baskets of 2+ items when every basket has
    a time, else a random draw with ``seed``; at most a quarter of the baskets."""
    multi = [i for i, b in enumerate(train) if len(b.items) >= 2]
    n = min(n_val, len(multi) // 4)
    if train and all(b.ts is not None for b in train):
        multi.sort(key=lambda i: (train[i].ts, train[i].basket_id))
        val = set(multi[len(multi) - n:]) if n else set()
        how = "time: the latest baskets"
    else:
        val = set(random.Random(seed).sample(multi, n)) if n else set()
        how = f"random, seed {seed}"
    return [b for i, b in enumerate(train) if i not in val], [b for i, b in enumerate(train) if i in val], how


def relative_gain(m: Metrics, base: Metrics) -> float:
    """Mean over M of the relative gains of Hit and MRR over ``base``."""
    out = []
    for k, (h, _, q) in m.items():
        bh, _, bq = base[k]
        out.append(((h / bh - 1) if bh else 0.0) + ((q / bq - 1) if bq else 0.0))
    return float(np.mean(out)) / 2 if out else 0.0


def not_worse(m: Metrics, base: Metrics) -> bool:
    return all(m[k][0] >= base[k][0] - 1e-12 and m[k][2] >= base[k][2] - 1e-12 for k in base)


def descend(score: Scorer, start: dict[str, Any], space: list[tuple[str, list[Any]]], passes: int = 2,
            refine: tuple[str, ...] | None = None) -> tuple[dict[str, Any], Metrics, Metrics, list[Trial]]:
    """Coordinate descent from ``start`` (the baseline): each knob in turn takes the value with
    the best gain among those not worse than the baseline; stops when a pass changes nothing.
    Passes after the first visit only the knobs named in ``refine`` (None: all).

    >>> def score(p):  # a toy: Hit peaks at x = 2, MRR at y = 1
    ...     return {1: (1 - (p["x"] - 2) ** 2 / 10, 0.0, 1 - (p["y"] - 1) ** 2 / 10)}
    >>> best, _, _, trials = descend(score, {"x": 0, "y": 0}, [("x", [0, 1, 2, 3]), ("y", [0, 1, 2])])
    >>> best, len(trials)
    ({'x': 2, 'y': 1}, 9)
    """
    seen: dict[str, Trial] = {}

    def trial(p: dict[str, Any]) -> Trial:
        key = repr(sorted(p.items()))
        if key not in seen:
            m = score(p)
            seen[key] = Trial(dict(p), m, 0.0, True)
        return seen[key]

    base = trial(start).metrics
    current, cur_gain = dict(start), 0.0
    for n in range(passes):
        moved = False
        for knob, values in space:
            if n and refine is not None and knob not in refine:
                continue
            for v in values:
                if current.get(knob) == v:
                    continue
                t = trial({**current, knob: v})
                t.gain, t.feasible = relative_gain(t.metrics, base), not_worse(t.metrics, base)
                if t.feasible and t.gain > cur_gain + 1e-9:
                    current, cur_gain, moved = dict(t.params), t.gain, True
        if not moved:
            break
    return current, base, trial(current).metrics, list(seen.values())


def draws(baskets: list[Basket], ms: tuple[int, ...], seed: int, known: set[str]
          ) -> dict[int, list[tuple[list[str], set[str], Basket]]]:
    """Per M, (shown, rest, basket) of every basket with more than M known items (seeded)."""
    out = {}
    for m in ms:
        rng = random.Random(f"{seed}:{m}")
        rows = []
        for b in baskets:
            items = [i for i in b.items if i in known]
            if len(items) > m:
                shown = rng.sample(items, m)
                rows.append((shown, set(items) - set(shown), b))
        out[m] = rows
    return out


def tune_policy(train: list[Basket], meta: dict[str, ItemMeta], segment_mode: str = "use_order", k: int = 10,
                ms: tuple[int, ...] = (1, 2), n_val: int | None = None, seed: int = 0, top_k: int = 200
                ) -> TuneResult:
    """Carve validation baskets from ``train`` (``n_val``, None: ``validation_size``), learn the
    signals from the rest, descend."""
    from trainer.basket_eval import Model, metrics_at_k, policy_ranker
    from trainer.basket_signals import learn_stats

    t0 = time.perf_counter()
    fit, val, how = carve(train, validation_size(train, n_val), seed)
    if not fit or not val:
        raise ValueError(f"too few baskets to tune on ({len(train)}; need 8 or more of 2+ items)")
    stats = learn_stats(fit, top_k=top_k, meta=meta)
    stats.index.memo = SizedMemo()  # the size-weighted lists of a basket item, across configurations
    model = Model(stats.signals, stats=stats)
    plan = draws(val, ms, seed, set(stats.index.pos))
    has_segments = segment_mode != "none" and bool(stats.signals.pop_seg)

    cache: dict[str, Any] = {"key": None, "pools": {}}

    def score(params: dict[str, Any], m: int) -> tuple[float, float, float]:
        key = repr(sorted((n, v) for n, v in params.items() if n not in SELECTION_KNOBS))
        if key != cache["key"]:  # the scored pools hold while only selection knobs change
            cache.update(key=key, pools={})
        rank = policy_ranker(model, {"default": params}, segment_mode, k, cache["pools"])
        s = np.zeros(3)
        for shown, rest, b in plan[m]:
            s += metrics_at_k(rank(shown, b), rest, k)
        return tuple((s / max(len(plan[m]), 1)).tolist())

    space = (SEGMENT_SEARCH if has_segments else []) + SEARCH
    params: dict[str, dict[str, Any]] = {}
    base: Metrics = {}
    got: Metrics = {}
    trials: list[Trial] = []
    for bucket, bucket_ms in BUCKETS:
        if not any(plan.get(m) for m in bucket_ms):
            params[bucket] = dict(COOCCURRENCE)
            continue
        msel = [m for m in bucket_ms if plan.get(m)]
        best, b, g, t = descend(lambda p: {m: score(p, m) for m in msel}, dict(COOCCURRENCE), space, refine=REFINE)
        params[bucket] = best
        base.update(b)
        got.update(g)
        trials += t
    res = TuneResult(params, how, len(fit), len(val), base, got, trials, time.perf_counter() - t0)
    log.info("basket policy tuned in %.1fs over %d configurations: %s", res.seconds, len(trials), res.changed())
    return res
