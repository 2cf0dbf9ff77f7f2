"""Canaries end to end on the real broker and Redis: `streamrec promote RUN --canary N` starts one,
impressions and clicks of its arms go through the broker and a stream worker into the per-arm
counters, and a look of the monitor rolls back a canary whose CTR dropped (raising an alert) and
promotes one that wins; the run registry's log records each step."""
from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from schemas.alerts import AlertKind
from tests.integration.support import Worker, event, produce_events, stream_settings, train_tiny_run, wait_until
from trainer.alerts.monitor import Monitor
from trainer.experiment_store import ExperimentStore
from trainer.promotion import history_log

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stream(services, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("canary")
    s = stream_settings(services, tmp)
    w = Worker(s, tmp / "worker.log").start().ready()
    yield s
    w.stop()


@pytest.fixture
def canary_settings(stream, tmp_path, monkeypatch):
    from schemas.settings import get_settings

    s = stream.model_copy(update={"artifact_dir": tmp_path / "artifacts", "canary_min_impressions": 500,
                                  "canary_steps": [0.5]})
    for k, v in {"REDIS_URL": s.redis_url, "KAFKA_BOOTSTRAP": s.kafka_bootstrap, "TOPIC_PREFIX": s.topic_prefix,
                 "REDIS_PREFIX": s.redis_prefix, "ARTIFACT_DIR": str(s.artifact_dir), "DATA_DIR": str(s.data_dir),
                 "CANARY_MIN_IMPRESSIONS": "500", "CANARY_STEPS": "[0.5]"}.items():
        monkeypatch.setenv(f"STREAMREC_{k}", v)
    get_settings.cache_clear()
    yield s
    get_settings.cache_clear()


def _start(settings, redis_client) -> tuple[str, str, str]:
    from infra.cli import app

    champion = train_tiny_run(settings.artifact_dir, models=("ease",), tag="champ")
    challenger = train_tiny_run(settings.artifact_dir, models=("ease",), tag="chall", make_current=False, seed=1)
    got = CliRunner().invoke(app, ["promote", challenger.name, "--canary", "30"])
    assert got.exit_code == 0, got.output
    name = got.output.split()[1].rstrip(":")
    doc = _store(settings, redis_client).get(name)
    assert doc["kind"] == "canary" and doc["arms"][1]["run"] == challenger.name and doc["arms"][0]["run"] == champion.name
    assert doc["canary"]["steps"] == [0.3, 0.5]
    return name, champion.name, challenger.name


def _store(settings, redis_client) -> ExperimentStore:
    from schemas.keys import Keys

    return ExperimentStore(redis_client, Keys(settings.redis_prefix), settings.artifact_dir)


def _traffic(settings, name: str, arm: str, impressions: int, ctr: float) -> None:
    """Impressions and clicks of an arm through the broker, as the API and a client send them."""
    events, clicks = [], round(impressions * ctr)
    for i in range(impressions):
        user, item, rid = f"{arm}-u{i % 300}", f"i{i % 40}", uuid.uuid4().hex[:12]
        events.append(event("impression", user, item, request_id=rid, position=i % 10, experiment=name, arm=arm))
        if i < clicks:
            events.append(event("click", user, item, request_id=rid, experiment=name, arm=arm))
    produce_events(settings, events)


def _wait_counted(settings, redis_client, name: str, arm: str, impressions: int) -> None:
    from datetime import datetime, timezone

    from schemas.keys import Keys

    key = Keys(settings.redis_prefix).stats_day(datetime.now(timezone.utc).date().isoformat())
    wait_until(lambda: int(redis_client.hget(key, f"{name}.{arm}:impressions") or 0) >= impressions, timeout=60)


def test_a_canary_whose_ctr_drops_is_rolled_back_with_an_alert(canary_settings, redis_client):
    s = canary_settings
    name, champion, challenger = _start(s, redis_client)
    _traffic(s, name, "champion", 2000, 0.20)
    _traffic(s, name, "challenger", 2000, 0.03)
    _wait_counted(s, redis_client, name, "challenger", 2000)
    _wait_counted(s, redis_client, name, "champion", 2000)

    m = Monitor(s, redis_client, check_dlq=False)
    result = m.run_once()
    assert [(c.experiment, c.done) for c in result.canaries] == [(name, "rolled_back")]
    alerts = [a for a in result.raised if a.kind is AlertKind.canary_rollback]
    assert len(alerts) == 1 and alerts[0].arm == name and alerts[0].metric in ("ctr", "positive_rate")
    assert alerts[0].figures["challenger"] == challenger
    doc = _store(s, redis_client).get(name)
    assert doc["status"] == "rolled_back" and doc["canary"]["failed"]["metric"] in ("ctr", "positive_rate")
    assert (s.artifact_dir / "run_current").resolve().name == champion  # the champion still serves
    actions = [e["action"] for e in history_log(s.artifact_dir) if e["run_id"] == challenger]
    assert actions == ["canary_started", "canary_rolled_back"]
    again = m.run_once()  # the alert stays open, raised once
    assert again.canaries == [] and not [a for a in again.raised if a.kind is AlertKind.canary_rollback]
    assert any(a.kind is AlertKind.canary_rollback for a in again.open)
    assert json.loads((s.artifact_dir / "experiments" / f"{name}.json").read_text())["status"] == "rolled_back"


def test_a_canary_that_wins_is_widened_then_promoted(canary_settings, redis_client):
    s = canary_settings
    name, champion, challenger = _start(s, redis_client)
    _traffic(s, name, "champion", 1500, 0.10)
    _traffic(s, name, "challenger", 1500, 0.20)
    _wait_counted(s, redis_client, name, "challenger", 1500)
    _wait_counted(s, redis_client, name, "champion", 1500)

    m = Monitor(s, redis_client, check_dlq=False)
    first = m.run_once()
    assert [(c.experiment, c.done) for c in first.canaries] == [(name, "widened")]
    doc = _store(s, redis_client).get(name)
    assert {a["name"]: round(a["share"], 6) for a in doc["arms"]} == {"champion": 0.5, "challenger": 0.5}
    second = m.run_once()  # no new impressions since the step: it waits
    assert [c.verdict.action for c in second.canaries] == ["wait"]

    _traffic(s, name, "champion", 1000, 0.10)
    _traffic(s, name, "challenger", 1000, 0.20)
    _wait_counted(s, redis_client, name, "challenger", 2500)
    _wait_counted(s, redis_client, name, "champion", 2500)
    third = m.run_once()
    assert [(c.experiment, c.done) for c in third.canaries] == [(name, "promoted")], third.describe()
    assert (s.artifact_dir / "run_current").resolve().name == challenger
    from schemas.keys import Keys

    assert redis_client.hget(Keys(s.redis_prefix).model_current, "run_id") == challenger
    assert _store(s, redis_client).get(name)["status"] == "promoted"
    actions = [e["action"] for e in history_log(s.artifact_dir) if e["run_id"] == challenger]
    assert actions == ["canary_started", "canary_widened", "promote", "canary_promoted"]
