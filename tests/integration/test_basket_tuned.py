"""The tuned basket policy end to end, against the real Redis (and the real broker for `train`):
the run's policy is served by default, `/admin/reload` switches to a shipped profile and back,
what is served is what the policy computes offline, `streamrec train` tunes and stores it, and
a 50-item basket is answered."""
import json
import random

import pytest

from inference.basket import profiles
from ranking.basket import BasketSignals, complements
from ranking.basket.cocover import BasketIndex
from schemas.basket_profiles import params_for
from schemas.keys import Keys
from tests.integration.support import api_client, train_tiny_run
from trainer.basket_export import POLICY_FILE, load_policy, save_index
from trainer.basket_tuning import COOCCURRENCE

pytestmark = pytest.mark.integration
BASKET = "/api/v1/recommendations/basket"
K = Keys("sr:")
#: i1 and i2 come in the same baskets with i0, i3 in the others
BASKETS = [["i0", "i1", "i2"]] * 20 + [["i0", "i3"]] * 10 + [["i4", "i5"]] * 5
PAIRS = {"i1": 20.0, "i2": 20.0, "i3": 10.0}
TUNED = {"default": {**COOCCURRENCE, "COCOVER_RHO": 1.0}}


@pytest.fixture(autouse=True)
def _profile():
    profiles.configure(None, "tuned")  # the default of the settings
    yield
    profiles.configure(None, "tuned")


def ids(body):
    return [i["item_id"] for i in body["items"]]


def tuned_run(settings, policy=TUNED):
    run_dir = train_tiny_run(settings.artifact_dir, models=("lightfm",))
    index = BasketIndex.from_baskets(BASKETS)
    save_index(index, run_dir)
    if policy is not None:
        (run_dir / POLICY_FILE).write_text(json.dumps({"profile": policy, "tuning": {}}))
    return run_dir, index


async def test_the_runs_tuned_policy_is_served_by_default_and_reload_switches(settings, redis_client):
    _, index = tuned_run(settings)
    redis_client.zadd(K.pairs("i0"), PAIRS)
    redis_client.zadd(K.pop_global, {"i0": 30, "i1": 20, "i2": 20, "i3": 10})
    async with api_client(settings) as (_, c):
        tuned = (await c.post(BASKET, json={"product_ids": ["i0"], "k": 2})).json()
        assert (await c.get("/version")).json()["basket_profile"] == "tuned"
        r = await c.post("/admin/reload", json={"profile": "precision"})
        assert r.status_code == 200 and r.json()["basket_profile"] == "precision"
        shipped = (await c.post(BASKET, json={"product_ids": ["i0"], "k": 2})).json()
        assert (await c.post("/admin/reload", json={"profile": "tuned"})).status_code == 200
        again = (await c.post(BASKET, json={"product_ids": ["i0"], "k": 2})).json()
    # the conditional cover of the run's baskets: i2 hits the baskets i1 hits, i3 the others
    assert tuned["profile"] == "tuned" and ids(tuned) == ["i1", "i3"]
    assert shipped["profile"] == "precision" and ids(shipped) == ["i1", "i2"]
    assert again == {**tuned, "request_id": again["request_id"]}
    # served = evaluated: the same policy over the same signals, offline
    sig = BasketSignals(pairs={"ANY": {"i0": PAIRS}}, pop_global={"i0": 30.0, "i1": 20.0, "i2": 20.0, "i3": 10.0},
                        index=index, item_count=index.counts(), n_baskets=float(index.n_baskets))
    offline = complements(["i0"], sig, params_for(TUNED, 1), [], 2)
    assert [x.item_id for x in offline] == ids(tuned)
    assert [round(x.score, 6) for x in offline] == [i["score"] for i in tuned["items"]]


async def test_without_a_tuned_policy_the_precision_profile_serves(settings, redis_client):
    tuned_run(settings, policy=None)
    redis_client.zadd(K.pairs("i0"), PAIRS)
    async with api_client(settings) as (_, c):
        body = (await c.post(BASKET, json={"product_ids": ["i0"], "k": 2})).json()
    assert body["profile"] == "precision" and set(ids(body)) <= set(PAIRS)


