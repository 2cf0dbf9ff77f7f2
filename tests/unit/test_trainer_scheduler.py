"""The scheduler offline (no broker, no Redis): trains on the snapshot, survives a failing retrain."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from schemas.settings import Settings
from trainer.artifacts import current_run, list_runs
from trainer.data.snapshot import Snapshot
from trainer.scheduler import Scheduler, run_scheduler


def rec(n: int) -> dict:
    return {"event_id": f"e{n}", "user_id": f"u{n % 6}", "item_id": f"i{(n * 7) % 11}", "timestamp": float(n),
            "type": "click", "value": None, "strategy": None, "basket_id": None, "profession": None,
            "topic": "interactions", "partition": 0, "offset": n}


@pytest.fixture
def offline(tmp_path) -> Settings:
    s = Settings(data_dir=tmp_path / "data", artifact_dir=tmp_path / "artifacts", retrain_models=["popularity"],
                 retrain_interval_s=3600.0)
    Snapshot(s.snapshot_path()).append([rec(n) for n in range(60)], "interactions", {0: 60})
    return s


def test_retrain_offline_trains_on_the_snapshot_and_promotes(offline):
    sched = Scheduler(offline)
    assert sched.check() == "no run yet"
    out = sched.retrain("test")
    assert out.promoted and current_run(offline.artifact_dir) == out.run_dir.resolve()
    assert sched.check() is None  # just trained; no counter offline
    assert sched.state()["last_run"] == out.run_dir.name
    assert sched.check(now=sched.last_run_at() + 3600.0) == "interval of 3600 s elapsed"


def test_a_failing_retrain_does_not_end_the_loop(offline, caplog, monkeypatch):
    bad = offline.model_copy(update={"retrain_models": ["no-such-model"]})
    stop = threading.Event()
    calls = []
    original = Scheduler.retrain

    def counting(self, reason="asked"):
        calls.append(reason)
        stop.set()  # one attempt is enough: the loop must come back from its failure and stop
        return original(self, reason)

    monkeypatch.setattr(Scheduler, "retrain", counting)
    run_scheduler(bad, stop=stop, poll_s=0.05)
    assert calls == ["no run yet"]
    assert "retrain failed" in caplog.text
    assert list_runs(offline.artifact_dir) == []


def test_update_warm_starts_from_the_serving_run_with_the_events_past_its_offsets(offline):
    sched = Scheduler(offline.model_copy(update={"update_min_new_events": 5}))
    base = sched.retrain("test").run_dir
    sched._counted = 20  # what the worker's counter would say
    assert sched.check_update() == "20 new events (update threshold 5)"
    Snapshot(offline.snapshot_path()).append([rec(n) for n in range(60, 80)], "interactions", {0: 80})
    out = sched.update("test")
    metrics = json.loads((out.run_dir / "metrics.json").read_text())
    assert metrics["incremental"] == {**metrics["incremental"], "base_run": base.name, "new_events": 20}
    state = sched.state()
    assert state["last_update"] == out.run_dir.name and state["last_update_message"] == out.message
    assert out.run_dir.name.endswith("_update")
    sched._counted = 3
    assert sched.check_update() is None  # under the threshold, interval not elapsed



def test_an_update_that_trains_nothing_keeps_the_name_of_the_one_serving(offline, monkeypatch):
    from types import SimpleNamespace

    import trainer.incremental

    sched = Scheduler(offline)
    sched.retrain("test")
    sched._save_state(last_update="run_x_update")
    nothing = SimpleNamespace(run_dir=None, promotion=None, message="no events past the serving run", fit_seconds={})
    monkeypatch.setattr(trainer.incremental, "incremental_run", lambda *a, **k: nothing)
    Snapshot(offline.snapshot_path()).append([rec(n) for n in range(60, 65)], "interactions", {0: 65})
    out = sched.update("counter still held read events")
    state = sched.state()
    assert out.run_dir is None and state["last_update"] == "run_x_update"
    assert state["last_update_message"] == "no events past the serving run"


def test_the_scheduler_process_yields_the_cpu_to_serving() -> None:
    """In a child process (the policy sticks to the process): SCHED_IDLE where Linux allows it,
    the niceness either way, inherited by threads started afterwards (torch's pool)."""
    code = ("import os, threading; from schemas.settings import Settings; from trainer.scheduler import yield_cpu;"
            "got = yield_cpu(Settings(scheduler_nice=5)); seen = [];"
            "t = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0))); t.start(); t.join();"
            "print(got, os.nice(0), seen[0] == getattr(os, 'SCHED_IDLE', -1))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout.split()
    assert int(out[1]) >= 5
    assert out[0] in ("idle", "nice") and (out[2] == "True") == (out[0] == "idle")


def test_the_schedulers_retrain_fits_in_one_process(offline, monkeypatch):
    """`streamrec train` fits on every core (Settings.train_workers 0); the scheduler's retrain, background
    work beside the worker and the API, on scheduler_train_workers (1: its own process only)."""
    import trainer.pipeline

    real, seen = trainer.pipeline.train_run, []

    def spy(source, settings, *args, **kwargs):
        seen.append(settings.train_workers)
        return real(source, settings, *args, **kwargs)

    monkeypatch.setattr(trainer.pipeline, "train_run", spy)
    assert offline.train_workers == 0
    assert Scheduler(offline).retrain("test").promoted
    assert seen == [1]
