"""A home list computed from state read before an event must never be served after the event's
invalidation (docs/freshness.md), on the real Redis with the worker's own batch script.

The interleaving is forced, not waited for: the list's computation is held after its state read,
the event is applied (``StreamState.apply_interactions``: the user's seen set, the DEL of the user's
cached lists, the PUBLISH to the API processes), and only then is the computation let go. Where
the invalidation message reaches the API process matters, so the tests also hold it back: pub/sub
delivery is asynchronous, and the Redis cache must be right whatever its timing.
"""
from __future__ import annotations

import asyncio
import json

import pytest

import inference.home
from schemas.keys import Keys, RecsId
from schemas.settings import Settings
from streams.batch import Record, decode_interactions
from streams.config import StreamConfig
from streams.processor import positions
from streams.state import StreamState, make_client
from tests.integration.support import api_client, event, stream_settings, sync_redis
from tests.integration.test_api_home import wait_live

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"


async def apply_view(settings: Settings, user: str, item: str) -> None:
    """What the worker does for one view: the batch script, invalidation included."""
    cfg = StreamConfig.from_settings(settings)
    rec = Record(json.dumps(event("view", user, item)).encode(), settings.topic("interactions"), 0, 0)
    decoded = decode_interactions([rec], cfg.strengths)
    client = make_client(settings)
    try:
        got = await StreamState(client, settings).apply_interactions(decoded.rows, cfg,
                                                                     positions=positions(decoded.sources))
    finally:
        await client.aclose()
    assert (got.new, got.invalidated_users) == (1, 1)


class HeldCompute:
    """``rank_home`` held after its state read until ``release``; the first call only."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.reached, self.go, self.calls = asyncio.Event(), asyncio.Event(), 0
        real = inference.home.rank_home

        async def held(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            self.calls += 1
            if self.calls == 1:
                self.reached.set()
                await self.go.wait()
            return await real(*args, **kwargs)

        monkeypatch.setattr(inference.home, "rank_home", held)

    def release(self) -> None:
        self.go.set()


class HeldMessages:
    """The API process's invalidation messages, delivered only when the test says so."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, local):  # noqa: ANN001
        self.local, self.held, self.real = local, [], local.on_message
        monkeypatch.setattr(local, "on_message", self.held.append)

    async def wait(self, n: int = 1) -> None:
        for _ in range(200):
            if len(self.held) >= n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the invalidation message never reached the API process")

    def deliver(self) -> None:
        for data in self.held:
            self.real(data)
        self.held.clear()


def ids(response) -> list[str]:  # noqa: ANN001
    assert response.status_code == 200, response.text
    return [i["item_id"] for i in response.json()["items"]]


async def settle() -> None:
    """Let the background store of a computed list (``ReplicaFlight``: after the answer) run."""
    from inference.cache import _background
    from inference.home import _stores

    for _ in range(100):
        if not _background and not _stores:
            return
        await asyncio.sleep(0.02)


@pytest.fixture(params=["single", "single-no-flight", "cluster"])
def fresh_settings(request, services, tmp_path) -> Settings:  # noqa: ANN001
    if request.param == "cluster":
        return stream_settings(services, tmp_path, redis_url=request.getfixturevalue("redis_cluster_url"),
                               redis_cluster=True)
    return stream_settings(services, tmp_path, single_flight_replicas=request.param == "single")


