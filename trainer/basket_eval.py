"""``streamrec eval-basket``: offline evaluation of basket complements.

Hold out ``n_samples`` baskets (the latest when the file has timestamps, else a seeded random
draw), learn from the others, then for each held-out basket and each M in
``basket_m..max_basket_m`` show M of its items (seeded random draw) and predict the rest.
Three methods run on the same draws: **streamrec** (``ranking.basket``, the policy the API
serves — one code path, so the ranking evaluated is the ranking served — over offline-mined
pairs, popularity and LightFM embeddings), **cooccurrence** (plain pair
counts summed over the shown items, popularity breaking ties) and **popularity**.

Segment mode: ``none`` ignores segments, ``use_order`` takes each basket's own segment,
``auto`` detects a mix from the basket's embedding (as the API does without a profession).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ranking.basket import BasketSignals, Embeddings, ItemMeta, complements, params_for, resolve_segments
from ranking.basket.engine import assort, pool
from schemas.basket_profiles import load_profiles
from trainer.basket_cover import fit_cover_model
from trainer.basket_signals import BasketStats, learn_stats
from trainer.data.baskets import Basket, derive_category

SEGMENT_MODES = ("auto", "use_order", "none")
METHODS = ("streamrec", "cooccurrence", "popularity")
HOLDOUTS = ("auto", "random")


@dataclass
class EvalConfig:
    basket_m: int = 1
    max_basket_m: int = 2
    n_samples: int = 2000
    seed: int = 0
    k: int = 10
    segment_mode: str = "auto"
    profile: str = "precision"
    profiles_file: Path | None = None
    embeddings: bool = False  # train LightFM for the W_EMB term, MMR similarity and segment detection
    lightfm_components: int = 32
    lightfm_epochs: int = 20
    cover: bool = True  # fit the Bernoulli-mixture cover model (used by profiles with COVERAGE_GREEDY)
    cover_components: int = 20
    cover_restarts: int = 3
    top_k: int = 200  # pair list length kept per item (the policy reads at most TOP_PAIRS of it)
    holdout: str = "auto"  # auto: the latest baskets when every basket has a time, else random; random
    tune: bool = False  # tune the policy on validation baskets carved from the training ones
    val_samples: int | None = None  # validation baskets of the tuning (None: scaled to the data)


@dataclass
class Model:
    """What the offline streamrec learnt from the training baskets."""

    signals: BasketSignals
    centroids: dict[str, np.ndarray] = field(default_factory=dict)
    stats: BasketStats | None = None  # the full co-occurrence counts, for the baseline


def split_baskets(baskets: list[Basket], n_samples: int, seed: int, holdout: str = "auto"
                  ) -> tuple[list[Basket], list[Basket]]:
    """(train, held out): the latest ``n_samples`` baskets when every basket has a time,
    else a seeded random draw.

    >>> bs = [Basket(f"b{i}", ["x"], ts=float(i)) for i in range(5)]
    >>> [b.basket_id for b in split_baskets(bs, 2, 0)[1]]
    ['b3', 'b4']
    """
    n = min(max(n_samples, 0), len(baskets))
    if holdout not in HOLDOUTS:
        raise ValueError(f"hold-out must be one of {HOLDOUTS}, got {holdout!r}")
    if holdout == "auto" and baskets and all(b.ts is not None for b in baskets):
        ordered = sorted(baskets, key=lambda b: (b.ts, b.basket_id))
        return ordered[: len(ordered) - n], ordered[len(ordered) - n:]
    idx = list(range(len(baskets)))
    random.Random(seed).shuffle(idx)
    test = set(idx[:n])
    return [b for i, b in enumerate(baskets) if i not in test], [baskets[i] for i in sorted(test)]


def baskets_frame(baskets: list[Basket]) -> pd.DataFrame:
    rows = [(b.basket_id, it, b.segment or "") for b in baskets for it in b.items]
    return pd.DataFrame(rows, columns=["basket_id", "item_id", "segment"])


def item_meta(baskets: list[Basket], categories: dict[str, str] | None = None) -> dict[str, ItemMeta]:
    """Titles from the file's names; the category given, else ``derive_category`` of the name."""
    meta: dict[str, ItemMeta] = {}
    for b in baskets:
        for it in b.items:
            if it not in meta:
                name = b.names.get(it, it)
                cat = (categories or {}).get(it) or derive_category(name.replace("_", " "))
                meta[it] = ItemMeta(title=name, category=cat)
    return meta


