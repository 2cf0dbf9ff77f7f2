"""Forward-decayed trending scores, as kept in ``pop:trend`` by the Redis script.

An event of strength ``s`` at time ``t`` adds ``s * 2 ** ((t - epoch) / half_life)``; the
decayed score at any time ``now`` is the stored score times ``2 ** (-(now - epoch) / half_life)``,
one factor common to every item, so ranking by the stored score is ranking by decayed
popularity. Late or out-of-order events need no special case: each adds its own weight.

>>> meta = {"epoch": 1000.0, "hl": 100.0}
>>> stored = event_weight(1.0, 1100.0, meta) + event_weight(1.0, 1000.0, meta)   # any order
>>> decayed(stored, now=1100.0, meta=meta)
1.5
"""
from __future__ import annotations


def event_weight(strength: float, ts: float, meta: dict[str, float]) -> float:
    return strength * 2.0 ** ((ts - meta["epoch"]) / meta["hl"])


def decayed(stored: float, now: float, meta: dict[str, float]) -> float:
    """The exponentially decayed score at ``now`` of a stored forward-decayed score."""
    return stored * 2.0 ** (-(now - meta["epoch"]) / meta["hl"])