async def test_a_list_computed_before_an_event_is_not_kept_in_redis(fresh_settings, monkeypatch) -> None:  # noqa: ANN001
    settings = fresh_settings
    k = Keys(settings.redis_prefix)
    redis_client = sync_redis(settings, decode_responses=True)
    redis_client.zadd(k.pop_global, {"a": 10, "b": 9, "c": 8})
    compute = HeldCompute(monkeypatch)
    async with api_client(settings) as (app, c):
        await wait_live(app)
        messages = HeldMessages(monkeypatch, app.state.runtime.local)
        first = asyncio.create_task(c.get(HOME, params={"user_id": "r1", "k": 2}))
        await asyncio.wait_for(compute.reached.wait(), 10)  # the state is read: "a" not seen yet
        await apply_view(settings, "r1", "a")
        await messages.wait()  # published; not yet applied in the API process
        compute.release()
        assert ids(await first) == ["a", "b"]  # began before the event: its answer may predate it
        await settle()
        # the event is applied and its invalidation done: no list from before it may be in Redis
        key = k.recs("r1", "popularity", 2)
        kept = redis_client.get(key)
        assert kept is None or "\"a\"" not in kept, f"a list from before the event stayed in Redis: {kept}"
        messages.deliver()
        assert ids(await c.get(HOME, params={"user_id": "r1", "k": 2})) == ["b", "c"]
        await settle()  # a list computed after the event is kept, and its pending mark is gone
        assert [i["item_id"] for i in json.loads(redis_client.get(key))["items"]] == ["b", "c"]
        assert redis_client.smembers(k.recs_index("r1")) == {key}


async def test_the_local_copy_is_not_kept_and_later_requests_do_not_join_a_stale_computation(
        settings, redis_client, monkeypatch) -> None:  # noqa: ANN001
    k = Keys(settings.redis_prefix)
    redis_client.zadd(k.pop_global, {"a": 10, "b": 9, "c": 8})
    compute = HeldCompute(monkeypatch)
    async with api_client(settings) as (app, c):
        await wait_live(app)
        local = app.state.runtime.local
        token = local.token("r2")
        first = asyncio.create_task(c.get(HOME, params={"user_id": "r2", "k": 2}))
        await asyncio.wait_for(compute.reached.wait(), 10)
        await apply_view(settings, "r2", "a")
        for _ in range(200):  # the real subscription delivers the message
            if local.token("r2") != token:
                break
            await asyncio.sleep(0.02)
        assert local.token("r2") != token
        # a request that arrives after the invalidation must not be handed the held computation
        second = asyncio.create_task(c.get(HOME, params={"user_id": "r2", "k": 2}))
        await asyncio.sleep(0.1)  # the second request is in (it would wait on the held computation)
        compute.release()
        assert ids(await first) == ["a", "b"]
        assert ids(await second) == ["b", "c"]
        await settle()
        assert local.get(RecsId("r2", "popularity", 2)) is None or \
            local.get(RecsId("r2", "popularity", 2)).items == ("b", "c")
        assert ids(await c.get(HOME, params={"user_id": "r2", "k": 2})) == ["b", "c"]
        kept = redis_client.get(k.recs("r2", "popularity", 2))
        assert kept is None or "\"a\"" not in kept


async def test_a_replica_waiting_on_a_stale_computation_computes_once_the_leader_drops_it(
        settings, redis_client, monkeypatch) -> None:  # noqa: ANN001
    """Replica B waits for A's list (single flight across replicas); A's state read predates an event,
    so A keeps nothing: B computes as soon as A lets its lock go, not after its whole wait."""
    settings = settings.model_copy(update={"single_flight_wait_s": 60.0})
    k = Keys(settings.redis_prefix)
    redis_client.zadd(k.pop_global, {"a": 10, "b": 9, "c": 8})
    compute = HeldCompute(monkeypatch)
    async with api_client(settings) as (app1, c1), api_client(settings) as (app2, c2):
        await wait_live(app1)
        await wait_live(app2)
        first = asyncio.create_task(c1.get(HOME, params={"user_id": "r3", "k": 2}))
        await asyncio.wait_for(compute.reached.wait(), 10)
        await apply_view(settings, "r3", "a")
        second = asyncio.create_task(c2.get(HOME, params={"user_id": "r3", "k": 2}))
        await asyncio.sleep(0.2)  # B found A's lock and waits for A's list
        compute.release()
        assert ids(await first) == ["a", "b"]
        assert ids(await asyncio.wait_for(second, 10)) == ["b", "c"]  # far less than its 60 s wait
        assert app1.state.runtime.home.stale_dropped == 1
