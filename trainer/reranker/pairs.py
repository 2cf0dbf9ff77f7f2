"""Training pairs of the reranker, from feedback on served lists.

A pair is ``(query, item text, label)``: ``like`` is 1.0 and ``dislike`` 0.0; with
``implicit`` a ``click`` is 1.0 and a skip (an impression shown above a clicked or liked
item of the same list, with no feedback of its own) 0.0. Each pair is tied to the list that
showed the item through ``context.request_id``; its query is the feedback's
``context.query``, else that of the list's impressions (searches log it), else — a home or
similar list — the text of the user's items just before the list (``ranking.rerank.query_from_items``,
as serving builds it).

The frame read here is the snapshot's (``Snapshot.frame()``: the event columns plus the
context columns ``request_id``, ``position``, ``query``...), or the same columns from a
JSON-lines file of events (``read_events``).

>>> import pandas as pd
>>> ev = pd.DataFrame({"type": ["impression", "like", "dislike"], "user_id": ["u"] * 3,
...                    "item_id": ["a", "a", "b"], "timestamp": [1.0, 2.0, 3.0],
...                    "request_id": ["r1"] * 3, "position": [0, None, None], "query": ["wings", None, None]})
>>> p = build_pairs(ev, {"a": "wing lift", "b": "heat"})
>>> p[["query", "item_id", "label", "position"]].values.tolist()
[['wings', 'a', 1.0, 0.0], ['wings', 'b', 0.0, nan]]
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ranking.rerank import query_from_items
from schemas.errors import InvalidDataset, InvalidEvent

log = logging.getLogger(__name__)

EXPLICIT = {"like": 1.0, "dislike": 0.0}
PAIR_COLUMNS = ["query", "item_id", "text", "label", "list_id", "position", "user_id", "timestamp", "kind"]
POSITIVE_HISTORY = {"view", "click", "download", "rate", "enroll", "purchase", "like"}


def _col(events: pd.DataFrame, name: str) -> pd.Series:
    return events[name] if name in events.columns else pd.Series([None] * len(events), index=events.index)


def read_events(path: Path) -> pd.DataFrame:
    """A JSON-lines file of events as a frame with the snapshot's columns (bad lines are
    skipped and counted in the log)."""
    from schemas.events import parse_event
    from trainer.data.rows import flatten

    rows, bad = [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rows.append(flatten("interactions", parse_event(line)))
            except InvalidEvent:
                bad += 1
    if bad:
        log.warning("%s: %d lines are not events and were skipped", path, bad)
    if not rows:
        raise InvalidDataset(f"{path}: no events")
    return pd.DataFrame(rows).sort_values("timestamp", kind="stable").reset_index(drop=True)


def _history_queries(events: pd.DataFrame, need: pd.DataFrame, texts: Mapping[str, str]) -> list[str]:
    """For each row of ``need`` (user_id, timestamp), the text of the user's last items before it."""
    hist = events[events["type"].isin(POSITIVE_HISTORY)]
    by_user = {u: g.sort_values("timestamp") for u, g in hist.groupby("user_id")}
    out = []
    for user, ts in zip(need["user_id"], need["timestamp"]):
        g = by_user.get(user)
        if g is None:
            out.append("")
            continue
        before = g[g["timestamp"] < ts]["item_id"].tolist()[::-1]
        out.append(query_from_items([texts.get(i) for i in dict.fromkeys(before)]))
    return out


def build_pairs(events: pd.DataFrame, texts: Mapping[str, str], implicit: bool = False) -> pd.DataFrame:
    """Labelled pairs (``PAIR_COLUMNS``) from an event frame; items without text and lists
    without a query are dropped (counted in the log). One pair per (list, item): the last
    feedback wins."""
    ev = events.copy()
    ev["request_id"] = _col(ev, "request_id")
    ev["query"] = _col(ev, "query")
    ev["position"] = pd.to_numeric(_col(ev, "position"), errors="coerce")
    # a list's id: the request that served it; feedback given outside any list stands alone
    ev["list_id"] = ev["request_id"].where(ev["request_id"].notna(), "q:" + ev["query"].fillna("").astype(str))
    shown = ev[ev["type"] == "impression"]
    list_query = shown.dropna(subset=["query"]).groupby("list_id")["query"].first()
    item_pos = shown.dropna(subset=["position"]).groupby(["list_id", "item_id"])["position"].min()

    kinds = dict(EXPLICIT)
    if implicit:
        kinds["click"] = 1.0
    fb = ev[ev["type"].isin(kinds)].copy()
    fb["label"] = fb["type"].map(kinds).astype(float)
    fb["kind"] = fb["type"]
    # the last feedback on an item of a list wins (a like taken back by a dislike is a dislike)
    fb = fb.sort_values("timestamp", kind="stable").drop_duplicates(["list_id", "item_id"], keep="last")
    if implicit and len(shown):
        fb = pd.concat([fb, _skips(shown, fb, item_pos)], ignore_index=True)
    if fb.empty:
        return pd.DataFrame(columns=PAIR_COLUMNS)
    fb["query"] = fb["query"].where(fb["query"].notna(), fb["list_id"].map(list_query))
    missing = fb["query"].isna() | (fb["query"].astype(str).str.strip() == "")
    if missing.any():
        fb.loc[missing, "query"] = _history_queries(ev, fb.loc[missing], texts)
    pos = [item_pos.get((lid, it), np.nan) for lid, it in zip(fb["list_id"], fb["item_id"])]
    fb["position"] = fb["position"].where(fb["position"].notna(), pd.Series(pos, index=fb.index))
    fb["text"] = fb["item_id"].map(lambda i: texts.get(str(i)))
    no_text, no_query = fb["text"].isna(), fb["query"].astype(str).str.strip() == ""
    if no_text.any() or no_query.any():
        log.info("pairs dropped: %d items without text, %d lists without a query", int(no_text.sum()),
                 int((no_query & ~no_text).sum()))
    fb = fb[~no_text & ~no_query]
    return fb[PAIR_COLUMNS].reset_index(drop=True)


