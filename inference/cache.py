"""The recommendation cache: an in-process copy of cached bodies in front of Redis.

Redis is the shared cache (DESIGN key ``sr:recs:{user}:{strategy}:{k}``, TTL, indexed in
``sr:recs_idx:{user}`` so the stream agents can delete a user's lists in one call). A
Redis round trip per request would halve the throughput of the cached path, so each API
process also keeps the bodies it served, as bytes, evicted by the agents' invalidation
messages on ``Keys.invalidate_channel``. Whenever that subscription is not live, the
local copy is emptied and bypassed: it can never serve what Redis already dropped.

A body is kept as ``tail`` bytes (the JSON object without its opening brace and without
``request_id``), so serving it is one concatenation: every served list still gets its own
request id, and nothing is parsed or serialised on a hit.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson

log = logging.getLogger(__name__)

_HEAD = b'{"request_id":"'


@dataclass(slots=True, frozen=True)
class CachedList:
    """One served list, ready to be sent again."""

    user_id: str
    strategy: str
    items: tuple[str, ...]  # for impression events
    tail_cached: bytes  # `"user_id":…,"cached":true,…}`
    tail_fresh: bytes  # the same with "cached":false
    # per position, the probability the policy put the item there (impressions log it; None:
    # a deterministic list, all 1). Set when the payload's items carry ``propensity`` (exploration).
    propensities: tuple[float, ...] | None = None

    def body(self, request_id: str, cached: bool) -> bytes:
        """The JSON body with ``request_id`` first.

        >>> c = CachedList.from_payload({"user_id": "u", "strategy": "p", "cached": False, "items": []})
        >>> c.body("r1", cached=True)
        b'{"request_id":"r1","user_id":"u","strategy":"p","cached":true,"items":[]}'
        """
        return b"".join((_HEAD, request_id.encode(), b'",', self.tail_cached if cached else self.tail_fresh))

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "CachedList":
        """From a response dict without ``request_id`` (serialised twice, once per variant)."""
        fresh = orjson.dumps({**payload, "cached": False})
        cached = orjson.dumps({**payload, "cached": True})
        items = tuple(i["item_id"] for i in payload.get("items", ()))
        return cls(payload["user_id"], payload["strategy"], items, cached[1:], fresh[1:],
                   propensities_of(payload.get("items", ())))

    @property
    def redis_value(self) -> bytes:
        """What Redis keeps: valid JSON (the cached variant, no request id)."""
        return b"{" + self.tail_cached

    @classmethod
    def from_redis(cls, raw: bytes) -> "CachedList":
        doc = orjson.loads(raw)  # once per key and process: only to learn the item ids
        items = tuple(i["item_id"] for i in doc.get("items", ()))
        tail = raw[1:]
        return cls(doc.get("user_id", ""), doc.get("strategy", ""), items, tail,
                   tail.replace(b'"cached":true', b'"cached":false', 1), propensities_of(doc.get("items", ())))


def propensities_of(items) -> tuple[float, ...] | None:
    """The items' ``propensity`` values, or None when none has one (a deterministic list).

    >>> propensities_of([{"item_id": "a", "propensity": 0.9}, {"item_id": "b"}])
    (0.9, 1.0)
    >>> propensities_of([{"item_id": "a"}]) is None
    True
    """
    if not any("propensity" in i for i in items):
        return None
    return tuple(float(i.get("propensity") or 1.0) for i in items)


LocalKey = tuple  # (user_id, strategy, k, variant)


class LocalCache:
    """Bodies by request key, with per-user eviction and a generation check.

    A list computed while an invalidation for its user arrived must not be kept: ``token``
    is taken before computing and ``put`` only stores when it is still current. The Redis tier
    has its own check, which does not depend on when the message arrives here (docs/freshness.md).
    """

    def __init__(self, max_entries: int = 100_000, ttl_s: float = 3600.0):
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self.entries: dict[LocalKey, tuple[float, CachedList]] = {}
        self._by_user: dict[str, set[LocalKey]] = {}
        self._gen: dict[str, int] = {}
        self._global_gen = 0
        self.live = False  # True only while the invalidation subscription is up
        self._flights: dict[LocalKey, asyncio.Future] = {}

    def get(self, key: LocalKey) -> CachedList | None:
        if not self.live:
            return None
        got = self.entries.get(key)
        if got is None:
            return None
        if got[0] < time.monotonic():  # the Redis copy expired at the same time
            self._forget(key)
            return None
        return got[1]

    def token(self, user: str) -> tuple[int, int]:
        return (self._global_gen, self._gen.get(user, 0))

    def put(self, key: LocalKey, value: CachedList, token: tuple[int, int]) -> bool:
        if not self.live or token != self.token(key[0]):
            return False
        if len(self.entries) >= self.max_entries:
            for old in list(self.entries)[: self.max_entries // 10 or 1]:
                self._forget(old)
        self.entries[key] = (time.monotonic() + self.ttl_s, value)
        self._by_user.setdefault(key[0], set()).add(key)
        return True

    def _forget(self, key: LocalKey) -> None:
        self.entries.pop(key, None)
        keys = self._by_user.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                self._by_user.pop(key[0], None)

    def invalidate_users(self, users: list[str]) -> None:
        for user in users:
            self._gen[user] = self._gen.get(user, 0) + 1
            for key in self._by_user.pop(user, ()):
                self.entries.pop(key, None)

    def clear(self) -> None:
        self._global_gen += 1
        self._gen.clear()
        self.entries.clear()
        self._by_user.clear()

    def on_message(self, data: bytes | str) -> None:
        """Apply one invalidation message (a JSON list of user ids, ``["*"]`` for all).

        >>> c = LocalCache(); c.live = True
        >>> body = CachedList.from_payload({"user_id": "u1", "strategy": "p", "items": []})
        >>> c.put(("u1", "p", 10, ""), body, c.token("u1"))
        True
        >>> c.on_message(b'["u1"]'); c.get(("u1", "p", 10, "")) is None
        True
        """
        try:
            users = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("unreadable invalidation message %r: dropping every local entry", data[:100])
            self.clear()
            return
        if not isinstance(users, list) or "*" in users:
            self.clear()
        else:
            self.invalidate_users([str(u) for u in users])

    async def single_flight(self, key: LocalKey, compute: Callable[[], Awaitable[Any]]) -> tuple[Any, bool]:
        """Run ``compute`` once for concurrent callers of one key: (result, was_leader)."""
        fut = self._flights.get(key)
        if fut is not None:
            return await asyncio.shield(fut), False
        fut = asyncio.get_running_loop().create_future()
        self._flights[key] = fut
        try:
            result = await compute()
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # followers re-raise it; mark retrieved for the leader
            raise
        else:
            fut.set_result(result)
            return result, True
        finally:
            self._flights.pop(key, None)


class ReplicaFlight:
    """Single flight across API processes: on a Redis-cache miss one replica computes a list while
    the others wait briefly for it to appear in the Redis cache (``LocalCache.single_flight`` already
    makes it one computation per process).

    The leader is whoever takes the list's lock: redis-py's ``Lock`` (SET NX PX with a random
    token; released by a script that checks the token), expiring after ``lock_s`` if its holder
    dies. The others poll the list's cache key for at most ``wait_s``, then compute anyway: a lock
    never hangs or fails a request, and a Redis error just means computing without it. A leader
    that let its lock go without storing its list (an event of the user came after its state read:
    docs/freshness.md) sends the others to compute at once. Only the miss path meets it; a cached
    list is served from the process, with no Redis round trip.
    """

    def __init__(self, store: Any, lock_s: float = 5.0, wait_s: float = 0.5):
        self.store, self.lock_s, self.wait_s = store, lock_s, wait_s

    async def run(self, cache_key: str, lock_key: str, compute: Callable[[], Awaitable[Any]],
                  publish: Callable[[Any], Awaitable[None]], read: Callable[[bytes], Any]) -> tuple[Any, bool]:
        """(value, computed by another replica). ``publish(value)`` stores it under ``cache_key``;
        the lock is released once it is there, in the background (the leader's answer does not wait)."""
        from redis.exceptions import LockError

        from schemas.errors import StoreUnavailable

        lock = self.store.client.lock(lock_key, timeout=self.lock_s, blocking=False)
        try:
            leader = bool(await self.store.call(lambda _c: lock.acquire(blocking=False)))
        except (StoreUnavailable, LockError):
            leader = None  # no lock to be had: compute, as without replicas
        if leader is False:
            deadline = time.monotonic() + self.wait_s
            delay = 0.005
            while time.monotonic() < deadline:
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 0.05)
                try:
                    raw, locked = await self.store.pipeline(lambda p: (p.get(cache_key), p.exists(lock_key)))
                except StoreUnavailable:
                    break
                if raw is not None:
                    return read(raw), True
                if not locked:  # the leader is done and kept nothing (its list was stale): compute now
                    break
        value = await compute()

        async def publish_then_release() -> None:
            try:
                await publish(value)
            finally:
                if leader:
                    try:
                        await self.store.call(lambda _c: lock.release())
                    except (StoreUnavailable, LockError):
                        pass  # expired meanwhile, or Redis away: it expires on its own

        task = asyncio.get_running_loop().create_task(publish_then_release())
        _background.add(task)
        task.add_done_callback(_background.discard)
        return value, False


