"""Forget a user: ``DELETE /api/v1/users/{user_id}`` writes a tombstone (key = user id, no value)
to the compacted ``users`` topic; the stream worker then deletes what Redis holds of the user
(streams/forget.py) and the next replay drops the user's events from the snapshot
(trainer/replay.py). ``GET /admin/users/{user_id}/footprint`` lists what Redis still holds of the
user: empty once the forget is applied. Both need ``X-Admin-Key``.

The footprint reads every place on its own (``Keys.user_keys``, the cached lists, the shared
hashes, impression buckets, positive-day sets, comments): it does not trust the deleting code.
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Annotated

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, HTTPException, Path
from redis import exceptions as rexc

from inference.deps import AdminDep, RuntimeDep
from schemas import topics
from schemas.errors import BrokerUnavailable, StoreUnavailable
from schemas.events import ID_PATTERN
from schemas.kafka_security import aiokafka_options
from schemas.keys import Keys
from schemas.settings import Settings

router = APIRouter(tags=["users"], dependencies=[AdminDep],
                   responses={401: {"description": "missing or wrong X-Admin-Key"}})

UserId = Annotated[str, Path(pattern=ID_PATTERN, description="the user to forget")]
SCAN_COUNT = 1000


async def send_tombstone(settings: Settings, user_id: str) -> None:
    """Produce the user's tombstone on the ``users`` topic and wait for the broker's ack."""
    if not re.match(ID_PATTERN, user_id):
        raise ValueError(f"not a valid user id: {user_id!r}")
    if not settings.kafka_bootstrap:
        raise BrokerUnavailable("no broker configured (STREAMREC_KAFKA_BOOTSTRAP)")
    timeout = max(settings.broker_timeout_s, 5.0)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all",
                                request_timeout_ms=int(timeout * 1000), **aiokafka_options(settings))
    try:
        await asyncio.wait_for(producer.start(), timeout)
        await asyncio.wait_for(producer.send_and_wait(settings.topic(topics.USERS), value=None,
                                                      key=user_id.encode()), timeout)
    except (KafkaError, OSError, asyncio.TimeoutError) as exc:
        raise BrokerUnavailable(f"the tombstone of {user_id} was not written: {type(exc).__name__} {exc}") from exc
    finally:
        try:
            await asyncio.wait_for(producer.stop(), 2)
        except Exception:  # noqa: BLE001 - stopping a producer whose broker is gone
            pass


async def footprint(client: aioredis.Redis, keys: Keys, user_id: str) -> list[dict[str, str]]:
    """Every place Redis still holds the user, as ``{"key", "what"}``; empty when forgotten."""
    try:
        return await _footprint(client, keys, user_id)
    except rexc.RedisError as exc:
        raise StoreUnavailable(f"redis: {exc}") from exc


async def _footprint(client: aioredis.Redis, keys: Keys, user: str) -> list[dict[str, str]]:
    held = []
    own = keys.user_keys(user)
    for k, present in zip(own, await asyncio.gather(*(client.exists(k) for k in own))):
        if present:
            held.append({"key": k, "what": "key of the user"})
    for pattern in keys.recs_patterns(user):
        async for k in client.scan_iter(match=pattern, count=SCAN_COUNT):
            held.append({"key": _text(k), "what": "cached recommendation list"})
    for name, what in ((keys.user_segments, "segment membership"), (keys.sessions, "session (legacy hash)")):
        if await client.hexists(name, user):
            held.append({"key": name, "what": f"{what}: field {user}"})
    async for bucket in client.scan_iter(match=keys.sessions_bucket("*"), count=SCAN_COUNT):
        if await client.hexists(bucket, user):
            held.append({"key": _text(bucket), "what": f"session: field {user}"})
    prefix = f"{user}\t*"
    async for bucket in client.scan_iter(match=keys.impressions("*"), count=SCAN_COUNT):
        n = len([f async for f, _ in client.hscan_iter(bucket, match=prefix, count=SCAN_COUNT)])
        if n:
            held.append({"key": _text(bucket), "what": f"{n} impression records"})
    async for day in client.scan_iter(match=keys.positive_day("*"), count=SCAN_COUNT):
        n = len([m async for m in client.sscan_iter(day, match=prefix, count=SCAN_COUNT)])
        if n:
            held.append({"key": _text(day), "what": f"{n} positive-feedback entries"})
    comments = 0
    for entry in await client.lrange(keys.comments, 0, -1):
        try:
            comments += json.loads(entry).get("user") == user
        except (ValueError, AttributeError):
            continue
    if comments:
        held.append({"key": keys.comments, "what": f"{comments} feedback comments"})
    return held


@router.delete("/api/v1/users/{user_id}", status_code=202)
async def forget(user_id: UserId, rt: RuntimeDep) -> dict:
    """Ask the worker to forget a user: 202 once the tombstone is on the broker, 503 when the
    broker does not take it (nothing was forgotten; retry)."""
    try:
        await send_tombstone(rt.settings, user_id)
    except BrokerUnavailable as exc:
        raise HTTPException(503, detail=str(exc), headers={"Retry-After": "5"}) from None
    return {"user_id": user_id, "status": "tombstone written; the worker deletes the user's state",
            "footprint": f"/admin/users/{user_id}/footprint"}


@router.get("/admin/users/{user_id}/footprint")
async def user_footprint(user_id: UserId, rt: RuntimeDep) -> dict:
    """What Redis still holds of the user (aggregates that name no user are not listed)."""
    try:
        held = await footprint(rt.store.client, rt.keys, user_id)
    except StoreUnavailable as exc:
        raise HTTPException(503, detail=str(exc), headers={"Retry-After": "5"}) from None
    return {"user_id": user_id, "held": held, "clean": not held}


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
