"""Topic names, and the record model each topic carries. Every name takes the configured
prefix (``Settings.topic``).

``RECORDS`` is the one place a topic is bound to its ``schemas/`` model: the replay's
snapshot columns and flatteners (``trainer.data.rows``) are derived from it, and
``parse_record`` validates a raw record of any topic the same way the stream worker does.

>>> parse_record(CATALOG, b'{"item_id": "i1", "title": "Drill"}').title
'Drill'
>>> parse_record(USERS, b'[1]')
Traceback (most recent call last):
...
schemas.errors.InvalidEvent: expected a JSON object, got list
"""
from __future__ import annotations

from pydantic import BaseModel, ValidationError

from schemas.catalog import CatalogItem, ModelUpdate, UserProfile
from schemas.errors import InvalidEvent
from schemas.events import Interaction, describe, parse_event

INTERACTIONS = "interactions"
INTERACTIONS_DLQ = "interactions.dlq"
CATALOG = "catalog"
USERS = "users"
MODEL_UPDATES = "model-updates"
ALERTS = "alerts"

ALL = (INTERACTIONS, INTERACTIONS_DLQ, CATALOG, USERS, MODEL_UPDATES, ALERTS)

#: the model of each topic's records (the DLQ and alerts carry free-form diagnostics)
RECORDS: dict[str, type[BaseModel]] = {
    INTERACTIONS: Interaction,
    CATALOG: CatalogItem,
    USERS: UserProfile,
    MODEL_UPDATES: ModelUpdate,
}


def parse_record(topic: str, raw: bytes | str | dict | None) -> BaseModel:
    """Decode and validate one record of ``topic`` (an unprefixed name of ``RECORDS``);
    ``InvalidEvent`` with a reason a person can read otherwise."""
    if raw is None:
        raise InvalidEvent("empty record")
    if topic == INTERACTIONS:
        return parse_event(raw)  # the worker's own check, word for word
    model = RECORDS[topic]
    try:
        if isinstance(raw, dict):
            return model.model_validate(raw)
        return model.model_validate_json(raw)
    except ValidationError as exc:
        kinds = {e["type"] for e in exc.errors()}
        if "json_invalid" in kinds:
            raise InvalidEvent("malformed JSON: not a JSON document") from None
        if "model_type" in kinds and len(exc.errors()) == 1:
            raise InvalidEvent(f"expected a JSON object, got {exc.errors()[0]['input'].__class__.__name__}") from None
        raise InvalidEvent(describe(exc)) from None