_background: set[asyncio.Task] = set()  # publications in flight (a task needs a reference to live)


async def listen_invalidations(redis_factory: Callable[[], Any], channel: str, cache: LocalCache,
                               stop: asyncio.Event, retry_s: float = 0.5, silence_s: float = 3.0) -> None:
    """Keep a subscription to ``channel`` and apply its messages to ``cache`` until ``stop``.

    ``redis_factory`` gives a client without a read timeout (pub/sub waits for messages).
    The subscription is pinged after each quiet second; silence for ``silence_s`` (a frozen
    Redis) counts as lost. Whenever it is not live the cache is cleared and bypassed.
    """
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        client = redis_factory()
        pubsub = client.pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(channel), timeout=2)
            last_seen = loop.time()
            while not stop.is_set():
                msg = await asyncio.wait_for(pubsub.get_message(timeout=1.0), timeout=silence_s)
                now = loop.time()
                if msg is None:
                    if now - last_seen > silence_s:
                        raise TimeoutError(f"no answer on the subscription for {silence_s:.0f} s")
                    await asyncio.wait_for(pubsub.ping(), timeout=1)
                    continue
                last_seen = now
                if msg["type"] == "subscribe":  # confirmation: from here on nothing is missed
                    cache.clear()
                    cache.live = True
                elif msg["type"] == "message":
                    cache.on_message(msg["data"])
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure: drop everything, resubscribe
            if cache.live:
                log.warning("invalidation subscription lost (%s): local cache dropped", exc)
            cache.live = False
            cache.clear()
            await asyncio.sleep(retry_s)
        finally:
            cache.live = False
            cache.clear()
            for closing in (pubsub.aclose, client.aclose):
                try:
                    await asyncio.wait_for(closing(), timeout=1)
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
