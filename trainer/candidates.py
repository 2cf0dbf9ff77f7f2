"""The candidate stage of a policy: each of its models' scores for one user.

Serving (``inference``) and the offline policy evaluation both call ``PolicyScorer.parts``,
so a served list and an evaluated list start from the same scores.

No candidate the model ranks first is lost: a user the model knows is scored over the whole
catalogue with the model's own score (``score_matrix``), not through an approximate index
whose geometry is not the model's (FAISS over NCF's concatenated GMF‖MLP vectors, say, is
not NCF's score). Up to ``Policy.full_scoring_max_items`` items the whole row goes to the
blend; above that, the row's exact top ``candidates + |seen|`` plus the real-time candidates
(co-occurrence pairs of recent items, trending, segment popularity) do.
A user the model does not know is scored by cosine to the mean embedding of their recent
items, where the model has item embeddings; otherwise by co-occurrence with recent items.
``candidate_recall`` measures what the stage keeps of the model's full ranking.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ranking.home import ModelScores
from ranking.policy import Policy
from ranking.reasons import Provenance
from ranking.signals import UserSignals

#: Models whose embeddings answer "similar items" and MMR's similarity, best first.
SIMILARITY_PREFERENCE = ("two_tower", "ncf", "lightfm", "content", "multvae")


def similarity_model(embeddings: Mapping[str, np.ndarray]) -> str | None:
    """The model whose item embeddings measure item similarity.

    >>> similarity_model({"lightfm": None, "ease": None}), similarity_model({})
    ('lightfm', None)
    """
    names = [n for n in SIMILARITY_PREFERENCE if n in embeddings]
    names += sorted(n for n in embeddings if n not in names)
    return names[0] if names else None


class PolicyScorer:
    """Scores a run's models for users.

    ``models`` share one item space, ``item_ids`` (the run's list: the same object is
    handed to every ``ModelScores`` so the blend can stay in numpy); ``embeddings`` are the
    run's L2-normalised item embeddings by model name."""

    def __init__(self, models: Mapping[str, Any], item_ids: Sequence[str], embeddings: Mapping[str, np.ndarray]):
        self.models = dict(models)
        self.item_ids = item_ids
        self.item_index = {it: i for i, it in enumerate(item_ids)}
        self.embeddings = dict(embeddings)
        self.sim_model = similarity_model(self.embeddings)

    def user_index(self, model: str, user: str) -> int | None:
        data = self.models[model].data
        return None if data is None else data.user_index.get(user)

    def rows(self, model: str, users: np.ndarray) -> np.ndarray:
        """Full score rows of users (by the model's index), for batches offline."""
        return self.models[model].score_matrix(np.asarray(users))

    def vectors(self, items: Sequence[str]) -> dict[str, np.ndarray]:
        """Item vectors for MMR's similarity (empty when the run has no embeddings)."""
        if self.sim_model is None:
            return {}
        emb = self.embeddings[self.sim_model]
        return {i: emb[self.item_index[i]] for i in items if i in self.item_index}

    def parts(self, policy: Policy, signals: UserSignals,
              rows: Mapping[str, np.ndarray] | None = None) -> dict[str, ModelScores | None]:
        """``ModelScores`` of each of the policy's models for this user (None: it cannot score them).

        ``rows``: precomputed full score rows by model (offline batches); computed here otherwise."""
        out: dict[str, ModelScores | None] = {}
        for name in policy.models:
            if name not in self.models:
                out[name] = None
                continue
            row = rows.get(name) if rows else None
            out[name] = self.model_scores(name, policy, signals, row)
        return out

    def model_scores(self, name: str, policy: Policy, signals: UserSignals,
                     row: np.ndarray | None = None) -> ModelScores | None:
        prov = _realtime_provenance(signals)
        uidx = self.user_index(name, signals.user_id)
        if row is None and uidx is not None:
            row = self.rows(name, np.array([uidx]))[0]
        if row is None:
            row = self._cold_row(name, signals, prov)
        if row is None:
            return _cooccurrence(signals, prov)
        if len(self.item_ids) <= policy.full_scoring_max_items:
            return ModelScores(self.item_ids, row, prov, full=True)
        n = min(len(row), policy.candidates + len(signals.seen))
        top = np.argpartition(-row, n - 1)[:n] if n < len(row) else np.arange(len(row))
        pos = dict.fromkeys(top.tolist())
        for item in _realtime_items(signals):
            p = self.item_index.get(item)
            if p is not None:
                pos.setdefault(p)
        idx = np.fromiter(pos, dtype=np.int64)
        return ModelScores([self.item_ids[p] for p in idx], row[idx], prov)

    def _cold_row(self, name: str, signals: UserSignals, prov: Provenance) -> np.ndarray | None:
        """A user the model does not know: cosine of each item to their recent items' mean embedding."""
        emb = self.embeddings.get(name)
        recent = [self.item_index[i] for i in signals.recent if i in self.item_index]
        if emb is None or not recent:
            return None
        query = emb[recent].mean(axis=0)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        row = emb @ query
        top = np.argsort(-row)[:50]
        best_src = np.argmax(emb[top] @ emb[recent].T, axis=1)
        for p, s in zip(top, best_src):
            prov.similar_to.setdefault(str(self.item_ids[p]), str(self.item_ids[recent[s]]))
        return row


