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
