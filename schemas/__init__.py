"""Names every part shares: event and API models, topics, Redis keys, settings, errors.

This package depends on nothing else of streamrec.
"""
from schemas.catalog import CatalogItem, ModelUpdate, UserProfile
from schemas.errors import (
    ArtifactError,
    BrokerUnavailable,
    InvalidEvent,
    ModelNotTrained,
    NotFound,
    ServiceUnavailable,
    StoreUnavailable,
    StreamrecError,
)
from schemas.events import EventContext, EventType, Interaction, parse_event
from schemas.keys import Keys
from schemas.settings import Settings, get_settings

__all__ = [
    "ArtifactError",
    "BrokerUnavailable",
    "CatalogItem",
    "EventContext",
    "EventType",
    "Interaction",
    "InvalidEvent",
    "Keys",
    "ModelNotTrained",
    "ModelUpdate",
    "NotFound",
    "ServiceUnavailable",
    "Settings",
    "StoreUnavailable",
    "StreamrecError",
    "UserProfile",
    "get_settings",
    "parse_event",
]
