"""From an event frame to the ``Interactions`` a model trains on, the same way for every source.

Steps: implicit strength per event type (``Settings.event_strengths``); events that carry no
signal (strength 0, e.g. impressions) dropped; a user–item pair whose strengths sum to zero
or less (a dislike outweighing the rest) is not a positive and is dropped; then the filters;
then, when ``include_cold_items``, every catalog item without events gets an index too (so
content and two-tower models can recommend it; ``max_items`` caps only items with events).
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from schemas.errors import InvalidDataset
from trainer.data.filters import Filters, apply_filters
from trainer.data.interactions import Interactions

log = logging.getLogger(__name__)


def with_strength(events: pd.DataFrame, strengths: dict[str, float]) -> pd.DataFrame:
    """Add ``strength`` per event; unknown types count 1 (an interaction of some kind).

    >>> ev = pd.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "b"], "type": ["click", "odd"]})
    >>> with_strength(ev, {"click": 2.0}).strength.tolist()
    [2.0, 1.0]
    """
    out = events.copy(deep=False)  # copy-on-write: adding a column leaves ``events`` alone
    out["strength"] = out["type"].map(strengths).fillna(1.0).astype("float32")
    return out


def positive_events(events: pd.DataFrame) -> pd.DataFrame:
    """Drop zero-strength events and every event of a pair whose net strength is not positive.

    >>> ev = pd.DataFrame({"user_id": list("uuuv"), "item_id": list("aabb"), "strength": [1.0, -2.0, 0.0, 3.0]})
    >>> positive_events(ev)[["user_id", "item_id"]].values.tolist()
    [['v', 'b']]
    """
    ev = events[events["strength"] != 0]
    net = ev.groupby(["user_id", "item_id"], sort=False)["strength"].transform("sum")
    return ev[net > 0].reset_index(drop=True)


def build_interactions(
    events: pd.DataFrame,
    strengths: dict[str, float],
    filters: Filters = Filters(),
    item_meta: pd.DataFrame | None = None,
    user_meta: pd.DataFrame | None = None,
    include_cold_items: bool = False,
) -> Interactions:
    """The training dataset. Raises ``InvalidDataset`` when nothing survives."""
    ev = positive_events(with_strength(events, strengths))
    ev = apply_filters(ev, filters) if filters.active else ev
    if ev.empty:
        raise InvalidDataset(
            f"no interactions left to train on ({len(events)} events in, filters {filters}); "
            "lower min_user_interactions / min_item_interactions or add data"
        )
    meta = item_meta
    if meta is not None and not include_cold_items:
        # Interactions.from_events indexes every item of item_meta: keep only items with events
        meta = meta[meta.index.astype(str).isin(set(ev["item_id"]))]
    data = Interactions.from_events(ev, strengths=strengths, item_meta=meta, user_meta=user_meta)
    log.info("dataset: %d users × %d items, %d events (%d in)", data.n_users, data.n_items, len(ev), len(events))
    return data


def describe(data: Interactions) -> dict:
    """A small summary for ``params.json`` and logs."""
    nnz = int(data.matrix.nnz)
    return {
        "users": int(data.n_users),
        "items": int(data.n_items),
        "events": int(len(data.events)),
        "pairs": nnz,
        "density": float(nnz / max(1, data.n_users * data.n_items)),
        "cold_items": int(np.sum(np.diff(data.matrix.tocsc().indptr) == 0)),
    }
