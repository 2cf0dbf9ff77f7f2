"""A bandit-served list's impressions log the chance with which the bandit chose its arm (times
each position's propensity), read back from the real broker; a list served by a named strategy
logs 1."""
import pytest

from schemas.keys import Keys
from tests.integration.support import api_client, consume, train_tiny_run

pytestmark = pytest.mark.integration
HOME = "/api/v1/recommendations/home"
K = Keys("sr:")


async def test_bandit_impressions_carry_the_arms_chance(settings, redis_client, tmp_path):
    run_artifacts = tmp_path / "artifacts"
    train_tiny_run(run_artifacts, models=("ease",))  # hybrid needs a run
    redis_client.zadd(K.pop_global, {f"i{j}": 100 - j for j in range(50)})
    redis_client.hset(K.bandit("epsilon_greedy"), mapping={
        "popularity:pulls": 1000, "popularity:rewards": 900, "hybrid:pulls": 1000, "hybrid:rewards": 10})
    s = settings.model_copy(update={"artifact_dir": run_artifacts, "bandit_epsilon": 0.2,
                                    "bandit_arms": ["popularity", "hybrid"], "emit_impressions": True,
                                    "impression_max_lists_per_s": 100_000})
    async with api_client(s) as (app, c):
        bandit = [(await c.get(HOME, params={"user_id": f"b{j}", "strategy": "bandit", "k": 3})).json()
                  for j in range(30)]
        plain = (await c.get(HOME, params={"user_id": "p1", "strategy": "popularity", "k": 3})).json()
    # epsilon-greedy over two arms: the best (popularity) with 1 - ε + ε/2, the other with ε/2
    chance = {"popularity": 0.9, "hybrid": 0.1}
    events = await consume(s, want=31 * 3, timeout_s=20)
    imp = {(e["context"]["request_id"], e["context"]["position"]): e["context"]["propensity"]
           for e in events if e["type"] == "impression"}
    for body in bandit:
        for pos in range(3):
            assert imp[(body["request_id"], pos)] == pytest.approx(chance[body["strategy"]])
    assert all(imp[(plain["request_id"], pos)] == 1.0 for pos in range(3))