def fit_lightfm(
    train: list[Basket], meta: dict[str, ItemMeta], components: int, epochs: int, seed: int
) -> tuple[Embeddings, dict[str, np.ndarray]]:
    """LightFM (WARP) with baskets as users: segment user features, category item features.

    Returns the L2-normalised item representations and, per segment, its centroid as the run
    export computes it (``trainer.basket_export.segment_centroids``), so detection offline
    and at serving time compare baskets with the same thing.
    """
    from trainer.basket_export import segment_centroids

    import scipy.sparse as sp
    from lightfm import LightFM

    items = sorted(meta)
    iidx = {it: i for i, it in enumerate(items)}
    cats = sorted({m.category for m in meta.values() if m.category})
    cidx = {c: len(items) + j for j, c in enumerate(cats)}
    segs = sorted({b.segment for b in train if b.segment})
    sidx = {s: len(train) + j for j, s in enumerate(segs)}
    rows, cols = [], []
    for u, b in enumerate(train):
        for it in b.items:
            rows.append(u)
            cols.append(iidx[it])
    inter = sp.coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(train), len(items)))
    ufr, ufc = list(range(len(train))), list(range(len(train)))
    for u, b in enumerate(train):
        if b.segment:
            ufr.append(u)
            ufc.append(sidx[b.segment])
    ufeat = sp.csr_matrix((np.ones(len(ufr), np.float32), (ufr, ufc)), shape=(len(train), len(train) + len(segs)))
    ifr, ifc = list(range(len(items))), list(range(len(items)))
    for it in items:
        if meta[it].category:
            ifr.append(iidx[it])
            ifc.append(cidx[meta[it].category])
    ifeat = sp.csr_matrix((np.ones(len(ifr), np.float32), (ifr, ifc)), shape=(len(items), len(items) + len(cats)))
    model = LightFM(no_components=components, loss="warp", random_state=seed)
    model.fit(inter, user_features=ufeat, item_features=ifeat, epochs=epochs, num_threads=1)
    _, vecs = model.get_item_representations(ifeat)
    vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    centroids = segment_centroids(baskets_frame(train), items, vecs)
    return Embeddings(iidx, vecs.astype(np.float32)), centroids


def needs_cover(profile: dict) -> bool:
    return any(isinstance(b, dict) and b.get("COVERAGE_GREEDY") for b in profile.values())


def learn(train: list[Basket], cfg: EvalConfig, meta: dict[str, ItemMeta], profile: dict | None = None) -> Model:
    """Pairs, popularity, item counts and the basket index from sparse matrices
    (``trainer.basket_signals``); LightFM embeddings with ``cfg.embeddings``; the Bernoulli
    cover model with ``cfg.cover`` when the profile evaluated uses it."""
    stats = learn_stats(train, top_k=cfg.top_k, meta=meta)
    sig = stats.signals
    centroids: dict[str, np.ndarray] = {}
    if cfg.embeddings:
        sig.embeddings, centroids = fit_lightfm(train, meta, cfg.lightfm_components, cfg.lightfm_epochs, cfg.seed)
    if cfg.cover and (profile is None or needs_cover(profile)):
        sig.cover = fit_cover_model(baskets_frame(train), cfg.cover_components, cfg.cover_restarts, seed=cfg.seed)
    return Model(sig, centroids, stats=stats)


def cooccurrence_ranker(stats: BasketStats, k: int) -> Callable[[list[str]], list[str]]:
    """The baseline: pair counts summed over the shown items, ties by popularity then item
    order; every item seen in training is a candidate (vectorised over the sparse counts)."""
    items, pos, c = stats.index.items, stats.index.pos, stats.cooc
    tiebreak = stats.pop / (stats.pop.max(initial=0.0) + 1.0)  # < 1: orders equal (integer) counts only

    def rank(shown: list[str]) -> list[str]:
        cols = [pos[a] for a in shown if a in pos]
        score = np.asarray(c[cols].sum(axis=0)).ravel() + tiebreak if cols else tiebreak.copy()
        score[cols] = -np.inf
        top = np.argpartition(-score, min(k, len(score) - 1))[: k + 1] if len(score) > k else np.arange(len(score))
        top = top[np.lexsort((top, -score[top]))][:k]
        return [items[j] for j in top if np.isfinite(score[j])]

    return rank


