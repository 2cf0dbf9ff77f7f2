"""Experiments through the API on a real Redis and broker: create, list, serve arms (the response
names experiment and arm, sticky per user), reshare, stop, bad input, and the report on counters
of known values."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest

from tests.integration.support import api_client, train_tiny_run

pytestmark = pytest.mark.integration

ADMIN = {"X-Admin-Key": "exp-key"}


def _pop_body(name: str) -> dict:
    """Two arms that need no trained run."""
    return {"name": name, "arms": [{"name": "control", "share": 0.5, "strategy": "popularity"},
                                   {"name": "treatment", "share": 0.5, "strategy": "popularity", "params": {"fill": False}}]}


def _body(name: str = "ranker", **kw) -> dict:
    return {"name": name, "arms": [{"name": "control", "share": 0.5, "strategy": "popularity"},
                                   {"name": "treatment", "share": 0.5, "strategy": "ease"}], **kw}


def test_create_serve_reshare_stop(settings, tmp_path):
    settings = settings.model_copy(update={"admin_key": "exp-key", "emit_impressions": False})
    train_tiny_run(settings.artifact_dir, models=("ease",))

    async def go():
        async with api_client(settings) as (app, client):
            assert (await client.post("/admin/experiments", json=_body())).status_code == 401
            got = await client.post("/admin/experiments", json=_body(), headers=ADMIN)
            assert got.status_code == 201, got.text
            doc = got.json()
            assert doc["status"] == "running" and [a["name"] for a in doc["arms"]] == ["control", "treatment"]
            assert (settings.artifact_dir / "experiments" / "ranker.json").exists()  # the artifact registry
            listed = (await client.get("/api/v1/experiments")).json()
            assert listed["running"] == ["ranker"] and listed["experiments"][0]["shares"] == {"control": 0.5, "treatment": 0.5}

            arms = {}
            for i in range(40):
                user = f"u{i}"
                r = (await client.get("/api/v1/recommendations/home", params={"user_id": user, "k": 5})).json()
                assert r["experiment"] == "ranker" and r["arm"] in ("control", "treatment")
                assert r["strategy"] == ("popularity" if r["arm"] == "control" else "ease")
                again = (await client.get("/api/v1/recommendations/home", params={"user_id": user, "k": 5})).json()
                assert again["arm"] == r["arm"]  # sticky (and the cached path says so too)
                arms[user] = r["arm"]
            assert set(arms.values()) == {"control", "treatment"}
            # a request naming a strategy is outside the experiment
            r = (await client.get("/api/v1/recommendations/home", params={"user_id": "u1", "strategy": "popularity"})).json()
            assert r.get("experiment") is None

            got = await client.post("/admin/experiments/ranker/shares", json={"shares": {"control": 1.0, "treatment": 0.0}},
                                    headers=ADMIN)
            assert got.status_code == 200, got.text
            for user in arms:
                r = (await client.get("/api/v1/recommendations/home", params={"user_id": user, "k": 5})).json()
                assert r["arm"] == "control"
            assert (await client.post("/admin/experiments/ranker/stop", headers=ADMIN)).json()["status"] == "stopped"
            r = (await client.get("/api/v1/recommendations/home", params={"user_id": "u1", "k": 5})).json()
            assert r.get("experiment") is None
            listed = (await client.get("/api/v1/experiments")).json()
            assert listed["running"] == [] and listed["experiments"][0]["status"] == "stopped"

    asyncio.run(go())


@pytest.mark.parametrize("body, why", [
    (_body(arms=[{"name": "a", "share": 1.0}]), "at least 2"),
    (_body(arms=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.6}]), "add up to 1"),
    (_body(arms=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "strategy": "nope"}]), "unknown strategy"),
    (_body(arms=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "run": "run_missing"}]), "run_missing"),
    (_body(arms=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "params": {"mmr_lambda": 3}}]), "mmr_lambda"),
    (_body(arms=[{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "params": {"x": 1}}]), "unknown params"),
    (_body(name="bad.name"), "name"),
    (_body(traffic=[0.6, 0.2]), "traffic"),
    (_body(), "needs a trained run"),  # no run serves: the ease arm could not be served
])
def test_bad_input_is_422_with_the_reason(settings, body, why):
    async def go():
        async with api_client(settings) as (_, client):
            got = await client.post("/admin/experiments", json=body)
            assert got.status_code == 422, got.text
            assert why in got.text

    asyncio.run(go())


def test_conflicts_are_409(settings):
    train_tiny_run(settings.artifact_dir, models=("ease",))

    async def go():
        async with api_client(settings) as (_, client):
            assert (await client.post("/admin/experiments", json=_body("a", traffic=[0, 0.6]))).status_code == 201
            assert (await client.post("/admin/experiments", json=_body("a"))).status_code == 409  # name taken
            got = await client.post("/admin/experiments", json=_body("b", traffic=[0.5, 1]))
            assert got.status_code == 409 and "overlap" in got.text
            assert (await client.post("/admin/experiments", json=_body("c", traffic=[0.6, 1]))).status_code == 201
            assert (await client.post("/admin/experiments/zzz/stop")).status_code == 404
            assert (await client.get("/api/v1/experiments/zzz")).status_code == 404

    asyncio.run(go())


def test_report_on_known_counters(settings, redis_client):
    """Counters written where the stream keeps them give the figures computed by hand."""
    from schemas.keys import Keys

    async def go():
        async with api_client(settings) as (_, client):
            assert (await client.post("/admin/experiments", json=_pop_body("rep"))).status_code == 201
            day = datetime.now(timezone.utc).date().isoformat()
            redis_client.hset(Keys(settings.redis_prefix).stats_day(day), mapping={
                "rep.control:impressions": 20000, "rep.control:clicks": 1000, "rep.control:positive": 400,
                "rep.control:conversions": 100, "rep.control:rating_sum": 400, "rep.control:rating_count": 100,
                "rep.control:rating_sq": 1700, "rep.control:lists": 2000,
                "rep.treatment:impressions": 20000, "rep.treatment:clicks": 1400, "rep.treatment:positive": 400,
                "rep.treatment:conversions": 100, "rep.treatment:rating_sum": 410, "rep.treatment:rating_count": 100,
                "rep.treatment:rating_sq": 1780, "other:clicks": 5})
            redis_client.pfadd(Keys(settings.redis_prefix).experiment_users("rep.control"), *[f"u{i}" for i in range(50)])
            rep = (await client.get("/api/v1/experiments/rep")).json()
            ctl, trt = rep["arms"]
            assert ctl["control"] and ctl["exposure"] == {"users": 50, "lists": 2000, "impressions": 20000}
            assert ctl["metrics"]["ctr"]["value"] == 0.05 and trt["metrics"]["ctr"]["value"] == 0.07
            assert ctl["metrics"]["rating_mean"]["value"] == 4.0
            vs = trt["vs_control"]
            assert vs["ctr"]["lift"] == pytest.approx(0.4) and vs["ctr"]["significant"] and vs["ctr"]["verdict"] == "better"
            assert vs["ctr"]["lift_ci"][0] > 0
            assert vs["positive_rate"]["diff"] == 0 and not vs["positive_rate"]["significant"]
            assert vs["rating_mean"]["diff"] == pytest.approx(0.1)
            json.dumps(rep)  # self-describing JSON for the dashboard

    asyncio.run(go())


def test_an_arm_serves_its_own_run(settings):
    """An arm naming a run makes the API hold that run besides the serving one."""
    champion = train_tiny_run(settings.artifact_dir, models=("ease",), tag="champ")
    challenger = train_tiny_run(settings.artifact_dir, models=("ease",), tag="chall", make_current=False, seed=1)
    body = {"name": "runs", "arms": [{"name": "champion", "share": 0.5},
                                     {"name": "challenger", "share": 0.5, "run": challenger.name}]}

    async def go():
        async with api_client(settings) as (app, client):
            got = await client.post("/admin/experiments", json=body)
            assert got.status_code == 201, got.text
            seen = {}
            for i in range(30):
                r = (await client.get("/api/v1/recommendations/home", params={"user_id": f"u{i}", "k": 5})).json()
                seen[r["arm"]] = r["model_version"]
            assert seen == {"champion": champion.name, "challenger": challenger.name}
            assert app.state.runtime.models.current.run_id == champion.name  # the serving run is unchanged

    asyncio.run(go())


@pytest.fixture
def cli_env(settings, monkeypatch):
    from schemas.settings import get_settings

    for k, v in {"REDIS_URL": settings.redis_url, "ARTIFACT_DIR": str(settings.artifact_dir),
                 "DATA_DIR": str(settings.data_dir), "KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
                 "TOPIC_PREFIX": settings.topic_prefix}.items():
        monkeypatch.setenv(f"STREAMREC_{k}", v)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_cli_create_list_report(settings, redis_client, cli_env):
    from typer.testing import CliRunner

    from infra.cli import app
    from schemas.keys import Keys

    run = CliRunner().invoke
    got = run(app, ["experiment", "create", "cli", "--arm", "control=0.7", "--arm", "b=0.3,strategy=popularity,mmr_lambda=0.9"])
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["arms"][1]["params"] == {"mmr_lambda": 0.9}
    assert run(app, ["experiment", "create", "cli2", "--arm", "control=0.7", "--arm", "b=0.4"]).exit_code == 2
    got = run(app, ["experiment", "list"])
    assert "cli" in got.output and "0.30" in got.output
    got = run(app, ["experiment", "shares", "cli", "--share", "control=0.5", "--share", "b=0.5"])
    assert got.exit_code == 0 and "moved 20.0%" in got.output, got.output
    day = datetime.now(timezone.utc).date().isoformat()
    redis_client.hset(Keys(settings.redis_prefix).stats_day(day), mapping={
        "cli.control:impressions": 1000, "cli.control:clicks": 50, "cli.b:impressions": 1000, "cli.b:clicks": 80})
    got = run(app, ["experiment", "report", "cli", "--json"])
    assert got.exit_code == 0, got.output
    rep = json.loads(got.output)
    assert rep["arms"][1]["metrics"]["ctr"]["value"] == 0.08
    got = run(app, ["experiment", "report", "cli"])
    assert "ctr" in got.output and "lift +60.0%" in got.output, got.output
    assert run(app, ["experiment", "stop", "cli"]).exit_code == 0
    assert run(app, ["experiment", "report", "nope"]).exit_code == 2


def test_experiments_declared_in_a_file_are_created_at_start(settings, tmp_path):
    spec = tmp_path / "experiments.json"
    spec.write_text(json.dumps([_pop_body("from-file"), {"name": "broken", "arms": []}]))
    settings = settings.model_copy(update={"experiments_file": spec})

    async def go():
        async with api_client(settings) as (_, client):
            listed = (await client.get("/api/v1/experiments")).json()
            assert listed["running"] == ["from-file"]  # the bad entry is logged and skipped
        async with api_client(settings) as (_, client):  # a restart keeps it, creates nothing twice
            assert (await client.get("/api/v1/experiments")).json()["running"] == ["from-file"]

    asyncio.run(go())


def test_interleaving_merges_both_arms_and_reports_a_win_rate(settings, redis_client):
    from schemas.keys import Keys

    train_tiny_run(settings.artifact_dir, models=("ease", "ncf"))
    body = {"name": "mix", "kind": "interleaving", "arms": [{"name": "control", "share": 0.5, "strategy": "ease"},
                                                            {"name": "treatment", "share": 0.5, "strategy": "ncf"}]}

    async def go():
        async with api_client(settings) as (app, client):
            assert (await client.post("/admin/experiments", json=body)).status_code == 201
            teams = set()
            for i in range(10):
                r = (await client.get("/api/v1/recommendations/home", params={"user_id": f"u{i}", "k": 8})).json()
                assert r["experiment"] == "mix" and r["arm"] == "interleaved" and r["strategy"] == "interleaving"
                ids = [it["item_id"] for it in r["items"]]
                assert len(ids) == len(set(ids)) == 8
                teams |= {it["team"] for it in r["items"]}
                pop = (await client.get("/api/v1/recommendations/home",
                                        params={"user_id": f"u{i}", "k": 8, "strategy": "ease"})).json()
                # every item the control team drafted comes from the control's own list
                assert {it["item_id"] for it in r["items"] if it["team"] == "control"} <= {x["item_id"] for x in pop["items"]}
            assert teams == {"control", "treatment"}
            day = datetime.now(timezone.utc).date().isoformat()
            redis_client.hset(Keys(settings.redis_prefix).stats_day(day), mapping={
                "mix.control:impressions": 4000, "mix.control:clicks": 120,
                "mix.treatment:impressions": 4000, "mix.treatment:clicks": 200})
            rep = (await client.get("/api/v1/experiments/mix")).json()
            il = rep["interleaving"]
            assert il["clicks"] == {"control": 120, "treatment": 200} and il["win_rate"] == pytest.approx(0.375)
            assert il["significant"] and il["winner"] == "treatment"

    asyncio.run(go())


def test_shadow_logs_both_lists_off_the_request_path(settings, redis_client):
    """Everyone is served the first arm; for the second arm's users the API also computes its list
    in the background and logs both, with their agreement and latencies."""
    train_tiny_run(settings.artifact_dir, models=("ease", "ncf"))
    body = {"name": "shade", "kind": "shadow", "arms": [{"name": "served", "share": 0.5, "strategy": "ease"},
                                                        {"name": "candidate", "share": 0.5, "strategy": "ncf"}]}

    async def go():
        async with api_client(settings) as (app, client):
            assert (await client.post("/admin/experiments", json=body)).status_code == 201
            served = {}
            for i in range(30):
                r = (await client.get("/api/v1/recommendations/home", params={"user_id": f"u{i}", "k": 6})).json()
                assert r["experiment"] == "shade" and r["arm"] == "served" and r["strategy"] == "ease"
                served[f"u{i}"] = [it["item_id"] for it in r["items"]]
                await client.get("/api/v1/recommendations/home", params={"user_id": f"u{i}", "k": 6})  # cached: no shadow
            home = app.state.runtime.home
            for _ in range(100):  # the background computations finish
                if not home.shadows_in_flight:
                    break
                await asyncio.sleep(0.05)
            rep = (await client.get("/api/v1/experiments/shade")).json()
            sh = rep["shadow"]
            sampled = [u for u in served if home.experiments.pick(u).arm.name == "candidate"]
            assert sh["requests"] + sh["dropped"] == len(sampled) and sh["requests"] > 0
            assert 0 <= sh["overlap_at_k"] <= 1 and 0 <= sh["rank_biased_overlap"] <= 1
            assert sh["shadow_ms"]["p50"] > 0 and sh["served_ms"]["mean"] > 0
            rec = sh["recent"][0]
            assert rec["served"] == served[rec["user_id"]] and len(rec["shadow"]) == 6
            ncf = (await client.get("/api/v1/recommendations/home",
                                    params={"user_id": rec["user_id"], "k": 6, "strategy": "ncf"})).json()
            assert rec["shadow"] == [it["item_id"] for it in ncf["items"]]  # the challenger's own list

    asyncio.run(go())


def test_report_with_cuped_on_known_per_user_values(settings, redis_client):
    """Each exposed user's clicks in the arm (y) and before the start (x), where the stream keeps
    them: CUPED finds the +1 click per user with far less variance than the raw difference."""
    import random
    from datetime import timedelta

    from schemas.keys import Keys

    keys = Keys(settings.redis_prefix)

    async def go():
        async with api_client(settings) as (_, client):
            assert (await client.post("/admin/experiments", json=_pop_body("cu"))).status_code == 201
            today = datetime.now(timezone.utc).date()
            before = (today - timedelta(days=3)).isoformat()
            rng = random.Random(0)
            for arm, lift in (("control", 0), ("treatment", 1)):
                users = [f"{arm}-{i}" for i in range(300)]
                redis_client.sadd(keys.experiment_members(f"cu.{arm}"), *users)
                for u in users:
                    x = rng.randint(0, 20)
                    redis_client.hset(keys.user_stats(u), mapping={
                        f"{before}:hybrid:clicks": x, f"{today.isoformat()}:cu.{arm}:clicks": x + lift + rng.choice([0, 1]),
                        f"{today.isoformat()}:other:clicks": 50})
            rep = (await client.get("/api/v1/experiments/cu", params={"cuped": "true"})).json()
            cu = rep["cuped"]
            assert cu["users"] == {"control": 300, "treatment": 300}
            t = cu["arms"]["treatment"]
            assert abs(t["diff"] - 1) < 0.2 and t["ci"][1] - t["ci"][0] < 0.4  # the +1, tightly
            assert t["variance_reduction"] > 0.9 and t["ci_raw"][1] - t["ci_raw"][0] > 3 * (t["ci"][1] - t["ci"][0])
            assert "cuped" not in (await client.get("/api/v1/experiments/cu")).json()

    asyncio.run(go())
