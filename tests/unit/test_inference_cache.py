"""The in-process body cache: variants, eviction by user and by generation, single-flight."""
import asyncio

import orjson

from inference.cache import CachedList, LocalCache


def entry(user="u1"):
    return CachedList.from_payload({"user_id": user, "strategy": "popularity", "model_version": None,
                                    "cached": False, "degraded": False,
                                    "items": [{"item_id": "a", "score": 1.0, "reason": None}]})


def test_bodies_are_valid_json_with_their_own_request_id():
    e = entry()
    fresh, cached = orjson.loads(e.body("r1", False)), orjson.loads(e.body("r2", True))
    assert (fresh["request_id"], fresh["cached"]) == ("r1", False)
    assert (cached["request_id"], cached["cached"]) == ("r2", True)
    back = CachedList.from_redis(e.redis_value)
    assert back.items == ("a",) and orjson.loads(back.body("r3", True))["cached"] is True
    assert orjson.loads(back.body("r4", False))["cached"] is False


def test_not_live_means_not_used():
    c = LocalCache()
    assert not c.put(("u1", "p", 10, ""), entry(), c.token("u1"))
    c.live = True
    assert c.put(("u1", "p", 10, ""), entry(), c.token("u1"))
    c.live = False
    assert c.get(("u1", "p", 10, "")) is None


def test_a_list_computed_across_an_invalidation_is_not_kept():
    c = LocalCache()
    c.live = True
    token = c.token("u1")
    c.on_message(b'["u1"]')
    assert not c.put(("u1", "p", 10, ""), entry(), token)
    token2 = c.token("u2")
    c.on_message(b'["*"]')
    assert not c.put(("u2", "p", 10, ""), entry("u2"), token2)


def test_eviction_per_user_and_all():
    c = LocalCache()
    c.live = True
    for user in ("u1", "u2"):
        c.put((user, "p", 10, ""), entry(user), c.token(user))
    c.on_message('["u1"]')
    assert c.get(("u1", "p", 10, "")) is None and c.get(("u2", "p", 10, "")) is not None
    c.on_message(b"not json")  # unreadable: drop everything rather than risk a stale list
    assert c.entries == {}


def test_expired_entries_are_not_served():
    c = LocalCache(ttl_s=-1)
    c.live = True
    c.put(("u1", "p", 10, ""), entry(), c.token("u1"))
    assert c.get(("u1", "p", 10, "")) is None


def test_single_flight_computes_once():
    c = LocalCache()
    calls = []

    async def compute():
        calls.append(1)
        await asyncio.sleep(0.01)
        return "list"

    async def go():
        return await asyncio.gather(*[c.single_flight(("k",), compute) for _ in range(10)])

    got = asyncio.run(go())
    assert len(calls) == 1
    assert [r for r, _ in got] == ["list"] * 10 and sum(leader for _, leader in got) == 1


def test_single_flight_shares_the_failure():
    c = LocalCache()

    async def boom():
        await asyncio.sleep(0.01)
        raise ValueError("x")

    async def go():
        return await asyncio.gather(*[c.single_flight(("k",), boom) for _ in range(3)], return_exceptions=True)

    assert all(isinstance(r, ValueError) for r in asyncio.run(go()))
