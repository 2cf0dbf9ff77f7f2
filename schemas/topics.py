"""Topic names. Every name takes the configured prefix (``Settings.topic``)."""
from __future__ import annotations

INTERACTIONS = "interactions"
INTERACTIONS_DLQ = "interactions.dlq"
CATALOG = "catalog"
USERS = "users"
MODEL_UPDATES = "model-updates"
ALERTS = "alerts"

ALL = (INTERACTIONS, INTERACTIONS_DLQ, CATALOG, USERS, MODEL_UPDATES, ALERTS)
