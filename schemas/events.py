"""Interaction events: the records of the ``interactions`` topic (key = user_id).

>>> e = parse_event(b'{"event_id": "e1", "type": "view", "user_id": "u1", "item_id": "i1", "ts": 0}')
>>> (e.type.value, e.user_id, e.ts.year)
('view', 'u1', 1970)
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.errors import InvalidEvent

ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"


class EventType(str, Enum):
    impression = "impression"
    view = "view"
    click = "click"
    download = "download"
    rate = "rate"
    enroll = "enroll"
    purchase = "purchase"
    like = "like"
    dislike = "dislike"


def _now() -> datetime:
    return datetime.now(timezone.utc)


class EventContext(BaseModel):
    model_config = ConfigDict(extra="allow")

    request_id: str | None = None
    strategy: str | None = None
    position: int | None = Field(default=None, ge=0)
    basket_id: str | None = None
    profession: str | None = None
    dwell_ms: int | None = Field(default=None, ge=0)
    # the search query (or other text) the list was served for: ties feedback to it (train-reranker)
    query: str | None = Field(default=None, max_length=1000)


class Interaction(BaseModel):
    """One user–item event. ``ts`` takes ISO 8601 or epoch seconds; missing means now."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=128)
    type: EventType
    user_id: str = Field(pattern=ID_PATTERN)
    item_id: str = Field(pattern=ID_PATTERN)
    ts: datetime = Field(default_factory=_now)
    value: float | None = None
    context: EventContext = Field(default_factory=EventContext)

    @field_validator("ts", mode="before")
    @classmethod
    def _ts(cls, v: Any) -> Any:
        if v is None:
            return _now()
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return datetime.fromtimestamp(float(v), tz=timezone.utc)
        return v

    @field_validator("ts")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)

    @field_validator("context", mode="before")
    @classmethod
    def _ctx(cls, v: Any) -> Any:
        return {} if v is None else v

    @model_validator(mode="after")
    def _rating(self) -> "Interaction":
        if self.type is EventType.rate and (self.value is None or not 1 <= self.value <= 5):
            raise ValueError("a 'rate' event needs a value between 1 and 5")
        return self

    @property
    def epoch(self) -> float:
        return self.ts.timestamp()

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json"))


def describe(err: ValidationError) -> str:
    """A one-line reason a person can read, from a pydantic error."""
    parts = []
    for e in err.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "record"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def parse_event(raw: bytes | str | dict) -> Interaction:
    """Decode and validate one record; raise ``InvalidEvent`` with a reason otherwise."""
    if isinstance(raw, dict):
        obj = raw
    else:
        try:
            obj = orjson.loads(raw)
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise InvalidEvent(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected a JSON object, got {type(obj).__name__}")
    try:
        return Interaction.model_validate(obj)
    except ValidationError as exc:
        raise InvalidEvent(describe(exc)) from None