async def test_a_fifty_item_basket_is_answered_from_bounded_reads(settings, redis_client):
    r = random.Random(0)
    items = [f"p{j}" for j in range(120)]
    global BASKETS
    saved, BASKETS = BASKETS, [r.sample(items, 20) for _ in range(200)]
    try:
        tuned_run(settings, {"default": {**COOCCURRENCE, "COCOVER_RHO": 0.5, "COCOVER_BASKETS": 20,
                                         "PAIR_NORM": "conditional", "TOP_PAIRS": 30}})
    finally:
        BASKETS = saved
    for a in items:
        redis_client.zadd(K.pairs(a), {b: r.randint(1, 40) for b in r.sample(items, 60) if b != a})
    async with api_client(settings) as (_, c):
        resp = await c.post(BASKET, json={"product_ids": items[:50], "k": 10})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["profile"] == "tuned" and len(body["items"]) == 10 and not set(ids(body)) & set(items[:50])


async def test_size_weighted_pairs_are_read_off_the_runs_baskets(settings, redis_client):
    """PAIR_SIZE_POWER: i3 comes with i0 more often, but in large baskets; i1 in small ones."""
    global BASKETS
    filler = [f"x{j}" for j in range(8)]
    policy = {"default": {**COOCCURRENCE, "PAIR_SIZE_POWER": 1.0}}
    saved, BASKETS = BASKETS, [["i0", "i1"]] * 10 + [["i0", "i3", *filler]] * 15
    try:
        _, index = tuned_run(settings, policy)
    finally:
        BASKETS = saved
    counts = {"i3": 15.0, "i1": 10.0, **{x: 15.0 for x in filler}}
    redis_client.zadd(K.pairs("i0"), counts)
    async with api_client(settings) as (_, c):
        body = (await c.post(BASKET, json={"product_ids": ["i0"], "k": 3})).json()
    assert body["profile"] == "tuned" and ids(body)[0] == "i1"
    sig = BasketSignals(pairs={"ANY": {"i0": counts}}, index=index, item_count=index.counts(),
                        n_baskets=float(index.n_baskets))
    offline = complements(["i0"], sig, params_for(policy, 1), [], 3)
    assert [x.item_id for x in offline] == ids(body)
    assert [round(x.score, 6) for x in offline] == [i["score"] for i in body["items"]]


def test_train_tunes_the_basket_policy_into_the_run(settings, monkeypatch, tmp_path):
    """`streamrec train` on events with basket ids: the run carries the tuned policy."""
    from typer.testing import CliRunner

    from infra.cli import app
    from schemas.settings import get_settings

    r = random.Random(1)
    groups = [["milk", "bread", "butter", "jam"], ["beer", "chips", "salsa"], ["pasta", "sauce", "cheese"]]
    rows = ["user_id,item_id,timestamp,type,basket_id,segment"]
    for n in range(400):
        g = groups[n % 3]
        for it in r.sample(g, r.randint(2, len(g))):
            rows.append(f"u{n % 40},{it},{1_700_000_000 + n * 60},purchase,b{n},s{n % 2}")
    f = tmp_path / "baskets.csv"
    f.write_text("\n".join(rows) + "\n")
    for k in ("kafka_bootstrap", "redis_url", "topic_prefix", "data_dir", "artifact_dir"):
        monkeypatch.setenv(f"STREAMREC_{k.upper()}", str(getattr(settings, k)))
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["train", "--interactions", str(f), "--model", "popularity", "--no-progress"])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    from pathlib import Path

    run_dir = Path(res.output.strip().splitlines()[-1])
    doc = load_policy(run_dir)
    assert doc is not None and doc["tuning"]["holdout"].startswith("time") and doc["tuning"]["segment_mode"] == "use_order"
    params_for(doc["profile"], 1)
    assert (run_dir / "basket_index.npz").exists()
