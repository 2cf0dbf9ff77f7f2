"""Basket complements and enrichment against the real Redis, seeded with the streams' keys."""
import pytest

from inference.basket import profiles
from tests.integration.support import api_client
from schemas.keys import Keys

pytestmark = pytest.mark.integration
BASKET = "/api/v1/recommendations/basket"
ENRICH = "/api/v1/products/enrich"
K = Keys("sr:")

CATALOG = {
    "drill": ("Cordless drill", "tools", "0"),
    "screws": ("Wood screws", "fixings", "0"),
    "bits": ("Drill bits", "fixings", "0"),
    "plugs": ("Wall plugs", "fixings", "1"),
    "anchors": ("Anchors", "fixings", "0"),
    "glasses": ("Safety glasses", "safety", "0"),
    "gloves": ("Work gloves", "safety", "1"),
    "tape": ("Tape measure", "measure", "0"),
    "pipe": ("Copper pipe", "plumbing", "0"),
    "ptfe": ("PTFE tape", "plumbing", "0"),
}


def seed(r):
    for item, (title, cat, pl) in CATALOG.items():
        r.hset(K.item(item), mapping={"title": title, "category": cat, "private_label": pl})
    r.zadd(K.pairs("drill"), {"screws": 10, "bits": 9, "plugs": 8, "anchors": 7, "glasses": 2})
    r.zadd(K.pairs_rev("drill"), {"screws": 10, "bits": 9, "plugs": 8, "anchors": 7, "glasses": 2})
    r.zadd(K.pairs("drill", "plumber"), {"pipe": 5, "ptfe": 4})
    r.zadd(K.pop_global, {"gloves": 100, "tape": 90, "glasses": 80, "drill": 70, "screws": 5})
    r.zadd(K.pop_seg("plumber"), {"pipe": 50, "ptfe": 40})


@pytest.fixture(autouse=True)
def _profile():
    profiles.configure(None, "precision")
    yield
    profiles.configure(None, "tuned")  # the settings' default, which other tests expect


def ids(body):
    return [i["item_id"] for i in body["items"]]


