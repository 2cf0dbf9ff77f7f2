"""Replay on the real broker: topic → Parquet snapshot, incrementally, bad records counted."""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from aiokafka import AIOKafkaProducer

from trainer.data.snapshot import Snapshot
from trainer.replay import replay

pytestmark = pytest.mark.integration


def event(n: int, user: str = "u1") -> bytes:
    return json.dumps(
        {"event_id": f"e{n}", "type": "click", "user_id": user, "item_id": f"i{n % 7}", "ts": 1_700_000_000 + n}
    ).encode()


def produce(settings, values: list[bytes]) -> None:
    async def go():
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await p.start()
        try:
            for n, v in enumerate(values):
                await p.send_and_wait(settings.topic("interactions"), v, key=f"u{n % 5}".encode())
        finally:
            await p.stop()

    asyncio.run(go())


def produce_batched(settings, values: list[bytes]) -> None:
    """Many records per produce batch (the embedded broker then reports a batch's base offset as the end)."""
    async def go():
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=50)
        await p.start()
        try:
            for n, v in enumerate(values):
                await p.send(settings.topic("interactions"), v, key=f"u{n % 5}".encode())
            await p.flush()
        finally:
            await p.stop()

    asyncio.run(go())


def test_batched_records_are_all_read_and_no_restart_is_imagined(settings):
    produce_batched(settings, [event(n, f"u{n % 5}") for n in range(200)])
    first = replay(settings)
    assert first.appended == 200 and not first.restarted
    again = replay(settings)  # the reported end may sit below what was read: not a restarted log
    assert again.appended == 0 and not again.restarted, again.describe()
    produce_batched(settings, [event(n, "u9") for n in range(200, 260)])
    third = replay(settings)
    assert third.appended == 60 and not third.restarted, third.describe()
    assert len(Snapshot(settings.snapshot_path()).frame()) == 260


def test_replay_builds_snapshot_then_appends_only_new_records(settings):
    produce(settings, [event(n, f"u{n % 5}") for n in range(30)] + [b"not json", b'{"type": "view"}'])

    first = replay(settings)
    assert first.appended == 30
    assert sum(first.skipped.values()) == 2
    assert "malformed JSON" in first.skipped
    snap = Snapshot(settings.snapshot_path())
    frame = snap.frame()
    assert len(frame) == 30
    assert set(frame["user_id"]) == {f"u{i}" for i in range(5)}
    assert sum(snap.offsets(settings.topic("interactions")).values()) == 32

    # nothing new: an empty step that changes nothing
    again = replay(settings)
    assert again.read == 0 and again.appended == 0
    assert len(snap.frame()) == 30

    produce(settings, [event(n, "u9") for n in range(30, 40)])
    second = replay(settings)
    assert second.read == 10 and second.appended == 10
    assert len(second.parts) == 1  # a new part, the old ones untouched
    frame = snap.frame()
    assert len(frame) == 40
    assert (frame["user_id"] == "u9").sum() == 10
    assert snap.read().report.dropped  # the skipped records stay counted in the manifest


def test_replay_since_skips_older_log_records(settings):
    produce(settings, [event(n) for n in range(5)])
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    res = replay(settings, since=future)
    assert res.appended == 0
    assert len(Snapshot(settings.snapshot_path()).frame()) == 0


def produce_to(settings, topic: str, values: list[dict]) -> None:
    async def go():
        p = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await p.start()
        try:
            for v in values:  # keyed by id, as producers do, so one id's upserts stay in order
                key = (v.get("item_id") or v.get("user_id") or "").encode() or None
                await p.send_and_wait(settings.topic(topic), json.dumps(v).encode(), key=key)
        finally:
            await p.stop()

    asyncio.run(go())


def test_replay_brings_catalog_and_users_as_metadata(settings):
    produce(settings, [event(n, f"u{n % 3}") for n in range(12)])
    produce_to(settings, "catalog", [{"item_id": f"i{n}", "title": f"old {n}", "category": "tools"} for n in range(7)]
               + [{"item_id": "i1", "title": "Cordless drill", "category": "tools|power"}, {"title": "no id"}])
    produce_to(settings, "users", [{"user_id": "u1", "profession": "plumber"}])
    res = replay(settings)
    assert res.meta == {"catalog": 8, "users": 1}
    assert res.skipped == {"catalog: invalid item_id": 1}
    src = Snapshot(settings.snapshot_path()).read()
    assert src.item_meta.loc["i1", "title"] == "Cordless drill"  # the last upsert wins
    assert src.item_meta.loc["i2", "category"] == "tools"
    assert src.user_meta.loc["u1", "segment"] == "plumber"
    assert settings.topic("catalog") in src.offsets


