"""The monitor against the real broker and Redis: each alert kind raised once per episode,
resolved on recovery, written to the alerts topic, POSTed to a webhook, listed and
acknowledged through the API, exported as a gauge, and a metric drop triggers a retrain."""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from schemas.keys import Keys
from tests.integration.support import api_client, consume, produce
from trainer.alerts.monitor import Monitor

pytestmark = pytest.mark.integration
NOON = datetime(2026, 11, 30, 12, tzinfo=timezone.utc)


def day(offset: int) -> str:
    return (NOON.date() - timedelta(days=offset)).isoformat()


def counters(redis_client, keys: Keys, offset: int, impressions: int, ctr: float, arm: str = "policy",
             events: int = 2400) -> None:
    key = keys.stats_day(day(offset))
    redis_client.delete(key)
    redis_client.hset(key, mapping={f"{arm}:impressions": impressions, f"{arm}:clicks": round(impressions * ctr),
                                    "type:view": events})


def baseline(redis_client, keys: Keys, impressions: int = 20_000, ctr: float = 0.05) -> None:
    for d in range(1, 8):
        counters(redis_client, keys, d, impressions, ctr)


def monitor(settings, redis_client, **kw) -> Monitor:  # noqa: ANN003
    """The monitor at noon of NOON's day, the DLQ left out (test_the_other_kinds covers it)."""
    return Monitor(settings.model_copy(update=kw), redis_client, clock=NOON.timestamp, check_dlq=False)


def test_a_ctr_drop_raises_exactly_one_alert_until_it_recovers(settings, redis_client):
    keys = Keys(settings.redis_prefix)
    baseline(redis_client, keys)
    counters(redis_client, keys, 0, 10_000, 0.045)  # 10% below 5%
    m = monitor(settings, redis_client)
    first = m.run_once()
    [alert] = first.raised
    assert (alert.kind.value, alert.metric, alert.arm) == ("metric_drop", "ctr", "policy")
    assert alert.figures["recent"] == 0.045 and alert.figures["baseline"] == 0.05
    assert alert.figures["change"] == pytest.approx(-0.1) and alert.figures["p_value"] < 0.05
    again = m.run_once()  # the same episode: no second alert
    assert again.raised == [] and [a.id for a in again.open] == [alert.id]
    counters(redis_client, keys, 0, 10_000, 0.0505)  # recovered
    done = m.run_once()
    assert [a.id for a in done.resolved] == [alert.id] and done.open == []


def test_no_alert_for_a_small_drop_or_for_too_few_samples(settings, redis_client):
    keys = Keys(settings.redis_prefix)
    baseline(redis_client, keys)
    counters(redis_client, keys, 0, 200_000, 0.049)  # 2% lower: significant on this much traffic, yet small
    assert monitor(settings, redis_client).run_once().raised == []
    counters(redis_client, keys, 0, 500, 0.045)  # 10% lower on 500 impressions: below the minimum sample
    assert monitor(settings, redis_client).run_once().raised == []


def test_the_other_kinds(settings, redis_client, tmp_path):
    keys = Keys(settings.redis_prefix)
    for d in range(1, 8):
        counters(redis_client, keys, d, 0, 0.0, events=2400)
    counters(redis_client, keys, 0, 0, 0.0, events=100)  # by noon 1,200 were expected
    redis_client.hset(keys.worker_lag, "w1", json.dumps({"records_behind": 50_000, "reported_at": NOON.timestamp()}))
    art = tmp_path / "artifacts"
    art.mkdir()
    ten_days_ago = (NOON - timedelta(days=10)).isoformat()
    (art / "promotions.json").write_text(json.dumps({"stack": ["run_a"], "log": [
        {"action": "promote", "run_id": "run_a", "at": ten_days_ago}]}))
    produce(settings, "interactions", [json.dumps({"type": "view", "user_id": f"u{i}", "item_id": "i"}).encode()
                                       for i in range(20)])
    produce(settings, "interactions.dlq", [b'{"reason": "invalid user_id"}'] * 10)
    m = Monitor(settings.model_copy(update={"artifact_dir": art}), redis_client, clock=NOON.timestamp)
    kinds = {a.kind.value: a for a in m.run_once().raised}
    assert set(kinds) == {"volume_drop", "consumer_lag", "no_promotion", "dlq_spike"}
    assert kinds["volume_drop"].figures["expected"] == 1200.0
    assert kinds["consumer_lag"].figures["value"] == 50_000
    assert kinds["no_promotion"].figures["value"] == pytest.approx(10.0)
    assert kinds["dlq_spike"].figures["value"] == pytest.approx(10 / 30, abs=0.01)
    # on the alerts topic, one record per alert, keyed by episode
    records = [r for r in consume_alerts(settings, 4)]
    assert sorted(r["kind"] for r in records) == sorted(kinds)


