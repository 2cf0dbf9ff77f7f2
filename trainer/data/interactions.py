"""The in-memory dataset every model trains on: an implicit user×item matrix plus id maps.

Built from an event frame (columns ``user_id, item_id, timestamp, type, value``) by
``Interactions.from_events``; every source (replayed topic snapshot, CSV, MovieLens)
ends up here, so models never see where the data came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from schemas.settings import DEFAULT_STRENGTHS


@dataclass
class Interactions:
    user_ids: np.ndarray  # index -> external user id (str)
    item_ids: np.ndarray  # index -> external item id (str)
    matrix: sp.csr_matrix  # users × items, summed implicit strength (float32)
    events: pd.DataFrame = field(repr=False)  # the rows the matrix came from, with uidx/iidx
    item_meta: pd.DataFrame | None = field(default=None, repr=False)  # index item_id
    user_meta: pd.DataFrame | None = field(default=None, repr=False)  # index user_id

    def __post_init__(self) -> None:
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        strengths: dict[str, float] | None = None,
        item_meta: pd.DataFrame | None = None,
        user_meta: pd.DataFrame | None = None,
        item_ids: np.ndarray | None = None,
        user_ids: np.ndarray | None = None,
    ) -> "Interactions":
        """Aggregate events into the matrix. ``item_ids``/``user_ids`` fix the index space
        (so a test split shares the train split's ids); unknown ids are then dropped."""
        strengths = strengths or DEFAULT_STRENGTHS
        ev = events.copy()
        ev["user_id"] = ev["user_id"].astype(str)
        ev["item_id"] = ev["item_id"].astype(str)
        if "type" not in ev:
            ev["type"] = "rate" if "value" in ev else "view"
        if "strength" not in ev:
            ev["strength"] = ev["type"].map(strengths).fillna(1.0).astype("float32")
        if user_ids is None:
            user_ids = np.array(sorted(ev["user_id"].unique()), dtype=object)
        if item_ids is None:
            extra = [] if item_meta is None else list(item_meta.index.astype(str))
            item_ids = np.array(sorted(set(ev["item_id"].unique()) | set(extra)), dtype=object)
        uix = pd.Index(user_ids)
        iix = pd.Index(item_ids)
        ev["uidx"] = uix.get_indexer(ev["user_id"])
        ev["iidx"] = iix.get_indexer(ev["item_id"])
        ev = ev[(ev["uidx"] >= 0) & (ev["iidx"] >= 0)].reset_index(drop=True)
        m = sp.csr_matrix(
            (ev["strength"].to_numpy(np.float32), (ev["uidx"].to_numpy(), ev["iidx"].to_numpy())),
            shape=(len(user_ids), len(item_ids)),
            dtype=np.float32,
        )
        m.sum_duplicates()
        return cls(np.asarray(user_ids, dtype=object), np.asarray(item_ids, dtype=object), m, ev, item_meta, user_meta)

    def seen(self) -> sp.csr_matrix:
        """Binary matrix of what each user interacted with."""
        b = self.matrix.copy()
        b.data = np.ones_like(b.data)
        return b