def _skips(shown: pd.DataFrame, fb: pd.DataFrame, item_pos: pd.Series) -> pd.DataFrame:
    """Impressions above the deepest positive of their list that got no feedback: skipped."""
    pos_fb = fb[fb["label"] > 0]
    deepest = {lid: max((item_pos.get((lid, it), -1) for it in g["item_id"]), default=-1)
               for lid, g in pos_fb.groupby("list_id")}
    had = set(zip(fb["list_id"], fb["item_id"]))
    s = shown[shown["list_id"].isin(deepest)].copy()
    s = s[[(p < deepest[lid]) and (lid, it) not in had for lid, it, p in zip(s["list_id"], s["item_id"], s["position"])]]
    s = s.drop_duplicates(["list_id", "item_id"])
    s["label"], s["kind"] = 0.0, "skip"
    return s


def split_by_query(pairs: pd.DataFrame, val_ratio: float = 0.2, seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and validation pairs, no query on both sides (queries compared case-folded).

    At least one query goes to each side when there are two or more.

    >>> p = pd.DataFrame({"query": list("abcdeABCDE"), "label": [1.0] * 10})
    >>> tr, va = split_by_query(p, 0.2, seed=1)
    >>> len(va), set(tr["query"].str.lower()) & set(va["query"].str.lower())
    (2, set())
    """
    if not 0.0 < val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in (0, 1), got {val_ratio}")
    key = pairs["query"].astype(str).str.strip().str.lower()
    queries = np.array(sorted(key.unique()))
    if len(queries) < 2:
        raise InvalidDataset(f"the feedback covers {len(queries)} query: a split by query needs at least 2")
    rng = np.random.default_rng(seed)
    rng.shuffle(queries)
    n_val = min(len(queries) - 1, max(1, int(round(len(queries) * val_ratio))))
    val = set(queries[:n_val])
    mask = key.isin(val)
    return pairs[~mask].reset_index(drop=True), pairs[mask].reset_index(drop=True)


def check_enough(pairs: pd.DataFrame, minimum: int) -> None:
    """Refuse to train on fewer than ``minimum`` labelled pairs, saying how to get there."""
    n = len(pairs)
    if n < minimum:
        raise InvalidDataset(
            f"not enough feedback to fine-tune the reranker: {n} labelled pairs (likes/dislikes tied to a "
            f"served list with a query and item text), at least {minimum} needed. Collect more feedback "
            f"(POST /api/v1/events with type like/dislike and context.request_id of the list), or pass "
            f"--allow-small to train on as few as the small minimum")


def balance_warning(pairs: pd.DataFrame, threshold: float = 0.2) -> str | None:
    """A warning when one label is under ``threshold`` of the pairs.

    >>> balance_warning(pd.DataFrame({"label": [1.0] * 9 + [0.0]}))
    'unbalanced labels: 9 positive, 1 negative (10% negative); the classifier may learn to say like to everything'
    >>> balance_warning(pd.DataFrame({"label": [1.0, 0.0]})) is None
    True
    """
    n = len(pairs)
    if n == 0:
        return None
    pos = int((pairs["label"] > 0.5).sum())
    neg = n - pos
    share = min(pos, neg) / n
    if share >= threshold:
        return None
    low, what = ("negative", "like") if neg < pos else ("positive", "dislike")
    return (f"unbalanced labels: {pos} positive, {neg} negative ({share:.0%} {low}); "
            f"the classifier may learn to say {what} to everything")