def policy_ranker(model: Model, profile: dict, segment_mode: str, k: int, pools: dict | None = None
                  ) -> Callable[[list[str], Basket], list[str]]:
    """streamrec: ``ranking.basket.complements`` (``pool`` then ``assort``) with the profile's
    bucket for the basket's size. ``pools``, when given, keeps each basket's scored pool: a
    tuner passes the same dict while only selection knobs (``SELECTION_KNOBS``) change."""
    buckets: dict[int, object] = {}

    def streamrec(shown: list[str], basket: Basket) -> list[str]:
        n = len(shown)
        if n not in buckets:
            buckets[n] = params_for(profile, n)
        p = buckets[n]
        if segment_mode == "use_order":
            segments = [(basket.segment, 1.0)] if basket.segment else []
        elif segment_mode == "auto":
            segments = resolve_segments(None, shown, model.signals, model.centroids, p)
        else:
            segments = []
        if pools is None:
            return [c.item_id for c in complements(shown, model.signals, p, segments, k)]
        key = (basket.basket_id, tuple(shown))
        if key not in pools:
            pools[key] = pool(shown, model.signals, p, segments, k)
        return [c.item_id for c in assort(pools[key], shown, model.signals, p, k)]

    return streamrec


def predictors(model: Model, cfg: EvalConfig, profile: dict | None = None
               ) -> dict[str, Callable[[list[str], Basket], list[str]]]:
    """The three methods; ``profile`` (buckets as in the profile file) overrides ``cfg.profile``."""
    profile = profile or load_profiles(cfg.profiles_file)[cfg.profile]
    pop = model.signals.pop_global
    popular = sorted(pop, key=lambda i: (-pop[i], i))
    cooc = cooccurrence_ranker(model.stats, cfg.k)

    def popularity(shown: list[str], basket: Basket) -> list[str]:
        s = set(shown)
        return [i for i in popular[: cfg.k + len(s)] if i not in s][: cfg.k]

    return {"streamrec": policy_ranker(model, profile, cfg.segment_mode, cfg.k),
            "cooccurrence": lambda shown, basket: cooc(shown), "popularity": popularity}


def metrics_at_k(ranked: list[str], relevant: set[str], k: int) -> tuple[float, float, float]:
    """(Hit@k, Recall@k, MRR@k) of one ranked list.

    >>> metrics_at_k(["a", "b", "c"], {"b", "z"}, 2)
    (1.0, 0.5, 0.5)
    """
    top = ranked[:k]
    ranks = [r for r, it in enumerate(top, start=1) if it in relevant]
    if not ranks:
        return 0.0, 0.0, 0.0
    return 1.0, len(ranks) / len(relevant), 1.0 / ranks[0]


def evaluate(baskets: list[Basket], cfg: EvalConfig, categories: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per (M, method): ``n``, ``hit@k``, ``recall@k``, ``mrr@k``."""
    if cfg.segment_mode not in SEGMENT_MODES:
        raise ValueError(f"segment mode must be one of {SEGMENT_MODES}, got {cfg.segment_mode!r}")
    if cfg.basket_m < 1 or cfg.max_basket_m < cfg.basket_m:
        raise ValueError("need 1 <= basket_m <= max_basket_m")
    train, test = split_baskets(baskets, cfg.n_samples, cfg.seed, cfg.holdout)
    if not train or not test:
        raise ValueError(f"need baskets to learn from and to hold out (have {len(baskets)})")
    meta = item_meta(baskets, categories)
    profile, tuned = None, None
    if cfg.tune:
        from trainer.basket_tuning import tune_policy

        tuned = tune_policy(train, meta, cfg.segment_mode, cfg.k, n_val=cfg.val_samples, seed=cfg.seed, top_k=cfg.top_k)
        profile = tuned.profile()
    model = learn(train, cfg, meta, profile or load_profiles(cfg.profiles_file)[cfg.profile])
    table = score_heldout(model, test, cfg, set(meta), profile)
    if tuned is not None:
        table.attrs["tuning"] = tuned.summary()
    return table


def score_heldout(model: Model, test: list[Basket], cfg: EvalConfig, known: set[str],
                  profile: dict | None = None) -> pd.DataFrame:
    """The metrics table of a learnt model on held-out baskets (see ``evaluate``)."""
    preds = predictors(model, cfg, profile)
    rows = []
    for m in range(cfg.basket_m, cfg.max_basket_m + 1):
        rng = random.Random(f"{cfg.seed}:{m}")
        sums = {name: np.zeros(3) for name in preds}
        n = 0
        for b in test:
            items = [i for i in b.items if i in known]
            if len(items) <= m:
                continue
            shown = rng.sample(items, m)
            rest = set(items) - set(shown)
            n += 1
            for name, fn in preds.items():
                sums[name] += metrics_at_k(fn(shown, b), rest, cfg.k)
        for name in preds:
            h, r, q = (sums[name] / n) if n else (float("nan"),) * 3
            rows.append({"M": m, "method": name, "n": n, f"hit@{cfg.k}": h, f"recall@{cfg.k}": r, f"mrr@{cfg.k}": q})
    return pd.DataFrame(rows)


def markdown_table(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)
