"""``POST /api/v1/events``: one event or a list, validated, produced to ``interactions``."""
from __future__ import annotations

import orjson
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter

from inference.deps import BrokerDep
from schemas.api import ErrorBody, EventsAccepted
from schemas.errors import InvalidEvent
from schemas.events import Interaction, parse_event

router = APIRouter(prefix="/api/v1", tags=["events"])

MAX_EVENTS = 10_000
_BODY_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {
            "oneOf": [{"$ref": "#/components/schemas/Interaction"},
                      {"type": "array", "items": {"$ref": "#/components/schemas/Interaction"}, "maxItems": MAX_EVENTS}],
        }}},
    }
}


@router.post("/events", status_code=202, response_model=EventsAccepted, openapi_extra=_BODY_SCHEMA,
             responses={422: {"model": ErrorBody}, 503: {"model": ErrorBody, "description": "broker down: retry later"}})
async def post_events(request: Request, broker: BrokerDep) -> JSONResponse:
    """One event (a JSON object) or a list of them. Every event is validated first: one bad
    event rejects the whole request with a 422 that names it, and nothing is sent. 503 with
    ``Retry-After`` when the broker does not take them."""
    raw = await request.body()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(422, detail=f"body is not valid JSON: {exc}") from None
    docs = doc if isinstance(doc, list) else [doc]
    if len(docs) > MAX_EVENTS:
        raise HTTPException(413, detail=f"at most {MAX_EVENTS} events per request, got {len(docs)}")
    events = []
    for pos, one in enumerate(docs):
        try:
            events.append(parse_event(one if isinstance(one, dict) else orjson.dumps(one)))
        except InvalidEvent as exc:
            where = f"event {pos}: " if isinstance(doc, list) else ""
            raise HTTPException(422, detail=f"{where}{exc.reason}") from None
    accepted = await broker.send_events(events) if events else 0
    return JSONResponse({"accepted": accepted}, status_code=202)


def add_schemas(spec: dict) -> dict:
    """Put ``Interaction`` (and what it refers to) into the OpenAPI components: the route reads
    its body itself, so FastAPI does not know to add them."""
    schema = TypeAdapter(Interaction).json_schema(ref_template="#/components/schemas/{model}")
    comps = spec.setdefault("components", {}).setdefault("schemas", {})
    comps.update(schema.pop("$defs", {}))
    comps["Interaction"] = schema
    return spec
