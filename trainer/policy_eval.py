"""Offline evaluation of a policy: the lists the API would serve, measured like any model.

``policy_lists`` runs ``ranking.home`` for each user on signals built from the training
split (``trainer.signals``) and on the candidate stage the API uses
(``trainer.candidates``); ``evaluate_policy`` scores those lists with
``trainer.evaluation.list_metrics``. ``streamrec recommend``, ``streamrec eval --policy``,
validation in ``streamrec train`` and promotion all go through here.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ranking.filters import Filters, ItemInfo
from ranking.home import HomeList, HomeRequest, candidates, finish, meta_items, needs_meta
from ranking.policy import Policy
from trainer.candidates import PolicyScorer
from trainer.data.interactions import Interactions
from trainer.evaluation import list_metrics
from trainer.signals import OfflineSignals

_BATCH = 256


def item_infos(data: Interactions) -> dict[str, ItemInfo]:
    """Title, category and level of each item, from the dataset's item metadata."""
    meta = data.item_meta
    if meta is None or not len(meta):
        return {}
    meta = meta[~meta.index.duplicated(keep="last")]
    cols = {c: meta[c] if c in meta else pd.Series(None, index=meta.index, dtype=object) for c in ("title", "category", "level")}
    levels = pd.to_numeric(cols["level"], errors="coerce")
    out = {}
    for item in meta.index.astype(str):
        title, cat, lvl = cols["title"].get(item), cols["category"].get(item), levels.get(item)
        out[item] = ItemInfo(title=None if pd.isna(title) else str(title),
                             category=None if pd.isna(cat) else str(cat),
                             level=None if pd.isna(lvl) else int(lvl))
    return out


def policy_lists(scorer: PolicyScorer, policy: Policy, signals: OfflineSignals, users: Iterable[str], k: int,
                 infos: Mapping[str, ItemInfo] | None = None, filters: Filters | None = None,
                 batch_rows: bool = True, explain: bool = False,
                 rows_cache: RowsCache | None = None) -> dict[str, HomeList]:
    """The served list of ``policy`` for each user.

    ``batch_rows`` scores users in batches (fast, for evaluation); without it each user is
    scored alone, exactly as a request is (``streamrec recommend``: float-for-float the API's).
    ``rows_cache`` keeps the batches' score rows for the next call on the same users: a search
    that serves the same users under several policies of the same models (the MMR λ search)
    scores each user once per model instead of once per policy."""
    request = HomeRequest(k=k, filters=filters or Filters(), explain=explain)
    infos = infos or {}
    users = list(users)
    out: dict[str, HomeList] = {}
    for start in range(0, len(users), _BATCH):
        chunk = users[start : start + _BATCH]
        rows = _batch_rows(scorer, policy, chunk, rows_cache) if batch_rows else {}
        for pos, user in enumerate(chunk):
            sig = signals.user(user)
            user_rows = {m: r[pos] for m, r in rows.items() if r is not None and _known(r, pos)}
            parts = scorer.parts(policy, sig, user_rows or None)
            pool = candidates(policy, sig, parts, request)
            meta = {i: infos[i] for i in meta_items(pool, request) if i in infos} if needs_meta(policy, sig, request) else {}
            vectors = scorer.vectors([i for i, _ in pool.ranked[: k * 3]]) if policy.mmr_lambda < 1.0 else {}
            out[user] = finish(policy, pool, sig, request, meta, vectors)
    return out


class RowsCache:
    """Score rows of user batches by (model, users), up to ``max_bytes`` (then rows are
    recomputed, not kept: a catalogue too large to hold every validation row costs a rescoring,
    never the memory)."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._rows: dict[tuple[str, tuple[str, ...]], np.ndarray | None] = {}

    def get(self, key: tuple[str, tuple[str, ...]]):
        return self._rows.get(key, _MISSING)

    def put(self, key: tuple[str, tuple[str, ...]], rows: np.ndarray | None) -> None:
        size = 0 if rows is None else rows.nbytes
        if self.bytes + size <= self.max_bytes:
            self._rows[key] = rows
            self.bytes += size


_MISSING = object()


def _batch_rows(scorer: PolicyScorer, policy: Policy, users: list[str],
                cache: RowsCache | None = None) -> dict[str, np.ndarray | None]:
    """Full score rows of the users each model knows (NaN rows for the others)."""
    rows: dict[str, np.ndarray | None] = {}
    for name in policy.models:
        if name not in scorer.models:
            continue
        key = (name, tuple(users))
        kept = cache.get(key) if cache is not None else _MISSING
        if kept is not _MISSING:
            rows[name] = kept
            continue
        rows[name] = _model_rows(scorer, name, users)
        if cache is not None:
            cache.put(key, rows[name])
    return rows


def _model_rows(scorer: PolicyScorer, name: str, users: list[str]) -> np.ndarray | None:
    idx = [scorer.user_index(name, u) for u in users]
    known = [i for i in idx if i is not None]
    if not known:
        return None
    scored = scorer.rows(name, np.array(known))
    full = np.full((len(users), scored.shape[1]), np.nan, dtype=scored.dtype)
    full[[p for p, i in enumerate(idx) if i is not None]] = scored
    return full


def _known(rows: np.ndarray, pos: int) -> bool:
    return not np.isnan(rows[pos, 0]) if rows.shape[1] else False


def evaluate_policy(scorer: PolicyScorer, policy: Policy, train: Interactions, test: pd.DataFrame,
                    k: int = 10, signals: OfflineSignals | None = None,
                    infos: Mapping[str, ItemInfo] | None = None,
                    rows_cache: RowsCache | None = None) -> dict[str, Any]:
    """Full-ranking metrics of the policy's served lists for the test users known to ``train``
    (``rows_cache``: see ``policy_lists``)."""
    users = sorted(set(test["user_id"].astype(str)) & set(train.user_index))
    signals = signals or OfflineSignals(train)
    infos = item_infos(train) if infos is None else infos
    lists = policy_lists(scorer, policy, signals, users, k, infos, rows_cache=rows_cache)
    return list_metrics({u: [i for i, _ in hl.items] for u, hl in lists.items()}, train, test, k)
