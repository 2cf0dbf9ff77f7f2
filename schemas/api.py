"""Bodies of the HTTP API (see DESIGN.md, "HTTP")."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.events import COMMENT_MAX, ID_PATTERN, Interaction


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    reason: str | None = None
    metadata: dict[str, Any] | None = None
    # with use_reranker: the list's own score, and the cross-encoder's (None below the reranked top N)
    first_stage_score: float | None = None
    reranker_score: float | None = None
    # an interleaving experiment's list: the arm (team) that drafted this item (docs/experiments.md)
    team: str | None = None
    # with STREAMREC_EXPLORE_EPSILON > 0: the probability the policy put this item here (docs/off-policy.md)
    propensity: float | None = None


class RecommendationResponse(BaseModel):
    user_id: str
    strategy: str
    model_version: str | None = None
    request_id: str
    cached: bool = False
    degraded: bool = False
    reranked: bool | None = None  # with use_reranker: whether the cross-encoder reordered the list
    reranker: str | None = None
    # inside a running experiment (docs/experiments.md): its name and the user's arm
    experiment: str | None = None
    arm: str | None = None
    items: list[RecommendedItem]


class SimilarResponse(BaseModel):
    item_id: str
    model_version: str | None = None
    request_id: str
    reranked: bool | None = None
    reranker: str | None = None
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


class StreamLag(BaseModel):
    """How far behind the stream workers are, as they last reported (``Keys.worker_lag``)."""

    status: str  # ok | lagging (over a second of arrivals behind) | stale (no report for 15 s) | unknown
    workers: int
    records_behind: int
    event_to_redis_ms: float
    events_per_s: float
    dlq_records: int = 0  # sent to the dead-letter topic by the live workers since they started


class Health(BaseModel):
    status: str
    redis: bool
    broker: bool
    stream: StreamLag | None = None


class Version(BaseModel):
    version: str
    model_run: str | None = None
    basket_profile: str | None = None


class ErrorBody(BaseModel):
    detail: Any


USER_ID = Field(pattern=ID_PATTERN)


# --- search and reranking (docs/search-reranking.md) ------------------------------------------------
class SearchFilters(BaseModel):
    include: list[str] = Field(default_factory=list, max_length=1000,
                               description="only these item ids / category:NAME entries")
    exclude: list[str] = Field(default_factory=list, max_length=1000, description="never these item ids / category:NAME")
    exclude_seen: bool = Field(False, description="leave out items user_id interacted with")


class SearchRequest(BaseModel):
    query_text: str = Field(min_length=1, max_length=1000, description="what to search for")
    k: int = Field(default=10, ge=1, le=100)
    use_reranker: bool = Field(True, description="rescore the first stage's top N with the cross-encoder")
    user_id: str | None = Field(default=None, pattern=ID_PATTERN, description="who searches (logged with the impressions)")
    top_n: int | None = Field(default=None, ge=1, le=500, description="how many first-stage results to rerank "
                                                                      "(default STREAMREC_RERANK_TOP_N, 20)")
    filters: SearchFilters = Field(default_factory=SearchFilters)

    @field_validator("query_text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("query_text is blank")
        return v.strip()


class SearchResult(BaseModel):
    item_id: str
    score: float  # the order: the reranker's score in the reranked top N, the first stage's after it
    first_stage_score: float  # reciprocal rank fusion of the bi-encoder and BM25
    first_stage_rank: int
    reranker_score: float | None = None
    text: str | None = None


class SearchResponse(BaseModel):
    request_id: str
    query_text: str
    reranked: bool
    reranker: str | None = None  # the reranker run, "base" (untuned), None when not asked for
    index: str
    candidates: dict[str, int]
    items: list[SearchResult]


class RerankingInfo(BaseModel):
    reranker: str | None = None
    model: str | None = None
    base: str | None = None
    started_from: str | None = None
    feedbacks: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    first_stage: dict[str, Any] = Field(default_factory=dict)
    trained_at: str | None = None
    promoted_at: str | None = None
    note: str | None = None
    backend: str | None = None  # what scores: "onnx int8" (the run's ONNX export) or "torch fp32"
    rerank_weight: float | None = None  # the reranker's weight in its fusion with the first stage, as served
    layers: int | None = None  # the cross-encoder's transformer layers (STREAMREC_RERANK_BASE_LAYERS cuts the base)
    rerank_top_n: int
    search_index: dict[str, Any] | None = None


class FeedbackRequest(BaseModel):
    """``POST /api/v1/feedback``: explicit feedback on one item, turned into events (docs/feedback.md).

    ``rating`` gives a ``rate`` event carrying ``comment`` and ``aspects``; ``interaction_happened``
    gives a ``click`` (true) or a ``dislike`` (false). At least one of them is needed.
    """

    model_config = ConfigDict(extra="forbid")

    request_id: str | None = Field(default=None, max_length=128)
    user_id: str = Field(pattern=ID_PATTERN)
    item_id: str = Field(pattern=ID_PATTERN)
    rating: float | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=COMMENT_MAX)
    aspects: dict[str, Annotated[int, Field(ge=1, le=5)]] | None = None
    interaction_happened: bool | None = None
    strategy: str | None = Field(default=None, max_length=128)  # the arm, when the caller knows it


class FeedbackAccepted(BaseModel):
    accepted: int
    events: list[dict[str, str]]  # [{"event_id", "type"}] as produced
