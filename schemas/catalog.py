"""Records of the ``catalog``, ``users`` and ``model-updates`` topics."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.events import ID_PATTERN


class CatalogItem(BaseModel):
    """An item upsert."""

    model_config = ConfigDict(extra="ignore")

    item_id: str = Field(pattern=ID_PATTERN)
    title: str = ""
    text: str = ""
    category: str | None = None
    subcategory: str | None = None
    level: int | None = None
    private_label: bool = False
    attributes: dict[str, Any] = Field(default_factory=dict)


class UserProfile(BaseModel):
    """A user upsert. ``segment`` and ``profession`` are synonyms; either fills the other."""

    model_config = ConfigDict(extra="ignore")

    user_id: str = Field(pattern=ID_PATTERN)
    segment: str | None = None
    profession: str | None = None
    level: int | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _synonyms(self) -> "UserProfile":
        if self.segment is None:
            self.segment = self.profession
        if self.profession is None:
            self.profession = self.segment
        return self


class ModelUpdate(BaseModel):
    """Published to ``model-updates`` when a run is promoted."""

    run_id: str
    run_dir: str
    models: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    ts: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
