"""Home recommendations against the real Redis: popularity, cache, invalidation, filters, bad input."""
import asyncio

import pytest

from tests.integration.support import api_client
from schemas.keys import Keys

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"
K = Keys("sr:")


def seed(r, pop: dict, seen: dict | None = None, items: dict | None = None, users: dict | None = None):
    r.zadd(K.pop_global, pop)
    for user, its in (seen or {}).items():
        r.sadd(K.seen(user), *its)
    for item, fields in (items or {}).items():
        r.hset(K.item(item), mapping=fields)
    for user, fields in (users or {}).items():
        r.hset(K.user_profile(user), mapping=fields)


def ids(body):
    return [i["item_id"] for i in body["items"]]


async def wait_live(app):
    """The in-process cache serves only once its invalidation subscription is confirmed."""
    for _ in range(100):
        if app.state.runtime.local.live:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("invalidation subscription never became live")


async def test_popularity_minus_seen_then_cached(settings, redis_client):
    seed(redis_client, {"a": 10, "b": 9, "c": 8, "d": 1}, seen={"u1": ["b"]})
    async with api_client(settings) as (app, c):
        await wait_live(app)
        first = (await c.get(HOME, params={"user_id": "u1", "k": 3})).json()
        second = (await c.get(HOME, params={"user_id": "u1", "k": 3})).json()
        # the raw ASGI fast path finds the list the route cached for the default strategy
        from inference.app import CachedHomeFastPath

        rt = app.state.runtime
        assert rt.local.get(CachedHomeFastPath(None, rt)._key(b"user_id=u1&k=3")) is not None
    assert ids(first) == ["a", "c", "d"] and first["cached"] is False
    assert ids(second) == ids(first) and second["cached"] is True
    assert first["request_id"] != second["request_id"]
    key = K.recs("u1", "popularity", 3)
    for _ in range(50):  # written just after the answer
        if redis_client.exists(key):
            break
        await asyncio.sleep(0.02)
    assert redis_client.ttl(key) > 0 and key in redis_client.smembers(K.recs_index("u1"))


async def test_served_list_counts_expire_with_the_user_state(settings, redis_client):
    """A user who only ever receives lists: their served-list counters expire like their other keys."""
    seed(redis_client, {"a": 10, "b": 9})
    settings = settings.model_copy(update={"user_state_ttl_s": 3600})  # opt-in
    async with api_client(settings) as (app, c):
        await c.get(HOME, params={"user_id": "only-lists", "k": 2})
        await app.state.runtime.home.flush_served_counts()
    key = K.user_stats("only-lists")
    assert redis_client.hgetall(key) and 0 < redis_client.ttl(key) <= settings.user_state_ttl_s


async def test_invalidation_message_evicts_the_local_copy(settings, redis_client):
    seed(redis_client, {"a": 10, "b": 9})
    async with api_client(settings) as (app, c):
        await wait_live(app)
        assert ids((await c.get(HOME, params={"user_id": "u2", "k": 2})).json()) == ["a", "b"]
        # what the stream agent does for a new event of u2: state, delete the lists, tell the APIs
        redis_client.zincrby(K.pop_global, 100, "z")
        for _ in range(50):  # the Redis copy is written just after the answer
            cached = redis_client.smembers(K.recs_index("u2"))
            if K.recs("u2", "popularity", 2) in cached:
                break
            await asyncio.sleep(0.02)
        redis_client.delete(K.recs_index("u2"), *cached)  # the index too, as the agents do
        redis_client.publish(K.invalidate_channel, '["u2"]')
        for _ in range(50):
            body = (await c.get(HOME, params={"user_id": "u2", "k": 2})).json()
            if not body["cached"]:
                break
            await asyncio.sleep(0.05)
    assert body["cached"] is False and ids(body) == ["z", "a"]


async def test_fresh_user_sees_current_popularity(settings, redis_client):
    seed(redis_client, {"a": 10})
    async with api_client(settings) as (app, c):
        await wait_live(app)
        assert ids((await c.get(HOME, params={"user_id": "f1", "k": 1})).json()) == ["a"]
        redis_client.zincrby(K.pop_global, 50, "hot")
        assert ids((await c.get(HOME, params={"user_id": "f2", "k": 1})).json()) == ["hot"]


