"""``streamrec schema export DIR``: one JSON Schema file per model."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas import alerts, api, catalog, events


def exported_models() -> list[type[BaseModel]]:
    return [
        events.Interaction,
        events.EventContext,
        catalog.CatalogItem,
        catalog.UserProfile,
        catalog.ModelUpdate,
        api.RecommendationResponse,
        api.SimilarResponse,
        api.BasketRequest,
        api.BasketResponse,
        api.EnrichRequest,
        api.EventsAccepted,
        api.FeedbackRequest,
        alerts.Alert,
    ]


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for model in exported_models():
        path = directory / f"{model.__name__}.json"
        path.write_text(json.dumps(model.model_json_schema(), indent=2))
        written.append(path)
    return written