def _realtime_items(signals: UserSignals) -> list[str]:
    items = [item for rows in signals.pairs.values() for item, _ in rows]
    items += [item for item, _ in signals.trending[:20]]
    items += [item for item, _ in signals.pop_segment[:20]]
    return items


def _realtime_provenance(signals: UserSignals) -> Provenance:
    prov = Provenance()
    for src, rows in signals.pairs.items():
        for item, _ in rows:
            prov.viewed_with.setdefault(item, src)
    prov.trending = {item for item, _ in signals.trending[:20]}
    return prov


def _cooccurrence(signals: UserSignals, prov: Provenance) -> ModelScores | None:
    """No model score at all: the items that co-occur with the user's recent ones, by count."""
    best: dict[str, float] = {}
    for rows in signals.pairs.values():
        for item, s in rows:
            best[item] = max(best.get(item, float("-inf")), float(s))
    if not best:
        return None
    items = sorted(best, key=lambda i: -best[i])
    return ModelScores(items, np.array([best[i] for i in items]), prov)


def candidate_recall(scorer: PolicyScorer, policy: Policy, signals: list[UserSignals], k: int = 10) -> float | None:
    """Share of each model's full-ranking top-k (unseen items) that the candidate stage keeps,
    averaged over users and the policy's models; None when no user is known to any model.

    With whole-catalogue scoring it is 1.0 by construction; above ``full_scoring_max_items``
    it measures the exact top-n plus real-time sources."""
    if len(scorer.item_ids) <= policy.full_scoring_max_items:  # every item is a candidate: no row to score
        whole = any(_has_unseen(scorer, name, sig) for sig in signals for name in policy.models)
        return 1.0 if whole else None
    got = []
    for sig in signals:
        for name in policy.models:
            if name not in scorer.models:
                continue
            uidx = scorer.user_index(name, sig.user_id)
            if uidx is None:
                continue
            row = scorer.rows(name, np.array([uidx]))[0].astype(np.float64)
            part = scorer.model_scores(name, policy, sig, row)
            mask = np.array([i in sig.seen for i in scorer.item_ids])
            ranked = np.where(mask, -np.inf, row)
            want = {scorer.item_ids[p] for p in np.argsort(-ranked)[:k] if np.isfinite(ranked[p])}
            if want:
                got.append(len(want & set(part.items)) / len(want))
    return float(np.mean(got)) if got else None


def _has_unseen(scorer: PolicyScorer, name: str, sig: UserSignals) -> bool:
    """Whether ``name`` knows the user and the user has an item left to rank (``candidate_recall``
    counts such a user)."""
    if name not in scorer.models or scorer.user_index(name, sig.user_id) is None:
        return False
    return sum(1 for i in sig.seen if i in scorer.item_index) < len(scorer.item_ids)
