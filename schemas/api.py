"""Bodies of the HTTP API (see DESIGN.md, "HTTP")."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from schemas.events import ID_PATTERN, Interaction


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str | None = None
    metadata: dict[str, Any] | None = None


class RecommendationResponse(BaseModel):
    user_id: str
    strategy: str
    model_version: str | None = None
    request_id: str
    cached: bool = False
    degraded: bool = False
    items: list[RecommendedItem]


class SimilarResponse(BaseModel):
    item_id: str
    model_version: str | None = None
    request_id: str
    items: list[RecommendedItem]


class BasketRequest(BaseModel):
    profession: str | None = None
    product_ids: list[str] = Field(min_length=1, max_length=200)
    k: int = Field(default=10, ge=1, le=100)
    expand: bool = False


class SegmentWeight(BaseModel):
    segment: str
    weight: float


class BasketResponse(BaseModel):
    request_id: str
    profile: str
    segments: list[SegmentWeight]
    items: list[RecommendedItem]


class EnrichRequest(BaseModel):
    product_ids: list[str] = Field(min_length=1, max_length=1000)


class EnrichedItem(BaseModel):
    item_id: str
    found: bool
    title: str | None = None
    category: str | None = None
    private_label: bool | None = None


class EnrichResponse(BaseModel):
    items: list[EnrichedItem]


class EventsAccepted(BaseModel):
    accepted: int


EventsBody = Interaction | list[Interaction]


class Health(BaseModel):
    status: str
    redis: bool
    broker: bool


class Version(BaseModel):
    version: str
    model_run: str | None = None
    basket_profile: str | None = None


class ErrorBody(BaseModel):
    detail: Any


USER_ID = Field(pattern=ID_PATTERN)
