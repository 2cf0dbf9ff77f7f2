"""Interaction events: the records of the ``interactions`` topic (key = user_id).

>>> e = parse_event(b'{"event_id": "e1", "type": "view", "user_id": "u1", "item_id": "i1", "ts": 0}')
>>> (e.type.value, e.user_id, e.ts.year)
('view', 'u1', 1970)
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, NamedTuple

from annotated_types import Ge, MaxLen, MinLen

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.errors import InvalidEvent
from schemas.settings import get_settings

ID_PATTERN = r"^[A-Za-z0-9_.:@\-]{1,128}$"
COMMENT_MAX = 2000


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
    dwell = "dwell"  # implicit feedback: time spent on the item, in context.dwell_ms
    convert = "convert"  # an explicit conversion (purchase/enroll after an impression count too)


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
    # the experiment and arm a list was served under (docs/experiments.md); the feedback counters
    # of an event that names both go to the arm's label ``{experiment}.{arm}``
    experiment: str | None = Field(default=None, max_length=64)
    arm: str | None = Field(default=None, max_length=64)
    # the probability that the serving policy put this item at this position (docs/off-policy.md):
    # 1 for a deterministic policy, lower for a bandit's or an exploration slot's randomisation
    propensity: float | None = Field(default=None, gt=0, le=1)
    # explicit feedback (docs/feedback.md): free text, and 1-5 marks per aspect (Settings.feedback_aspects)
    comment: str | None = Field(default=None, max_length=COMMENT_MAX)
    aspects: dict[str, Annotated[int, Field(ge=1, le=5)]] | None = None

    @field_validator("aspects")
    @classmethod
    def _aspects(cls, v: dict[str, int] | None) -> dict[str, int] | None:
        if v:
            known = get_settings().feedback_aspects
            unknown = sorted(set(v) - set(known))
            if unknown:
                raise ValueError(f"unknown aspect(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return v


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
            try:
                return datetime.fromtimestamp(float(v), tz=timezone.utc)
            except (OverflowError, OSError, ValueError):  # 1e20: a reason, not a crash of the caller
                raise ValueError(f"epoch seconds out of range: {v}") from None
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
        if self.type is EventType.dwell and self.context.dwell_ms is None:
            raise ValueError("a 'dwell' event needs context.dwell_ms")
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


# --------------------------------------------------------------------------- fast path
# The worker validates every record it consumes. ``fast_event`` reads the plainly valid ones (the
# shape producers send: known type, ids, numeric or ISO ``ts``, context of None/str/int values)
# about ten times faster than ``Interaction.model_validate``; anything else, valid or not, gets
# ``None`` and goes through pydantic. So the fast path only ever accepts records pydantic accepts,
# with the same values, and every rejection and its reason still come from pydantic
# (tests/unit/test_streams_fast_events.py checks both on generated records).

class FastEvent(NamedTuple):
    """What the stream worker needs of a valid interaction."""

    event_id: str
    type: str
    user_id: str
    item_id: str
    epoch: float
    value: float | None
    context: dict


_ID = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))  # used with fullmatch: no "$" before a newline
_TYPES = frozenset(t.value for t in EventType)
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?")


def _context_rules() -> dict[str, tuple[type, int, int | None] | None]:
    """Per ``EventContext`` field: (type, minimum, max length) the fast path can check, or None
    for a field it leaves to pydantic (derived from the model, so a new field is never skipped)."""
    rules: dict[str, tuple[type, int, int | None] | None] = {}
    for name, f in EventContext.model_fields.items():
        kind = {str | None: str, int | None: int}.get(f.annotation)
        low, longest, known = 0, None, kind is not None
        for m in f.metadata:
            if isinstance(m, Ge) and kind is int:
                low = m.ge
            elif isinstance(m, MaxLen) and kind is str:
                longest = m.max_length
            elif isinstance(m, MinLen) and kind is str and m.min_length == 0:
                pass
            else:
                known = False
        rules[name] = (kind, low, longest) if known and f.default is None else None
    return rules


_CONTEXT = _context_rules()


def _plain_context(ctx: Any) -> dict | None:
    if ctx is None:
        return {}
    if type(ctx) is not dict:
        return None
    for name, v in ctx.items():
        if v is None or name not in _CONTEXT:
            continue  # extra fields are allowed, with any value
        rule = _CONTEXT[name]
        if rule is None:
            return None
        kind, low, longest = rule
        if type(v) is not kind:
            return None
        if kind is int and v < low:
            return None
        if kind is str and longest is not None and len(v) > longest:
            return None
    return ctx


def _epoch(ts: Any) -> float | None:
    if ts is None:
        return _now().timestamp()
    t = type(ts)
    if t is float or t is int:
        try:
            return datetime.fromtimestamp(float(ts), tz=timezone.utc).timestamp()
        except (OverflowError, OSError, ValueError):
            return None
    if t is str and _ISO.fullmatch(ts):
        try:
            d = datetime.fromisoformat(ts)
        except ValueError:
            return None
        return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()
    return None


def fast_event(obj: dict) -> FastEvent | None:
    """The event of a plainly valid record, or None: then ``parse_event`` decides (and explains).

    >>> fast_event({"event_id": "e1", "type": "view", "user_id": "u1", "item_id": "i1", "ts": 86400}).epoch
    86400.0
    >>> fast_event({"type": "view", "user_id": "u 1", "item_id": "i1"}) is None   # pydantic says why
    True
    """
    typ = obj.get("type")
    if type(typ) is not str or typ not in _TYPES:
        return None
    user, item = obj.get("user_id"), obj.get("item_id")
    if type(user) is not str or type(item) is not str or not _ID.fullmatch(user) or not _ID.fullmatch(item):
        return None
    event_id = obj.get("event_id")
    if event_id is None and "event_id" not in obj:
        event_id = uuid.uuid4().hex
    elif type(event_id) is not str or not 1 <= len(event_id) <= 128:
        return None
    value = obj.get("value")
    if value is not None:
        if type(value) is not float and type(value) is not int:
            return None
        value = float(value)
    if typ == "rate" and (value is None or not 1 <= value <= 5):
        return None
    ctx = _plain_context(obj.get("context"))
    if ctx is None or (typ == "dwell" and ctx.get("dwell_ms") is None):
        return None
    epoch = _epoch(obj.get("ts"))
    if epoch is None:
        return None
    return FastEvent(event_id, typ, user, item, epoch, value, ctx)
