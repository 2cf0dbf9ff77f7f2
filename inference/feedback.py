"""The feedback loop's API side (docs/feedback.md): a feedback request becomes events, and the
stream's per-day per-arm counters (``Keys.stats_day``) become the online metrics.

The counters are written by the interactions script (streams/lua/apply_interactions.lua) as
``{arm}:{counter}``; this module only reads and divides.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import orjson

from inference.stats import days_back
from inference.store import RedisStore
from schemas.api import FeedbackRequest
from schemas.events import Interaction, parse_event
from schemas.keys import Keys

# the dwell histogram's buckets (upper bounds in ms; the script's DWELL table), None: no bound
DWELL_BUCKETS: tuple[tuple[str, float, float | None], ...] = (
    ("lt1s", 0, 1000), ("lt3s", 1000, 3000), ("lt10s", 3000, 10_000), ("lt30s", 10_000, 30_000),
    ("lt60s", 30_000, 60_000), ("ge60s", 60_000, None),
)


def feedback_events(req: FeedbackRequest) -> list[Interaction]:
    """The events one feedback request stands for; raises ``InvalidEvent`` with a reason.

    - ``rating`` -> ``rate`` (value = rating), with ``comment`` and ``aspects`` in its context;
    - ``interaction_happened`` true -> ``click`` (the recommendation was used), false -> ``dislike``
      (it was shown and turned down); the comment and aspects go on it when there is no rating;
    - every event carries ``request_id`` (and ``strategy`` when given) in its context.

    >>> [(e.type.value, e.value) for e in feedback_events(FeedbackRequest(
    ...     user_id="u1", item_id="i1", rating=4, interaction_happened=True, request_id="r1"))]
    [('rate', 4.0), ('click', None)]
    """
    from schemas.errors import InvalidEvent

    if req.rating is None and req.interaction_happened is None:
        raise InvalidEvent("nothing to record: give a rating (1-5) and/or interaction_happened "
                           "(comment and aspects go with one of them)")
    base = {"request_id": req.request_id, "strategy": req.strategy}
    notes = {"comment": req.comment, "aspects": req.aspects}
    docs = []
    if req.rating is not None:
        docs.append({"type": "rate", "value": req.rating, "context": {**base, **notes}})
    if req.interaction_happened is not None:
        typ = "click" if req.interaction_happened else "dislike"
        docs.append({"type": typ, "context": {**base, **({} if req.rating is not None else notes)}})
    events = []
    for doc in docs:
        doc["context"] = {k: v for k, v in doc["context"].items() if v is not None}
        events.append(parse_event({"user_id": req.user_id, "item_id": req.item_id, **doc}))
    return events


# ----------------------------------------------------------------------------- metrics
def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def dwell_p50(hist: dict[str, float]) -> float | None:
    """The median dwell (ms) from the coarse histogram: linear within the median's bucket; the
    open last bucket answers its lower bound (60 s).

    >>> dwell_p50({"lt1s": 1, "lt3s": 2, "lt10s": 1})
    2000.0
    >>> dwell_p50({"ge60s": 3}), dwell_p50({})
    (60000.0, None)
    """
    total = sum(hist.get(name, 0) for name, _, _ in DWELL_BUCKETS)
    if not total:
        return None
    half, below = total / 2, 0.0
    for name, low, high in DWELL_BUCKETS:
        n = hist.get(name, 0)
        if n and below + n >= half:
            if high is None:
                return float(low)
            return round(low + (high - low) * (half - below) / n, 1)
        below += n
    return None


@dataclass
class ArmFeedback:
    """Counters of one arm, summed over some days (``{arm}:{counter}`` fields)."""

    c: Counter = field(default_factory=Counter)

    def add(self, counter: str, value: float) -> None:
        self.c[counter] += value

    def metrics(self) -> dict:
        c = self.c
        imps = c["impressions"]
        aspects: dict[str, dict] = {}
        for name, v in c.items():
            if name.startswith("aspect.") and name.endswith(".count"):
                aspect = name[len("aspect."):-len(".count")]
                aspects[aspect] = {"mean": _ratio(c[f"aspect.{aspect}.sum"], v), "count": int(v)}
        hist = {b: c[f"dwell.{b}"] for b, _, _ in DWELL_BUCKETS}
        return {
            "impressions": int(imps), "clicks": int(c["clicks"]), "ctr": _ratio(c["clicks"], imps),
            "positive": int(c["positive"]), "positive_rate": _ratio(c["positive"], imps),
            "conversions": int(c["conversions"]), "conversion_rate": _ratio(c["conversions"], imps),
            "rating_mean": _ratio(c["rating_sum"], c["rating_count"]), "rating_count": int(c["rating_count"]),
            "rating_histogram": {str(n): int(c[f"rating.{n}"]) for n in range(1, 6)},
            "aspects": dict(sorted(aspects.items())),
            "likes": int(c["likes"]), "dislikes": int(c["dislikes"]),
            "like_ratio": _ratio(c["likes"], c["likes"] + c["dislikes"]),
            "dwell_count": int(c["dwell_count"]), "dwell_mean_ms": _ratio(c["dwell_sum_ms"], c["dwell_count"]),
            "dwell_p50_ms": dwell_p50(hist), "dwell_histogram": {b: int(n) for b, n in hist.items()},
            "comments": int(c["comments"]),
        }


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def per_arm(raw: dict, arm: str | None = None) -> dict[str, ArmFeedback]:
    """One day hash's ``{arm}:{counter}`` fields by arm (``type:*`` left out).

    >>> per_arm({b"hybrid:likes": b"2", "type:view": "9", "hybrid:rating_sum": "7.5"})["hybrid"].c
    Counter({'rating_sum': 7.5, 'likes': 2.0})
    """
    out: dict[str, ArmFeedback] = {}
    for f, v in (raw or {}).items():
        name = _s(f)
        a, _, counter = name.rpartition(":")
        if not a or a == "type" or (arm is not None and a != arm):
            continue
        out.setdefault(a, ArmFeedback()).add(counter, float(v))
    return out


class FeedbackReader:
    def __init__(self, store: RedisStore, keys: Keys):
        self.store = store
        self.keys = keys

    async def stats(self, days: int, arm: str | None = None) -> dict:
        k = self.keys
        day_list = days_back(days)
        raws = await self.store.pipeline(lambda p: [p.hgetall(k.stats_day(d)) for d in day_list])
        totals: dict[str, ArmFeedback] = {}
        daily = []
        for day, raw in zip(day_list, raws):
            arms = per_arm(raw, arm)
            for a, got in arms.items():
                totals.setdefault(a, ArmFeedback()).c.update(got.c)
            daily.append({"day": day, "arms": {a: got.metrics() for a, got in sorted(arms.items())}})
        overall = ArmFeedback()
        for got in totals.values():
            overall.c.update(got.c)
        return {"days": days, "arm": arm, "arms": {a: got.metrics() for a, got in sorted(totals.items())},
                "overall": overall.metrics(), "daily": daily}

    async def comments(self, days: int, min_rating: float | None, max_rating: float | None, limit: int,
                       kept: int) -> list[dict]:
        """The newest comments first, of the last ``days`` days, within the rating bounds (a bound
        leaves out comments without a rating)."""
        raw = await self.store.call(lambda c: c.lrange(self.keys.comments, 0, kept - 1))
        since = days_back(days)[-1]
        out = []
        for one in raw or ():
            try:
                doc = orjson.loads(one)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict) or str(doc.get("day", "")) < since:
                continue
            rating = doc.get("rating")
            if (min_rating is not None or max_rating is not None) and not isinstance(rating, (int, float)):
                continue
            if (min_rating is not None and rating < min_rating) or (max_rating is not None and rating > max_rating):
                continue
            out.append(doc)
            if len(out) >= limit:
                break
        return out
