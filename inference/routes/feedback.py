"""``/api/v1/feedback``: explicit feedback in (POST), the online metrics and comments out (GET).

The POST needs the ``feedback`` scope and the GETs ``read`` when producer keys are configured
(inference/app.py). See docs/feedback.md for the mapping and the metrics' definitions.
"""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse

from inference.deps import BrokerDep, RuntimeDep
from inference.feedback import FeedbackReader, feedback_events
from schemas.api import ErrorBody, FeedbackAccepted, FeedbackRequest
from schemas.errors import InvalidEvent

writes = APIRouter(prefix="/api/v1/feedback", tags=["feedback"])
reads = APIRouter(prefix="/api/v1/feedback", tags=["feedback"])


@writes.post("", status_code=202, response_model=FeedbackAccepted,
             responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody, "description": "broker down: retry later"}})
async def post_feedback(body: FeedbackRequest, broker: BrokerDep) -> JSONResponse:
    """A rating (with an optional comment and aspects) and/or whether the item was used, as
    events on ``interactions``: 202 once the broker has them, 422 naming what is wrong, 503
    with ``Retry-After`` when the broker does not take them."""
    try:
        events = feedback_events(body)
    except InvalidEvent as exc:
        raise HTTPException(422, detail=exc.reason) from None
    accepted = await broker.send_events(events)
    return JSONResponse({"accepted": accepted,
                         "events": [{"event_id": e.event_id, "type": e.type.value} for e in events]},
                        status_code=202)


@reads.get("/stats")
async def feedback_stats(rt: RuntimeDep, days: Annotated[int, Query(ge=1, le=90)] = 30,
                         arm: Annotated[str | None, Query(max_length=128)] = None) -> dict:
    """Per arm (and overall) over the last ``days`` UTC days: impressions, clicks, CTR,
    positive-feedback and conversion rates, rating mean and count, per-aspect means, like ratio,
    dwell mean and p50, comments; with the same figures per day."""
    return await FeedbackReader(rt.store, rt.keys).stats(days, arm)


@reads.get("/comments")
async def feedback_comments(
    rt: RuntimeDep,
    days: Annotated[int, Query(ge=1, le=90)] = 30,
    min_rating: Annotated[float | None, Query(ge=1, le=5)] = None,
    max_rating: Annotated[float | None, Query(ge=1, le=5)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    """The newest comments first (user, item, arm, rating, day, text), of the last ``days``
    days; a rating bound keeps only rated comments within it."""
    got = await FeedbackReader(rt.store, rt.keys).comments(days, min_rating, max_rating, limit,
                                                           rt.settings.feedback_comments_max)
    return {"days": days, "count": len(got), "comments": got}
