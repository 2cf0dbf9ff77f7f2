"""Offline pair mining: the batch twin of the stream's basket pairs.

The stream agents keep, per segment and for ``ANY``, a zset ``pairs:{item}`` of the items
bought with it (each basket adds 1 to A→B and B→A) and the reverse index ``pairs_rev``.
``mine_pairs`` computes the same counts from an events frame, with a minimum number of
occurrences, an optional symmetrisation and a top-k per (segment, item); ``save_pairs`` /
``load_pairs`` put them in a run directory as ``pairs.parquet``.

>>> import pandas as pd
>>> ev = pd.DataFrame({"basket_id": ["b1", "b1", "b2", "b2", "b3"],
...                    "item_id": ["milk", "bread", "milk", "bread", "milk"]})
>>> p = mine_pairs(ev, min_count=2)
>>> p.forward["ANY"]["milk"], p.reverse["ANY"]["milk"]
({'bread': 2.0}, {'bread': 2.0})
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ANY = "ANY"
PAIRS_FILE = "pairs.parquet"
COLUMNS = ["segment", "item", "other", "score"]

Table = dict[str, dict[str, dict[str, float]]]  # segment -> item -> other -> score


@dataclass
class Pairs:
    """Tidy frame (``segment, item, other, score``: A→B) plus the lookups built from it."""

    frame: pd.DataFrame
    forward: Table = field(default_factory=dict)
    reverse: Table = field(default_factory=dict)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, top_k: int | None = None) -> "Pairs":
        frame = frame[COLUMNS].reset_index(drop=True)
        return cls(frame, _table(frame, "item", "other", top_k), _table(frame, "other", "item", top_k))

    @property
    def segments(self) -> list[str]:
        return sorted(s for s in self.forward if s != ANY)


def _table(frame: pd.DataFrame, src: str, dst: str, top_k: int | None) -> Table:
    out: Table = {}
    ordered = frame.sort_values([src, "score", dst], ascending=[True, False, True], kind="stable")
    if top_k:
        ordered = ordered.groupby(["segment", src], sort=False).head(top_k)
    for seg, a, b, s in zip(ordered["segment"], ordered[src], ordered[dst], ordered["score"]):
        out.setdefault(seg, {}).setdefault(a, {})[b] = float(s)
    return out


def mine_pairs(
    events: pd.DataFrame,
    min_count: int = 1,
    symmetric: bool = True,
    top_k: int = 100,
    basket_col: str = "basket_id",
    segment_col: str | None = "segment",
    time_col: str = "timestamp",
    max_basket_items: int = 50,
) -> Pairs:
    """Co-occurrence counts of items bought in the same basket, for ``ANY`` and per segment.

    ``symmetric=False`` keeps only A→B where A was bought no later than B (by ``time_col``;
    without timestamps every pair counts both ways). ``symmetric=True`` (the stream's basket
    rule) counts B→A for every A→B. The reverse index (``Pairs.reverse``) is built either way.
    Baskets above ``max_basket_items`` are cut, as the stream does.
    """
    if basket_col not in events or events.empty:
        return Pairs.from_frame(pd.DataFrame(columns=COLUMNS))
    cols = {basket_col: "b", "item_id": "item"}
    has_seg = bool(segment_col) and segment_col in events
    has_ts = time_col in events
    if has_seg:
        cols[segment_col] = "seg"
    if has_ts:
        cols[time_col] = "t"
    ev = events[list(cols)].rename(columns=cols).dropna(subset=["b", "item"])
    ev["item"] = ev["item"].astype(str)
    if has_ts:
        ev["t"] = pd.to_numeric(pd.to_datetime(ev["t"], utc=True, errors="coerce"), errors="coerce")
    else:
        ev["t"] = 0
    ev = ev.sort_values("t", kind="stable").drop_duplicates(["b", "item"])
    ev = ev.groupby("b", sort=False).head(max_basket_items)
    seg = ev.groupby("b")["seg"].first() if has_seg else None
    left = ev[["b", "item", "t"]]
    joined = left.merge(left, on="b", suffixes=("", "_o"))
    joined = joined[joined["item"] != joined["item_o"]]
    if not symmetric:
        joined = joined[joined["t"] <= joined["t_o"]]
    frames = [joined.assign(segment=ANY)]
    if seg is not None:
        js = joined.assign(segment=joined["b"].map(seg))
        frames.append(js[js["segment"].notna() & (js["segment"].astype(str) != "")])
    allp = pd.concat(frames, ignore_index=True)
    allp["segment"] = allp["segment"].astype(str)
    counts = allp.groupby(["segment", "item", "item_o"]).size().rename("score").reset_index()
    counts = counts.rename(columns={"item_o": "other"})
    counts = counts[counts["score"] >= min_count]
    counts = counts.sort_values(["segment", "item", "score", "other"], ascending=[True, True, False, True])
    counts = counts.groupby(["segment", "item"], sort=False).head(top_k)
    counts["score"] = counts["score"].astype(float)
    return Pairs.from_frame(counts)


def save_pairs(pairs: Pairs, run_dir: Path) -> Path:
    path = Path(run_dir) / PAIRS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    pairs.frame.to_parquet(path, index=False)
    return path


def load_pairs(run_dir: Path) -> Pairs | None:
    """The pairs a run carries, or None when it has none."""
    path = Path(run_dir) / PAIRS_FILE
    if not path.exists():
        return None
    return Pairs.from_frame(pd.read_parquet(path))