def test_train_from_the_topic_through_the_cli(settings, monkeypatch):
    """`streamrec train` without --interactions: replay, train (content needs the catalog), promote."""
    from pathlib import Path

    from typer.testing import CliRunner

    from infra.cli import app
    from schemas.settings import get_settings

    produce(settings, [event(n, f"u{n % 4}") for n in range(24)])
    produce_to(settings, "catalog", [{"item_id": f"i{n}", "title": f"item {n}", "category": "c"} for n in range(7)])
    env = {"KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "REDIS_URL": settings.redis_url,
           "TOPIC_PREFIX": settings.topic_prefix, "DATA_DIR": str(settings.data_dir),
           "ARTIFACT_DIR": str(settings.artifact_dir)}
    for k, v in env.items():
        monkeypatch.setenv(f"STREAMREC_{k}", v)
    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(app, ["train", "-m", "content", "-m", "popularity", "--promote", "--no-progress"])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    run = Path(res.stdout.strip().splitlines()[-1])
    assert (settings.artifact_dir / "run_current").resolve() == run
    assert (run / "models" / "content").is_dir()


def run_cli(settings, monkeypatch, *commands: list[str]):
    """Invoke ``streamrec`` commands configured by STREAMREC_* for this test's broker and data dir."""
    from typer.testing import CliRunner

    from infra.cli import app
    from schemas.settings import get_settings

    for k, v in {"KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "TOPIC_PREFIX": settings.topic_prefix,
                 "DATA_DIR": str(settings.data_dir)}.items():
        monkeypatch.setenv(f"STREAMREC_{k}", v)
    get_settings.cache_clear()
    try:
        return [CliRunner().invoke(app, args) for args in commands]
    finally:
        get_settings.cache_clear()


def test_replay_command_reports_counts_and_bad_since(settings, monkeypatch):
    produce(settings, [event(n) for n in range(6)] + [b"{}"])
    res, bad = run_cli(settings, monkeypatch, ["replay", "--progress"], ["replay", "--since", "last tuesday"])
    assert res.exit_code == 0, res.output
    assert "6 appended, 1 skipped" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == str(settings.snapshot_path())
    assert bad.exit_code == 2 and "neither" in bad.output


def recreate_topic(settings, name: str = "interactions") -> None:
    """Delete and recreate a topic: its log starts again at offset 0 (as after a restart of
    the embedded broker, which keeps its log in memory)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def go():
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([settings.topic(name)])
            for _ in range(50):  # the deletion is asynchronous on some brokers
                if settings.topic(name) not in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            await admin.create_topics([NewTopic(settings.topic(name), settings.topic_partitions, 1)])
        finally:
            await admin.close()

    asyncio.run(go())


def test_a_restarted_log_is_replayed_from_the_start_and_replaces_the_old_rows(settings, monkeypatch):
    produce(settings, [event(n, f"u{n % 5}") for n in range(30)])
    assert replay(settings).appended == 30
    topic = settings.topic("interactions")

    recreate_topic(settings)
    # fewer records than before: the end offsets fall below the stored ones (and where the
    # broker reports topic ids, the id changed too)
    produce(settings, [event(n, "u-new") for n in range(100, 104)])
    again = replay(settings)
    assert topic in again.restarted and again.changed
    assert again.appended == 4 and again.dropped_rows[topic] == 30
    assert "log restarted" in again.describe() and "replayed from its start" in again.describe()
    frame = Snapshot(settings.snapshot_path()).frame()
    assert sorted(frame["event_id"]) == [f"e{n}" for n in range(100, 104)]  # the new log is the truth
    assert set(frame["user_id"]) == {"u-new"}
    assert sum(Snapshot(settings.snapshot_path()).offsets(topic).values()) == 4

    # the next replay is incremental again, and the CLI's report says when a log restarted
    produce(settings, [event(n, "u-new") for n in range(104, 106)])
    third = replay(settings)
    assert not third.restarted and third.appended == 2

    recreate_topic(settings)
    produce(settings, [event(n, "u-newer") for n in range(200, 240)])  # more than before: only the id tells
    (res,) = run_cli(settings, monkeypatch, ["replay", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "log restarted" in res.stdout and "topic id changed" in res.stdout, res.stdout
    frame = Snapshot(settings.snapshot_path()).frame()
    assert set(frame["user_id"]) == {"u-newer"} and len(frame) == 40


def test_keep_restarted_keeps_the_old_rows(settings):
    produce(settings, [event(n) for n in range(10)])
    replay(settings)
    recreate_topic(settings)
    produce(settings, [event(n, "u2") for n in range(50, 53)])
    res = replay(settings, keep_restarted=True)
    assert settings.topic("interactions") in res.restarted and res.appended == 3
    assert "old rows kept" in res.describe()
    assert len(Snapshot(settings.snapshot_path()).frame()) == 13