async def test_pairs_first_basket_items_excluded_segments_reported(settings, redis_client):
    seed(redis_client)
    async with api_client(settings) as (_, c):
        r = await c.post(BASKET, json={"product_ids": ["drill", "screws"], "k": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["profile"] == "precision" and body["segments"] == []
        assert "drill" not in ids(body) and "screws" not in ids(body)
        assert ids(body)[:3] == ["bits", "plugs", "anchors"]
        assert body["items"][0]["reason"] == "bought with drill"
        assert body["items"][0]["metadata"] is None


async def test_explicit_profession_uses_segment_pairs_and_expand(settings, redis_client):
    seed(redis_client)
    async with api_client(settings) as (_, c):
        r = await c.post(BASKET, json={"product_ids": ["drill"], "profession": "plumber", "k": 3, "expand": True})
        body = r.json()
        assert body["segments"] == [{"segment": "plumber", "weight": 1.0}]
        assert ids(body)[:2] == ["pipe", "ptfe"]
        assert body["items"][0]["metadata"] == {"title": "Copper pipe", "category": "plumbing", "private_label": False}


async def test_switching_profiles_trades_pairs_for_categories(settings, redis_client):
    seed(redis_client)
    async with api_client(settings) as (_, c):
        req = {"product_ids": ["drill"], "k": 5, "expand": True}
        precise = (await c.post(BASKET, json=req)).json()
        r = await c.post("/admin/reload", json={"profile": "diversity"})
        assert r.status_code == 200, r.text
        assert (await c.get("/version")).json()["basket_profile"] == "diversity"
        diverse = (await c.post(BASKET, json=req)).json()
        assert diverse["profile"] == "diversity"

    def from_pairs(body):
        return sum(1 for i in body["items"] if i["reason"].startswith("bought with"))

    def categories(body):
        return len({i["metadata"]["category"] for i in body["items"]})

    assert from_pairs(precise) == 5 and from_pairs(diverse) < from_pairs(precise)
    assert categories(diverse) > categories(precise)


async def test_unknown_items_fall_back_to_popularity(settings, redis_client):
    seed(redis_client)
    async with api_client(settings) as (_, c):
        body = (await c.post(BASKET, json={"product_ids": ["nothing-known"], "k": 2})).json()
        assert ids(body) == ["gloves", "tape"] and body["items"][0]["reason"] == "popular"


async def test_bad_input_is_a_clear_422(settings, redis_client):
    async with api_client(settings) as (_, c):
        for bad in ({"product_ids": []}, {"product_ids": ["has space"]}, {"product_ids": ["a"], "k": 0},
                    {"product_ids": ["a"], "profession": "no/slash"}, {"k": 3}):
            r = await c.post(BASKET, json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["detail"]
        r = await c.post("/admin/reload", json={"profile": "no-such-profile"})
        assert r.status_code == 422 and "no-such-profile" in r.text


async def test_enrich(settings, redis_client):
    seed(redis_client)
    async with api_client(settings) as (_, c):
        r = await c.post(ENRICH, json={"product_ids": ["gloves", "ghost"]})
        assert r.status_code == 200, r.text
        assert r.json()["items"] == [
            {"item_id": "gloves", "found": True, "title": "Work gloves", "category": "safety", "private_label": True},
            {"item_id": "ghost", "found": False, "title": None, "category": None, "private_label": None},
        ]


async def test_with_a_trained_run_segments_are_detected(settings, redis_client):
    """A served LightFM run with basket segment centroids: no profession → a detected mix."""
    from tests.integration.support import synthetic_events, train_tiny_run
    from trainer.basket_export import save_segment_centroids, segment_centroids
    from trainer.artifacts import load_run

    run_dir = train_tiny_run(settings.artifact_dir, models=("lightfm",))
    run = load_run(run_dir)
    events, meta = synthetic_events()
    events["segment"] = events["item_id"].map(meta["category"]).map(lambda c: f"seg-{c}")  # one segment per category
    save_segment_centroids(segment_centroids(events, run.item_ids, run.embeddings["lightfm"]), run_dir)
    # i0, i5, i10 share category c0: a basket of them should look like seg-c0
    redis_client.zadd(K.pairs("i0", "seg-c0"), {"i15": 3, "i20": 2})
    redis_client.zadd(K.pairs("i0"), {"i1": 5})
    redis_client.zadd(K.pop_global, {"i2": 10, "i3": 9})
    async with api_client(settings) as (_, c):
        body = (await c.post(BASKET, json={"product_ids": ["i0", "i5", "i10"], "k": 4})).json()
    assert body["segments"], body
    assert body["segments"][0]["segment"] == "seg-c0"
    assert abs(sum(s["weight"] for s in body["segments"]) - 1) < 1e-6
    assert "i15" in ids(body)


async def test_with_a_cover_model_in_the_run_the_list_covers_both_kinds_of_basket(settings, redis_client):
    """COVERAGE_GREEDY at serving time: the run's basket_cover.npz says i1 and i2 come in the
    same baskets and i3 in the others, so the top-2 is i1 + i3, not the two strongest pairs."""
    import numpy as np

    from ranking.basket.cover import CoverModel
    from tests.integration.support import train_tiny_run
    from trainer.basket_cover import save_cover_model

    run_dir = train_tiny_run(settings.artifact_dir, models=("lightfm",))
    theta = np.array([[0.5, 0.9, 0.9, 0.02], [0.5, 0.02, 0.02, 0.9]])
    save_cover_model(CoverModel({"i0": 0, "i1": 1, "i2": 2, "i3": 3}, np.array([0.6, 0.4]), theta), run_dir)
    redis_client.zadd(K.pairs("i0"), {"i1": 10, "i2": 9, "i3": 6})
    async with api_client(settings) as (_, c):
        body = (await c.post(BASKET, json={"product_ids": ["i0"], "k": 2})).json()
    assert ids(body) == ["i1", "i3"], body


async def test_redis_unreachable_is_a_503_not_a_500(settings):
    from infra.stack import free_port

    dead = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "emit_impressions": False})
    async with api_client(dead) as (_, c):
        r = await c.post(BASKET, json={"product_ids": ["drill"]})
        assert r.status_code == 503 and "redis" in r.json()["detail"].lower()
        r = await c.post(ENRICH, json={"product_ids": ["drill"]})
        assert r.status_code == 503
