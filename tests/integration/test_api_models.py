"""Model strategies, similar items, bandit, admin and hot reload, on a tiny trained run."""
import asyncio
import json

import pytest

from tests.integration.support import api_client, consume, train_tiny_run
from schemas.keys import Keys

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"
K = Keys("sr:")


@pytest.fixture(scope="module")
def run_artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("artifacts")
    train_tiny_run(d)
    return d


@pytest.fixture
def msettings(settings, run_artifacts, redis_client):
    redis_client.zadd(K.pop_global, {f"i{j}": 100 - j for j in range(50)})
    return settings.model_copy(update={"artifact_dir": run_artifacts})


def ids(body):
    return [i["item_id"] for i in body["items"]]


@pytest.mark.parametrize("strategy", ["ncf", "two_tower", "ease", "hybrid"])
async def test_model_strategies_serve_k_unseen_items(msettings, redis_client, strategy):
    redis_client.sadd(K.seen("u3"), "i3", "i8")
    redis_client.lpush(K.recent("u3"), "i3", "i8")
    async with api_client(msettings) as (app, c):
        got = await c.get(HOME, params={"user_id": "u3", "k": 8, "strategy": strategy, "explain": "true"})
    body = got.json()
    assert got.status_code == 200, body
    assert body["strategy"] == strategy and body["model_version"].startswith("run_")
    assert len(ids(body)) == 8 and len(set(ids(body))) == 8
    assert not {"i3", "i8"} & set(ids(body))
    assert all(i["reason"] for i in body["items"])


async def test_cold_user_gets_popularity_fill_and_recent_items_steer_ann(msettings, redis_client):
    redis_client.lpush(K.recent("newbie"), "i0", "i5")
    redis_client.zadd(K.pairs("i5"), {"i30": 3})
    async with api_client(msettings) as (app, c):
        cold = (await c.get(HOME, params={"user_id": "nobody", "k": 5, "strategy": "two_tower"})).json()
        warm = (await c.get(HOME, params={"user_id": "newbie", "k": 10, "strategy": "two_tower", "explain": "true"})).json()
    assert ids(cold) == ["i0", "i1", "i2", "i3", "i4"]  # nothing known: popularity fills
    reasons = {i["item_id"]: i["reason"] for i in warm["items"]}
    assert len(reasons) == 10
    assert any(r.startswith("similar to") or r.startswith("because you viewed") for r in reasons.values())


async def test_similar_items(msettings):
    async with api_client(msettings) as (app, c):
        got = await c.get("/api/v1/recommendations/similar/i7", params={"k": 5})
        unknown = await c.get("/api/v1/recommendations/similar/nope")
        bad = await c.get("/api/v1/recommendations/similar/i7", params={"k": 0})
    body = got.json()
    assert got.status_code == 200 and len(body["items"]) == 5 and "i7" not in ids(body)
    assert all(i["reason"] == "similar to Item 7" for i in body["items"]) or all(
        i["reason"].startswith("similar to") for i in body["items"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert unknown.status_code == 404 and bad.status_code == 422


async def test_bandit_follows_the_stored_state(msettings, redis_client):
    redis_client.hset(K.bandit("epsilon_greedy"), mapping={
        "popularity:pulls": 1000, "popularity:rewards": 900, "hybrid:pulls": 1000, "hybrid:rewards": 10,
        "ncf:pulls": 1000, "ncf:rewards": 5})
    s = msettings.model_copy(update={"bandit_epsilon": 0.0})
    async with api_client(s) as (app, c):
        got = [(await c.get(HOME, params={"user_id": f"b{j}", "strategy": "bandit", "k": 3})).json() for j in range(5)]
        models = (await c.get("/admin/models")).json()
    assert {g["strategy"] for g in got} == {"popularity"}
    assert models["bandit"]["arms"]["popularity"]["pulls"] == 1000


async def test_admin_models_reload_reindex_and_key(msettings, run_artifacts):
    s = msettings.model_copy(update={"admin_key": "s3cret"})
    async with api_client(s) as (app, c):
        assert (await c.get("/admin/models")).status_code == 401
        assert (await c.get("/admin/models", headers={"X-Admin-Key": "wrong"})).status_code == 401
        h = {"X-Admin-Key": "s3cret"}
        models = (await c.get("/admin/models", headers=h)).json()
        first = models["serving"]["run_id"]
        assert models["serving"]["models"]["two_tower"]["embedding_dim"] > 0
        assert models["serving"]["models"]["two_tower"]["index_size"] == 50
        reindexed = (await c.post("/admin/reindex", headers=h)).json()
        assert reindexed["indexes"]["ncf"] == 50
        # a second run promoted while requests are in flight: none fails
        second = await asyncio.to_thread(train_tiny_run, run_artifacts, ("ease", "two_tower"), "second", False, 1)
        load = [c.get(HOME, params={"user_id": f"l{j}", "k": 5, "strategy": "two_tower"}) for j in range(30)]
        reload = c.post("/admin/reload", headers=h, json={"run": second.name})
        results = await asyncio.gather(reload, *load)
        assert results[0].json() == {"run_id": second.name, "changed": True, "replicas_told": True}
        assert all(r.status_code == 200 for r in results[1:])
        assert (await c.get("/version")).json()["model_run"] == second.name
        gone = await c.get(HOME, params={"user_id": "u1", "strategy": "ncf"})
        assert gone.status_code == 503  # the new run has no ncf
        bad = await c.post("/admin/reload", headers=h, json={"run": "run_nope"})
        assert bad.status_code == 422
        back = (await c.post("/admin/reload", headers=h, json={"run": first})).json()
        assert back["run_id"] == first


async def test_model_updates_topic_triggers_reload(msettings, run_artifacts):
    from aiokafka import AIOKafkaProducer

    async with api_client(msettings) as (app, c):
        before = (await c.get("/version")).json()["model_run"]
        other = await asyncio.to_thread(train_tiny_run, run_artifacts, ("ease",), "topic", False, 2)
        await asyncio.sleep(1.0)  # the watcher reads from the end of the topic
        p = AIOKafkaProducer(bootstrap_servers=msettings.kafka_bootstrap)
        await p.start()
        try:
            await p.send_and_wait(msettings.topic("model-updates"),
                                  json.dumps({"run_id": other.name, "run_dir": str(other)}).encode())
        finally:
            await p.stop()
        for _ in range(100):
            now = (await c.get("/version")).json()["model_run"]
            if now != before:
                break
            await asyncio.sleep(0.1)
    assert now == other.name


async def test_admin_reload_announces_the_run_for_the_worker_to_invalidate(msettings, run_artifacts, redis_client):
    """The API never bumps the cache version itself: it publishes a ``model-updates`` record
    (the worker, the only writer, bumps on it: tests/integration/test_streams_state.py)."""
    redis_client.set(K.cache_version, 4)
    async with api_client(msettings) as (app, c):
        other = await asyncio.to_thread(train_tiny_run, run_artifacts, ("ease",), "announced", False, 3)
        got = (await c.post("/admin/reload", json={"run": other.name})).json()
        assert got == {"run_id": other.name, "changed": True, "replicas_told": True}
        records = await consume(msettings, "model-updates", want=1, timeout_s=10)
    assert [(r["run_id"], r["models"]) for r in records] == [(other.name, ["ease"])]
    assert redis_client.get(K.cache_version) == "4"
