"""The monitor on the feedback counters (docs/feedback.md), real Redis: a positive-feedback rate
drop (two-proportion test) and a rating mean drop (Welch's test from the sum of squares) each
raise one alert with the right metric, arm and figures; small drops and few samples raise none."""
from __future__ import annotations

import pytest

from schemas.keys import Keys
from tests.integration.test_alerts import day, monitor

pytestmark = pytest.mark.integration


def feedback(redis_client, keys: Keys, offset: int, impressions: int, positive_rate: float, ratings: list[float],
             arm: str = "hybrid") -> None:
    key = keys.stats_day(day(offset))
    redis_client.delete(key)
    redis_client.hset(key, mapping={
        f"{arm}:impressions": impressions, f"{arm}:clicks": round(impressions * 0.05),
        f"{arm}:positive": round(impressions * positive_rate), f"{arm}:rating_count": len(ratings),
        f"{arm}:rating_sum": sum(ratings), f"{arm}:rating_sq": sum(x * x for x in ratings), "type:view": 2400})


def ratings(mean: float, n: int) -> list[float]:
    """n ratings of this mean with a spread of about one star."""
    return [mean + (1.0 if j % 2 else -1.0) for j in range(n)]


def test_a_positive_rate_drop_and_a_rating_drop_each_raise_one_alert(settings, redis_client):
    keys = Keys(settings.redis_prefix)
    for d in range(1, 8):
        feedback(redis_client, keys, d, 20_000, 0.10, ratings(4.0, 400))
    feedback(redis_client, keys, 0, 10_000, 0.09, ratings(3.6, 300))  # both 10% lower
    m = monitor(settings, redis_client)
    got = {(a.metric, a.arm): a for a in m.run_once().raised}
    assert set(got) == {("positive_rate", "hybrid"), ("rating_mean", "hybrid")}
    pos, rat = got["positive_rate", "hybrid"], got["rating_mean", "hybrid"]
    assert (pos.figures["recent"], pos.figures["baseline"], pos.figures["change"]) == (0.09, 0.1, -0.1)
    assert rat.figures["recent"] == pytest.approx(3.6) and rat.figures["baseline"] == pytest.approx(4.0)
    assert pos.figures["p_value"] < 0.05 and rat.figures["p_value"] < 0.05 and rat.figures["recent_samples"] == 300
    assert m.run_once().raised == []  # one alert per episode
    feedback(redis_client, keys, 0, 10_000, 0.10, ratings(4.0, 300))  # recovered
    assert {a.metric for a in m.run_once().resolved} == {"positive_rate", "rating_mean"}


def test_no_feedback_alert_for_a_small_drop_or_too_few_samples(settings, redis_client):
    keys = Keys(settings.redis_prefix)
    for d in range(1, 8):
        feedback(redis_client, keys, d, 20_000, 0.10, ratings(4.0, 400))
    feedback(redis_client, keys, 0, 200_000, 0.098, ratings(3.92, 3000))  # 2% lower on lots of data
    assert monitor(settings, redis_client).run_once().raised == []
    feedback(redis_client, keys, 0, 500, 0.09, ratings(3.6, 50))  # 10% lower on too few
    assert monitor(settings, redis_client).run_once().raised == []
