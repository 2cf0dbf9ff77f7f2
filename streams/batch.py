"""Decoding one consumed batch: valid interactions become compact rows for the Redis script,
bad records become dead letters with a reason. Pure functions, no I/O.

>>> recs = [Record(b'{"event_id": "e1", "type": "click", "user_id": "u1", "item_id": "i1", "ts": 86400}',
...                "interactions", 0, 7),
...         Record(b'{not json', "interactions", 0, 8)]
>>> out = decode_interactions(recs, {"click": 2.0})
>>> out.rows
[['e1', 'click', 'u1', 'i1', 86400.0, 2.0, '', '', '', '1970-01-02', '', '', '']]
>>> out.dead[0].reason.startswith("malformed JSON"), out.dead[0].offset
(True, 8)
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache

import orjson
from pydantic import ValidationError

from schemas.errors import InvalidEvent
from schemas.events import FastEvent, Interaction, describe, fast_event, parse_event

# Row layout shared with streams/lua/apply_interactions.lua; change both together.
# value: the event's value ('' without one); dwell: context.dwell_ms ('' without);
# extra: '' or {"c": comment, "a": {aspect: 1-5}} (explicit feedback, docs/feedback.md).
ROW_FIELDS = ("event_id", "type", "user_id", "item_id", "ts", "strength", "segment", "basket_id", "strategy", "day",
              "value", "dwell", "extra")


@dataclass(frozen=True)
class Record:
    """One consumed Kafka record, reduced to what processing needs."""

    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float | None = None  # the broker timestamp, seconds


@dataclass(frozen=True)
class DeadLetter:
    """A record that failed validation, on its way to ``interactions.dlq``."""

    reason: str
    raw: str
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, record: Record, reason: str) -> "DeadLetter":
        raw = "" if record.value is None else record.value.decode("utf-8", errors="replace")
        return cls(reason, raw, record.topic, record.partition, record.offset)

    def to_json(self) -> bytes:
        return orjson.dumps(
            {"reason": self.reason, "raw": self.raw, "topic": self.topic,
             "partition": self.partition, "offset": self.offset}
        )


@dataclass
class DecodedBatch:
    rows: list[list] = field(default_factory=list)
    sources: list[Record] = field(default_factory=list)  # the record of each row, same order
    types: Counter = field(default_factory=Counter)
    dead: list[DeadLetter] = field(default_factory=list)


@lru_cache(maxsize=4096)
def utc_day(day_number: int) -> str:
    """The ISO date of a day number since the epoch.

    >>> utc_day(20414)
    '2025-11-22'
    """
    return datetime.fromtimestamp(day_number * 86400, tz=timezone.utc).date().isoformat()


def arm_label(strategy: str | None, experiment: str | None, arm: str | None) -> str | None:
    """The arm an event's counters go to: ``{experiment}.{arm}`` when it names both (the label the
    API serves an experiment's impressions under, docs/experiments.md), else its strategy.

    >>> arm_label("hybrid", "ranker", "treatment"), arm_label("hybrid", None, None)
    ('ranker.treatment', 'hybrid')
    """
    return f"{experiment}.{arm}" if experiment and arm else strategy


def to_row(event: Interaction, strengths: dict[str, float]) -> list:
    """The compact row the Redis script reads (see ``ROW_FIELDS``), from a validated model."""
    ctx = event.context
    return _row(event.event_id, event.type.value, event.user_id, event.item_id, event.epoch, strengths,
                ctx.profession, ctx.basket_id, arm_label(ctx.strategy, ctx.experiment, ctx.arm), event.value, ctx.dwell_ms, ctx.comment, ctx.aspects)


def fast_row(event: FastEvent, strengths: dict[str, float]) -> list:
    """The same row from ``schemas.events.fast_event``'s plain values."""
    ctx = event.context
    return _row(event.event_id, event.type, event.user_id, event.item_id, event.epoch, strengths,
                ctx.get("profession"), ctx.get("basket_id"),
                arm_label(ctx.get("strategy"), ctx.get("experiment"), ctx.get("arm")), event.value, ctx.get("dwell_ms"),
                ctx.get("comment"), ctx.get("aspects"))


def _row(event_id: str, typ: str, user: str, item: str, ts: float, strengths: dict[str, float],
         segment: str | None, basket_id: str | None, strategy: str | None, value: float | None,
         dwell_ms: int | None, comment: str | None, aspects: dict[str, int] | None) -> list:
    extra: dict | str = ""
    if comment or aspects:
        extra = {"c": comment or "", "a": aspects or {}}
    return [event_id, typ, user, item, ts, float(strengths.get(typ, 0.0)), segment or "", basket_id or "",
            strategy or "", utc_day(int(ts // 86400)), "" if value is None else value,
            "" if dwell_ms is None else dwell_ms, extra]


def decode_interactions(records: list[Record], strengths: dict[str, float]) -> DecodedBatch:
    """Validate every record; never raises on bad input.

    Plainly valid records take ``schemas.events.fast_event``; every other one goes through
    ``parse_event`` (pydantic), which accepts it or gives the dead letter its reason.
    """
    out = DecodedBatch()
    loads, rows, sources, types = orjson.loads, out.rows, out.sources, out.types
    for rec in records:
        value = rec.value
        if value is None:
            out.dead.append(DeadLetter.of(rec, "empty record (no value)"))
            continue
        try:
            obj = loads(value)
        except orjson.JSONDecodeError:
            obj = None
        fast = fast_event(obj) if type(obj) is dict else None
        if fast is not None:
            rows.append(fast_row(fast, strengths))
            typ = fast.type
        else:
            try:
                event = parse_event(value)
            except InvalidEvent as exc:
                out.dead.append(DeadLetter.of(rec, exc.reason))
                continue
            rows.append(to_row(event, strengths))
            typ = event.type.value
        sources.append(rec)
        types[typ] += 1
    return out


def decode_models(records: list[Record], model: type) -> tuple[list, list[DeadLetter]]:
    """Validate catalog / users / model-updates records against their pydantic model.

    >>> from schemas.catalog import UserProfile
    >>> good, bad = decode_models([Record(b'{"user_id": "u1", "profession": "nurse"}', "users", 0, 0),
    ...                            Record(b'[]', "users", 0, 1)], UserProfile)
    >>> good[0].segment, bad[0].reason
    ('nurse', 'expected a JSON object, got list')
    """
    good, dead = [], []
    for rec in records:
        if rec.value is None:
            dead.append(DeadLetter.of(rec, "empty record (no value)"))
            continue
        try:
            obj = orjson.loads(rec.value)
        except orjson.JSONDecodeError as exc:
            dead.append(DeadLetter.of(rec, f"malformed JSON: {exc}"))
            continue
        if not isinstance(obj, dict):
            dead.append(DeadLetter.of(rec, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        try:
            good.append(model.model_validate(obj))
        except ValidationError as exc:
            dead.append(DeadLetter.of(rec, describe(exc)))
    return good, dead
