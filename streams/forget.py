"""Forgetting a user: what the worker does with a tombstone (key = user id, no value) on the
compacted ``users`` topic (``DELETE /api/v1/users/{id}``, ``streamrec forget USER``).

1. A marker first, named by the user's SHA-1 (``Keys.forgotten``), with the forget time: from
   then on the batch script drops the user's events dated before it, so an event still on its
   way (another partition, a replay, a lagging worker) cannot bring the user back. It expires
   after ``forget_guard_s``; it holds no readable id.
2. Every key of the user alone (``Keys.user_keys``) and every cached list (its index and the
   ``recs`` keys of every cache version) is deleted; the user leaves the segment membership
   hash (``user_segments``), the session buckets and the legacy ``sessions`` hash.
3. The places where the user is one entry among others: ``user<TAB>item`` fields of the
   impression buckets, members of the positive-day sets, feedback comments.
4. The API processes are told (the invalidation channel) to drop in-process copies.

Aggregates (popularity, co-occurrence counts, day counters, bandit statistics) keep no user id
and stay; the next training run recomputes its pairs from a snapshot without the user
(``trainer.replay``). Not atomic as a whole, and need not be: after step 1 nothing adds to what
steps 2-3 delete, and a forget applied twice does nothing the second time.
"""
from __future__ import annotations

import json
import time

import redis.asyncio as aioredis
from redis import exceptions as rexc

from schemas.errors import StoreUnavailable
from schemas.keys import Keys

SCAN_COUNT = 1000


async def forget_user(client: aioredis.Redis, keys: Keys, user: str, guard_s: int, now: float | None = None) -> int:
    """Delete what Redis holds of ``user``; returns how many keys, fields and entries went."""
    now = time.time() if now is None else now
    try:
        return await _forget(client, keys, user, guard_s, now)
    except rexc.RedisError as exc:
        raise StoreUnavailable(f"redis: {exc}") from exc


async def _forget(client: aioredis.Redis, keys: Keys, user: str, guard_s: int, now: float) -> int:
    group = keys.user_group(user)  # cluster mode: the slot group whose batch script reads the marker
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(keys.forgotten(Keys.user_digest(user), group), repr(now), ex=guard_s)
        pipe.set(keys.forgotten_any_in(group), "1", ex=guard_s)
        await pipe.execute()
    doomed = list(keys.user_keys(user))
    doomed += [_text(k) for k in await client.smembers(keys.recs_index(user))]
    for pattern in keys.recs_patterns(user):
        doomed += [_text(k) async for k in client.scan_iter(match=pattern, count=SCAN_COUNT)]
    gone = int(await client.delete(*doomed)) if doomed else 0
    gone += int(await client.hdel(keys.user_segments, user))
    gone += int(await client.hdel(keys.sessions, user))
    async for bucket in client.scan_iter(match=keys.sessions_bucket("*"), count=SCAN_COUNT):
        gone += int(await client.hdel(bucket, user))
    prefix = f"{user}\t*"
    async for bucket in client.scan_iter(match=keys.impressions("*"), count=SCAN_COUNT):
        fields = [f async for f, _ in client.hscan_iter(bucket, match=prefix, count=SCAN_COUNT)]
        if fields:
            gone += int(await client.hdel(bucket, *fields))
    async for day in client.scan_iter(match=keys.positive_day("*"), count=SCAN_COUNT):
        members = [m async for m in client.sscan_iter(day, match=prefix, count=SCAN_COUNT)]
        if members:
            gone += int(await client.srem(day, *members))
    for entry in await client.lrange(keys.comments, 0, -1):
        if _comment_user(entry) == user:
            gone += int(await client.lrem(keys.comments, 0, entry))
    await client.publish(keys.invalidate_channel, json.dumps([user]))
    return gone


def _comment_user(entry: bytes | str) -> str | None:
    try:
        return json.loads(entry).get("user")
    except (ValueError, AttributeError):
        return None


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
