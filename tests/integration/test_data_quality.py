"""`streamrec check-data` on the real broker: new volume since the snapshot, the DLQ rate since
the last check, and the schema of the newest records."""
from __future__ import annotations

import json

import pytest

from tests.integration.support import event, produce, produce_events
from trainer.data_quality import check_data
from trainer.replay import replay

pytestmark = pytest.mark.integration


def test_volume_counts_what_the_next_replay_reads(settings):
    produce_events(settings, [event("view", f"u{i % 5}", f"i{i}") for i in range(40)])
    first = check_data(settings, min_new_events=10)
    # the embedded broker may report a partition's end at its last batch's base: a lower bound
    assert 1 <= first.new_events <= 40 and first.healthy and first.sampled >= first.new_events
    replay(settings, metadata=False)
    after = check_data(settings, min_new_events=10)
    assert after.new_events == 0 and not after.enough_new_data and after.healthy


def test_a_dlq_spike_and_records_that_fail_the_schema_are_problems(settings):
    produce_events(settings, [event("click", f"u{i % 5}", f"i{i}") for i in range(30)])
    produce(settings, "interactions", [b'{"type": "click"}', b"not json"] * 3)
    produce(settings, "interactions.dlq", [json.dumps({"reason": "invalid user_id"}).encode()] * 10)
    quality = check_data(settings, min_new_events=1, max_dlq_rate=0.05, max_invalid_rate=0.01)
    assert not quality.healthy
    assert quality.dlq_records == 10 and quality.invalid == 6
    assert any("DLQ rate" in p for p in quality.problems) and any("event schema" in p for p in quality.problems)
    # the DLQ offsets were remembered: the next check measures the rate since this one
    again = check_data(settings, min_new_events=1, max_invalid_rate=1.0)
    assert again.dlq_records == 0 and again.healthy


def test_the_cli_exits_99_when_there_is_nothing_new(settings, monkeypatch):
    from typer.testing import CliRunner

    from infra.cli import app
    from schemas.settings import get_settings

    for name in ("kafka_bootstrap", "topic_prefix", "data_dir"):
        monkeypatch.setenv(f"STREAMREC_{name.upper()}", str(getattr(settings, name)))
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["check-data", "--min-new-events", "5", "--json"])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 99, res.output
    assert json.loads(res.stdout)["enough_new_data"] is False


def test_the_check_ends_while_events_keep_arriving(settings, monkeypatch):
    """Every fetch past the reported end returns records under a steady stream: the read past it is
    bounded, or the scheduler's look (and the updates behind it) would wait for the stream to pause."""
    import threading

    import trainer.data_quality as data_quality

    monkeypatch.setattr(data_quality, "TRUE_END_READ_S", 2.0)
    produce_events(settings, [event("view", "u0", f"i{i}") for i in range(20)])
    stop, rounds = threading.Event(), []

    def stream() -> None:
        while not stop.is_set() and len(rounds) < 600:  # ~a minute at most: the test fails, never hangs
            produce_events(settings, [event("view", f"u{len(rounds) % 5}", f"i{len(rounds)}")])
            rounds.append(1)

    producer = threading.Thread(target=stream, daemon=True)
    producer.start()
    try:
        quality = check_data(settings, min_new_events=1)
        still_streaming = producer.is_alive() and not stop.is_set()
    finally:
        stop.set()
        producer.join(timeout=30)
    assert still_streaming and quality.new_events >= 20
