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
        ev = events.copy(deep=False)  # copy-on-write: the columns set here leave the caller's frame alone
        ev["user_id"] = ev["user_id"].astype(str)
        ev["item_id"] = ev["item_id"].astype(str)
        if "type" not in ev:
            ev["type"] = "rate" if "value" in ev else "view"
        if "strength" not in ev:
            ev["strength"] = ev["type"].map(strengths).fillna(1.0).astype("float32")
        # codes per row, each distinct id looked up once (no Python object per event)
        ucodes, users = pd.factorize(ev["user_id"])
        icodes, items = pd.factorize(ev["item_id"])
        if user_ids is None:
            user_ids = np.array(sorted(users), dtype=object)
        if item_ids is None:
            extra = [] if item_meta is None else list(item_meta.index.astype(str))
            item_ids = np.array(sorted(set(items) | set(extra)), dtype=object)
        ev["uidx"] = _positions(ucodes, users, user_ids)
        ev["iidx"] = _positions(icodes, items, item_ids)
        known = (ev["uidx"].to_numpy() >= 0) & (ev["iidx"].to_numpy() >= 0)
        ev = (ev if known.all() else ev[known]).reset_index(drop=True)
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


def _positions(codes: np.ndarray, uniques, ids: np.ndarray) -> np.ndarray:
    """Each row's position in ``ids`` from its factorized code (-1: not in ``ids``, or no id).

    >>> _positions(np.array([0, 1, -1, 0]), ["b", "z"], np.array(["a", "b"], dtype=object)).tolist()
    [1, -1, -1, 1]
    """
    where = pd.Index(ids).get_indexer(pd.Index(uniques))
    return np.append(where, -1)[codes]