async def test_concurrent_misses_compute_once(settings, redis_client):
    seed(redis_client, {f"i{j}": j for j in range(1, 50)})
    async with api_client(settings) as (app, c):
        await wait_live(app)
        got = await asyncio.gather(*[c.get(HOME, params={"user_id": "sf", "k": 5}) for _ in range(20)])
        misses = app.state.runtime.metrics.miss._value.get()
    assert all(g.status_code == 200 for g in got)
    assert len({tuple(ids(g.json())) for g in got}) == 1
    assert misses == 1


async def test_segment_level_caps_and_lists(settings, redis_client):
    seed(redis_client, {"a": 10, "b": 9, "c": 8, "d": 7, "e": 6},
         items={"a": {"category": "x", "level": "1", "title": "Alpha"}, "b": {"category": "x", "level": "3"},
                "c": {"category": "x", "level": "1"}, "d": {"category": "y", "level": "1"}},
         users={"nurse": {"segment": "nurses", "level": "2"}})
    redis_client.zadd(K.pop_seg("nurses"), {"e": 5, "d": 4})
    async with api_client(settings) as (app, c):
        body = (await c.get(HOME, params={"user_id": "nurse", "k": 3, "explain": "true"})).json()
        assert ids(body) == ["e", "d", "a"]  # segment first; b is above the user's level
        assert body["items"][0]["reason"] == "popular in your segment (nurses)"
        capped = (await c.get(HOME, params={"user_id": "anon", "k": 4, "category_cap": 1})).json()
        assert ids(capped) == ["a", "d", "e"][:3] or ids(capped)[:2] == ["a", "d"]
        assert sum(1 for i in ids(capped) if i in ("a", "b", "c")) == 1
        excl = (await c.get(HOME, params={"user_id": "anon", "k": 3, "exclude": "a,category:y"})).json()
        assert ids(excl) == ["b", "c", "e"]
        incl = (await c.get(HOME, params={"user_id": "anon", "k": 3, "include": "category:y,e"})).json()
        assert ids(incl) == ["d", "e"]


async def test_bad_input_gets_422_with_a_message(settings, redis_client):
    async with api_client(settings) as (app, c):
        for params, words in [({"user_id": "u", "k": 0}, "k: must be between 1 and 100"),
                              ({"user_id": "u", "k": 1000}, "k must be between"),
                              ({"user_id": "u", "strategy": "nope"}, "unknown strategy"),
                              ({"user_id": "bad id!"}, "user_id"),
                              ({"k": 3}, "user_id")]:
            got = await c.get(HOME, params=params)
            assert got.status_code == 422, params
            assert words in str(got.json()["detail"]), got.json()


async def test_model_strategy_without_a_run_is_503_with_the_fix(settings, redis_client):
    async with api_client(settings) as (app, c):
        got = await c.get(HOME, params={"user_id": "u", "strategy": "ncf"})
        hybrid = await c.get(HOME, params={"user_id": "u", "strategy": "hybrid"})
    assert got.status_code == 503
    assert "model not trained yet" in got.json()["detail"] and "streamrec train --model ncf" in got.json()["detail"]
    assert hybrid.status_code == 200  # hybrid without models falls back to popularity


async def test_health_version_metrics(settings, redis_client):
    seed(redis_client, {"a": 1})
    async with api_client(settings) as (app, c):
        await wait_live(app)
        assert (await c.get("/healthz")).json() == {"status": "ok", "redis": True, "broker": True}
        assert (await c.get("/version")).json()["model_run"] is None
        await c.get(HOME, params={"user_id": "m", "k": 1})
        await c.get(HOME, params={"user_id": "m", "k": 1})
        text = (await c.get("/metrics")).text
    assert 'streamrec_recs_cache_total{result="hit_local"} 1.0' in text
    assert 'streamrec_http_requests_total{method="GET",route="/version",status="200"} 1.0' in text
    assert "streamrec_degraded_answers_total" in text and "streamrec_strategy_total" in text


async def test_version_shows_and_reload_switches_the_basket_profile(settings):
    from inference.basket.profiles import load_profiles

    names = sorted(load_profiles(None))
    async with api_client(settings) as (app, c):
        before = (await c.get("/version")).json()["basket_profile"]
        assert before == settings.basket_profile
        other = next((n for n in names if n != before), before)
        got = await c.post("/admin/reload", json={"profile": other})
        assert got.status_code == 200 and got.json()["basket_profile"] == other
        assert (await c.get("/version")).json()["basket_profile"] == other
        assert (await c.post("/admin/reload", json={"profile": "no-such-profile"})).status_code == 422
        await c.post("/admin/reload", json={"profile": before})
