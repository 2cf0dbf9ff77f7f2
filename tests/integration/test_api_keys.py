"""Producer keys on the real API (broker and Redis): scopes, the cached fast path, rate limits,
CORS, and the API refusing to start without an admin key."""
from __future__ import annotations

import subprocess
import sys

import pytest

from schemas.keys import Keys
from schemas.security import ApiKeySpec, hash_key
from tests.integration.support import api_client

pytestmark = pytest.mark.integration
K = Keys("sr:")
EVENT = {"type": "click", "user_id": "u1", "item_id": "i1"}


def keyed(settings, **extra):
    keys = [ApiKeySpec(name="producer", sha256=hash_key("p-key"), scopes=["events"], writes_per_s=1, burst=3),
            ApiKeySpec(name="reader", sha256=hash_key("r-key"), scopes=["read"])]
    return settings.model_copy(update={"api_keys": keys, "emit_impressions": False, **extra})


async def test_each_route_needs_a_key_with_its_scope(settings, redis_client):
    redis_client.zadd(K.pop_global, {"a": 3, "b": 2, "c": 1})
    home = ("/api/v1/recommendations/home", {"user_id": "u9", "k": 2})
    async with api_client(keyed(settings)) as (_, c):
        assert (await c.get(home[0], params=home[1])).status_code == 401
        assert (await c.get(home[0], params=home[1], headers={"X-Api-Key": "wrong"})).status_code == 401
        denied = await c.get(home[0], params=home[1], headers={"X-Api-Key": "p-key"})
        assert denied.status_code == 403 and "'read' scope" in denied.json()["detail"]
        ok = await c.get(home[0], params=home[1], headers={"X-Api-Key": "r-key"})
        assert ok.status_code == 200 and [i["item_id"] for i in ok.json()["items"]] == ["a", "b"]
        # the second read is answered from the in-process cache: the key is checked there too
        again = await c.get(home[0], params=home[1], headers={"X-Api-Key": "r-key"})
        assert again.status_code == 200 and again.json()["cached"] is True
        assert (await c.get(home[0], params=home[1])).status_code == 401
        assert (await c.post("/api/v1/events", json=EVENT, headers={"X-Api-Key": "r-key"})).status_code == 403
        assert (await c.post("/api/v1/events", json=EVENT)).status_code == 401
        # health stays open for probes
        assert (await c.get("/healthz")).status_code == 200


async def test_writes_are_rate_limited_per_key_with_retry_after(settings):
    async with api_client(keyed(settings)) as (_, c):
        codes = [(await c.post("/api/v1/events", json=EVENT, headers={"X-Api-Key": "p-key"})) for _ in range(5)]
    assert [r.status_code for r in codes[:3]] == [202, 202, 202]  # the burst
    limited = codes[3]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "over its rate" in limited.json()["detail"]


async def test_without_keys_the_public_routes_stay_open(settings):
    async with api_client(settings.model_copy(update={"emit_impressions": False})) as (_, c):
        assert (await c.post("/api/v1/events", json=EVENT)).status_code == 202


async def test_cors_allows_the_configured_origins_only(settings):
    async with api_client(keyed(settings, cors_origins=["https://shop.example"])) as (_, c):
        pre = await c.options("/api/v1/events", headers={"Origin": "https://shop.example",
                                                         "Access-Control-Request-Method": "POST",
                                                         "Access-Control-Request-Headers": "x-api-key"})
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://shop.example"
        other = await c.options("/api/v1/events", headers={"Origin": "https://evil.example",
                                                           "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers


def test_the_api_refuses_to_start_without_an_admin_key(settings, tmp_path):
    from infra.stack import child_env

    env = child_env(kafka_bootstrap=settings.kafka_bootstrap, redis_url=settings.redis_url,
                    data_dir=str(tmp_path), api_port="1")
    env.pop("STREAMREC_ADMIN_KEY", None)
    env.pop("STREAMREC_ALLOW_INSECURE", None)
    out = subprocess.run([sys.executable, "-m", "inference"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "needs an admin key: set STREAMREC_ADMIN_KEY" in out.stderr
