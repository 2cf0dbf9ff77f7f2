"""Admin changes every API process must apply: a basket-profile switch, a reload of a run.

``POST /admin/reload`` reaches one process of many (``streamrec api --workers N``, or N APIs
behind one address). It applies the change, then publishes it on the Redis channel
``Keys.control_channel``; every other process applies it on receipt, within a second. A
process ignores its own messages (it applied them already). A lost subscription is re-made;
while it is down a process misses changes, which it logs.
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Awaitable, Callable

import orjson

from schemas.errors import StoreUnavailable

log = logging.getLogger(__name__)

ORIGIN = uuid.uuid4().hex  # this process


async def publish(store, channel: str, change: dict[str, Any]) -> bool:  # noqa: ANN001 - inference.store.RedisStore
    """Tell the other API processes; False when Redis is away (the change stays local)."""
    try:
        await store.call(lambda c: c.publish(channel, orjson.dumps({**change, "origin": ORIGIN})))
        return True
    except StoreUnavailable as exc:
        log.warning("change %s not published to the other API processes: %s", change, exc)
        return False


async def listen(redis_factory: Callable[[], Any], channel: str, apply: Callable[[dict], Awaitable[None]],
                 stop: asyncio.Event, retry_s: float = 0.5) -> None:
    """Apply the changes other processes publish on ``channel`` until ``stop``."""
    while not stop.is_set():
        client = redis_factory()
        pubsub = client.pubsub()
        try:
            await asyncio.wait_for(pubsub.subscribe(channel), timeout=2)
            while not stop.is_set():
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is None or msg.get("type") != "message":
                    continue
                try:
                    change = orjson.loads(msg["data"])
                except orjson.JSONDecodeError:
                    log.warning("unreadable control message on %s: %r", channel, msg["data"][:200])
                    continue
                if isinstance(change, dict) and change.get("origin") != ORIGIN:
                    try:
                        await apply(change)
                    except Exception as exc:  # noqa: BLE001 - one bad change must not end the subscription
                        log.error("could not apply %s: %s", change, exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - resubscribe on any failure
            log.warning("control subscription lost (%s): changes made on other API processes are missed "
                        "until it is back", exc)
            await asyncio.sleep(retry_s)
        finally:
            for closing in (pubsub.aclose, client.aclose):
                try:
                    await closing()
                except Exception:  # noqa: BLE001
                    pass