def consume_alerts(settings, want: int) -> list[dict]:
    import asyncio

    return asyncio.run(consume(settings, "alerts", want=want, timeout_s=15))


def test_alerts_reach_a_webhook(settings, redis_client):
    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        keys = Keys(settings.redis_prefix)
        baseline(redis_client, keys)
        counters(redis_client, keys, 0, 10_000, 0.04)
        url = f"http://127.0.0.1:{server.server_port}/hook"
        m = monitor(settings, redis_client, alert_webhook_url=url)
        [alert] = m.run_once().raised
        counters(redis_client, keys, 0, 10_000, 0.05)
        m.run_once()
        assert [(g["id"], g["status"]) for g in got] == [(alert.id, "open"), (alert.id, "resolved")]
    finally:
        server.shutdown()
        server.server_close()


async def test_the_api_lists_acknowledges_and_exports_alerts(settings, redis_client):
    keys = Keys(settings.redis_prefix)
    baseline(redis_client, keys)
    counters(redis_client, keys, 0, 10_000, 0.04)
    [alert] = monitor(settings, redis_client).run_once().raised
    s = settings.model_copy(update={"admin_key": "k", "emit_impressions": False})
    async with api_client(s) as (_, c):
        listed = (await c.get("/api/v1/alerts")).json()
        assert listed["count"] == 1 and listed["alerts"][0]["id"] == alert.id
        assert (await c.post(f"/admin/alerts/{alert.id}/ack")).status_code == 401
        acked = await c.post(f"/admin/alerts/{alert.id}/ack", headers={"X-Admin-Key": "k"})
        assert acked.status_code == 200 and acked.json()["acknowledged_at"] is not None
        assert (await c.post("/admin/alerts/abc123/ack", headers={"X-Admin-Key": "k"})).status_code == 404
        metrics = (await c.get("/metrics")).text
        assert 'streamrec_alerts_open{kind="metric_drop"} 1.0' in metrics
        assert (await c.get("/api/v1/alerts", params={"status": "resolved"})).json()["count"] == 0


def test_an_open_metric_drop_alert_triggers_a_retrain(settings, redis_client):
    from trainer.scheduler import Scheduler

    keys = Keys(settings.redis_prefix)
    sched = Scheduler(settings, redis_client)
    assert sched.alert_due() is None
    baseline(redis_client, keys)
    counters(redis_client, keys, 0, 10_000, 0.04)
    monitor(settings, redis_client).run_once()
    reason = sched.alert_due()
    assert reason and reason.startswith("open metric-drop alert: ctr of policy fell")


async def test_monitoring_health_names_what_is_failing(settings, redis_client, tmp_path):
    from tests.integration.support import train_tiny_run

    art = tmp_path / "artifacts"
    train_tiny_run(art, ("ease",))
    s = settings.model_copy(update={"artifact_dir": art, "emit_impressions": False, "data_dir": tmp_path / "data"})
    from trainer.scheduler import STATE

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / STATE).write_text(json.dumps({"last_run": "run_a", "last_run_at": 1.0, "last_update": "run_b_update",
                                                       "last_update_at": 2.0, "last_update_seconds": 3.5}))
    async with api_client(s) as (_, c):
        ok = await c.get("/api/v1/monitoring/health")
        assert ok.status_code == 200, ok.json()
        body = ok.json()
        assert body["status"] == "ok" and body["failing"] == [] and body["redis"] and body["broker"]
        assert body["model"]["run_id"] and body["model"]["age_s"] >= 0
        assert body["last_retrain"]["last_run"] == "run_a"  # the scheduler's full retrains, and its updates
        assert body["last_update"] == {"last_update": "run_b_update", "last_update_at": 2.0, "last_update_seconds": 3.5}
        # a worker far behind, and an open CTR alert: 503, each named
        keys = Keys(settings.redis_prefix)
        redis_client.hset(keys.worker_lag, "w1", json.dumps({"records_behind": 50_000, "events_per_s": 100.0,
                                                             "event_to_redis_ms": 9000.0, "applied_at": time.time(),
                                                             "reported_at": time.time()}))
        baseline(redis_client, keys)
        counters(redis_client, keys, 0, 10_000, 0.04)
        monitor(settings, redis_client).run_once()
        bad = await c.get("/api/v1/monitoring/health")
        assert bad.status_code == 503
        failing = bad.json()["failing"]
        assert any(f.startswith("stream: lagging (50000 records behind") for f in failing)
        assert any(f.startswith("alert: ctr of policy fell") for f in failing)
        assert bad.json()["monitor_last_look"] == NOON.timestamp()
