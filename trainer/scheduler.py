"""The retrain scheduler: replay, train ``Settings.retrain_models``, promote if better.

A retrain is due when no run has been made yet, every ``retrain_interval_s``, and as soon
as the counter ``Keys.new_events`` (kept by the stream worker) exceeds
``retrain_min_new_events``. Between retrains, a warm-start update of the serving run
(``trainer.incremental``, what ``streamrec train --incremental`` does) is due every
``update_interval_s`` when events were counted, or once ``update_min_new_events`` were; it
goes through the same promotion gate. ``scheduler.json`` records the schedule and the last
retrain and update. After a run the counter is decreased by the value read before
it, so events that arrived during training still count towards the next one.

Replay-then-read is ``trainer.data.sources.events_for_training``, the same call as
``streamrec train``. When the replay changes nothing (no new interactions, no restarted log;
the counter trails the log: the worker counts events as it processes them), the model is
already as fresh as the data and the retrain is skipped (the counter is still consumed). A
log that restarted (broker restarted, topic recreated) is read from its start, so its records
are never skipped. ``streamrec up`` runs it as a child (``python -m trainer.scheduler``); ``run_scheduler``
blocks until SIGTERM / SIGINT (or ``stop`` is set). A failed retrain is logged and retried
after a back-off; it never ends the loop.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import InvalidDataset, ServiceUnavailable, StoreUnavailable
from schemas.keys import Keys
from schemas.settings import Settings, get_settings

log = logging.getLogger("streamrec.scheduler")

STATE = "scheduler.json"


def due(now: float, last_run_at: float | None, new_events: int, interval_s: float, min_new_events: int) -> str | None:
    """Why a retrain is due now, or None.

    >>> due(100.0, None, 0, 50, 10)
    'no run yet'
    >>> due(100.0, 60.0, 0, 50, 10) is None
    True
    >>> due(100.0, 40.0, 0, 50, 10)
    'interval of 50 s elapsed'
    >>> due(100.0, 90.0, 11, 50, 10)
    '11 new events (threshold 10)'
    """
    if last_run_at is None:
        return "no run yet"
    if now - last_run_at >= interval_s:
        return f"interval of {interval_s:g} s elapsed"
    if new_events > min_new_events:
        return f"{new_events} new events (threshold {min_new_events})"
    return None


def update_due(now: float, last_at: float | None, new_events: int, interval_s: float,
               min_new_events: int) -> str | None:
    """Why a warm-start update of the serving run is due now, or None (``last_at``: the last
    retrain or update; nothing counted since: nothing to update with).

    >>> update_due(100.0, 90.0, 0, 50, 10) is None
    True
    >>> update_due(100.0, 90.0, 12, 50, 10)
    '12 new events (update threshold 10)'
    >>> update_due(100.0, 40.0, 3, 50, 10)
    'update interval of 50 s elapsed, 3 new events'
    >>> update_due(100.0, 40.0, 3, 0, 0) is None
    True
    """
    if new_events <= 0 or last_at is None:
        return None
    if min_new_events and new_events >= min_new_events:
        return f"{new_events} new events (update threshold {min_new_events})"
    if interval_s and now - last_at >= interval_s:
        return f"update interval of {interval_s:g} s elapsed, {new_events} new events"
    return None


@dataclass
class Outcome:
    run_dir: Path | None
    promoted: bool
    message: str


class BusyGate:
    """Holds a due retrain back while events are still arriving (the counter moved since the last
    poll), for at most ``max_delay_s``: training during an ingest burst would slow the worker
    down and read a log that is about to grow anyway.

    >>> g = BusyGate(max_delay_s=100)
    >>> g.postpone(0, 0.0), g.postpone(500, 30.0), g.postpone(900, 60.0), g.postpone(900, 90.0)
    (False, True, True, False)
    >>> g.postpone(950, 120.0), g.postpone(990, 150.0), g.postpone(999, 230.0)  # busy for too long: go
    (True, True, False)
    """

    def __init__(self, max_delay_s: float):
        self.max_delay_s = max_delay_s
        self.last: int | None = None
        self.busy_since: float | None = None

    def postpone(self, counted: int, now: float) -> bool:
        moved = self.last is not None and counted != self.last
        self.last = counted
        if not moved:
            self.busy_since = None
            return False
        if self.busy_since is None:
            self.busy_since = now
        return now - self.busy_since < self.max_delay_s


class Scheduler:
    def __init__(self, settings: Settings, redis_client=None):
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self._redis = redis_client
        self.state_file = Path(settings.data_dir) / STATE
        self._counted = 0  # the new-events counter at the last check
        self._monitor = None  # trainer.alerts.monitor.Monitor, made on the first look
        self._next_look = 0.0

    # --- state -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        if self.state_file.exists():
            try:
                return json.loads(self.state_file.read_text())
            except ValueError:
                log.warning("%s unreadable; starting afresh", self.state_file)
        return {}

    def _save_state(self, **fields: Any) -> None:
        st = {**self.state(), **fields}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(f".{STATE}.tmp")
        tmp.write_text(json.dumps(st, indent=2, default=str))
        os.replace(tmp, self.state_file)

    def last_run_at(self) -> float | None:
        st = self.state()
        if st.get("last_run_at") is not None:
            return float(st["last_run_at"])
        from trainer.artifacts import current_run

        cur = current_run(self.settings.artifact_dir)
        return (cur / "COMPLETE").stat().st_mtime if cur is not None and (cur / "COMPLETE").exists() else None

    # --- the counter ------------------------------------------------------------------------
    def redis(self):
        if self._redis is None and self.settings.redis_url:
            from trainer.redis_client import sync_client

            self._redis = sync_client(self.settings, socket_timeout=5, decode_responses=True)
        return self._redis

    def new_events(self, key: str | None = None) -> int:
        """A counter the worker keeps: new interactions (default) or ``Keys.new_feedback``."""
        key = key or self.keys.new_events
        client = self.redis()
        if client is None:
            return 0
        import redis

        try:
            return int(client.get(key) or 0)
        except (redis.RedisError, ValueError) as exc:
            raise StoreUnavailable(f"cannot read {key}: {exc}") from exc

    def _consume(self, n: int, key: str | None = None) -> None:
        key = key or self.keys.new_events
        client = self.redis()
        if client is None or n <= 0:
            return
        import redis

        try:
            client.decrby(key, n)
        except redis.RedisError as exc:
            log.warning("could not decrease %s by %d: %s", key, n, exc)

    def feedback_due(self) -> str | None:
        """A retrain reason once enough explicit feedback (rate, like, dislike) came in."""
        try:
            n = self.new_events(self.keys.new_feedback)
        except StoreUnavailable:
            return None
        threshold = self.settings.retrain_min_new_feedback
        return f"{n} new explicit feedbacks (threshold {threshold})" if n > threshold else None

    # --- one retrain --------------------------------------------------------------------------
    def check(self, now: float | None = None) -> str | None:
        s = self.settings
        try:
            n = self.new_events()
        except StoreUnavailable as exc:
            log.warning("%s; deciding on the interval alone", exc)
            n = 0
        self._counted = n
        now = time.time() if now is None else now
        return (due(now, self.last_run_at(), n, s.retrain_interval_s, s.retrain_min_new_events)
                or self.feedback_due() or self.alert_due())

    def check_update(self, now: float | None = None) -> str | None:
        """A warm-start update is due (``update_due``); only when a run serves and no retrain is."""
        s = self.settings
        from trainer.artifacts import current_run

        if current_run(s.artifact_dir) is None:
            return None
        last = [t for t in (self.last_run_at(), self.state().get("last_update_at")) if t is not None]
        now = time.time() if now is None else now
        return update_due(now, max(last) if last else None, self._counted, s.update_interval_s,
                          s.update_min_new_events)

    def update(self, reason: str = "asked") -> Outcome:
        """Replay, update the serving run with the new events (``trainer.incremental``), promote if better."""
        from trainer.data.sources import events_for_training
        from trainer.incremental import incremental_run

        s = self.settings
        try:
            counted = self.new_events()
        except StoreUnavailable:
            counted = 0
        log.info("update (%s): %d new events counted", reason, counted)
        try:
            loaded = events_for_training(s, say=log.info, skip_unchanged=True)
        except (InvalidDataset, ServiceUnavailable) as exc:
            self._save_state(last_update_attempt_at=time.time(), last_update_message=str(exc))
            return Outcome(None, False, f"nothing to update with: {exc}")
        if loaded.source is None:
            self._consume(counted)
            msg = "no new interactions in the log since the last run: nothing to update"
            self._save_state(last_update_at=time.time(), last_update_message=msg)
            return Outcome(None, False, msg)
        result = incremental_run(loaded.source, s, tag="update", promote=True)
        self._consume(counted)
        promo = result.promotion
        msg = promo.describe() if promo is not None else result.message
        done = dict(last_update_at=time.time(), last_update_message=msg,
                    last_update_seconds=round(sum(result.fit_seconds.values()), 2))
        if result.run_dir is not None:  # an update that trained nothing keeps the name of the one that did
            done["last_update"] = result.run_dir.name
        self._save_state(**done)
        log.info("update: %s", msg)
        return Outcome(result.run_dir, bool(promo and promo.promoted), msg)

    # --- the monitor ---------------------------------------------------------------------------
    def look(self, now: float | None = None) -> None:
        """Run the monitor (trainer/alerts) when its interval has passed; a failure is logged."""
        now = time.time() if now is None else now
        if now < self._next_look or self.redis() is None:
            return
        self._next_look = now + self.settings.monitor_interval_s
        try:
            if self._monitor is None:
                from trainer.alerts.monitor import Monitor

                self._monitor = Monitor(self.settings, self.redis())
            result = self._monitor.run_once()
            if result.raised or result.resolved:
                log.info("monitor: %s", result.describe())
        except Exception as exc:  # noqa: BLE001 - the monitor must not stop retraining
            log.warning("monitor look failed: %s", exc)

    def alert_due(self) -> str | None:
        """A retrain reason when a metric-drop alert opened after the last retrain."""
        client = self.redis()
        if client is None:
            return None
        from schemas.alerts import AlertKind
        from trainer.alerts.store import AlertStore

        try:
            open_ = AlertStore(client, self.keys).open().values()
        except Exception as exc:  # noqa: BLE001 - no alerts readable: decide without them
            log.warning("alerts unreadable: %s", exc)
            return None
        last = self.last_run_at() or 0.0
        drops = [a for a in open_ if a.kind is AlertKind.metric_drop and a.raised_at > last]
        if not drops:
            return None
        return "open metric-drop alert: " + "; ".join(a.message for a in drops)

    def retrain(self, reason: str = "asked") -> Outcome:
        """Replay (when a broker is configured), train, promote if better."""
        from trainer.data.sources import events_for_training
        from trainer.pipeline import train_run

        s = self.settings
        try:
            counted, feedback = self.new_events(), self.new_events(self.keys.new_feedback)
        except StoreUnavailable:
            counted = feedback = 0
        log.info("retrain (%s): %d new events counted, %d explicit feedbacks", reason, counted, feedback)
        try:
            # the worker counts events as it processes them, behind the log the last run already
            # read: when the replay changes nothing the model is as fresh as the data
            loaded = events_for_training(s, say=log.info, skip_unchanged=self.last_run_at() is not None)
        except (InvalidDataset, ServiceUnavailable) as exc:
            self._save_state(last_attempt_at=time.time(), last_message=str(exc))
            log.info("nothing to train on: %s", exc)
            return Outcome(None, False, f"nothing to train on: {exc}")
        if loaded.source is None:
            self._consume(counted)  # only the counters move
            self._consume(feedback, self.keys.new_feedback)
            msg = "no new interactions in the log since the last run: nothing to retrain"
            self._save_state(last_run_at=time.time(), last_attempt_at=time.time(), last_message=msg)
            log.info("%s", msg)
            return Outcome(None, False, msg)
        source = loaded.source
        # background work beside the worker and the API: fit in this process, not on every core (`streamrec
        # train` run by hand uses them all, Settings.train_workers)
        background = s.model_copy(update={"train_workers": s.scheduler_train_workers or 1})
        result = train_run(source, background, list(s.retrain_models), tag="sched", promote=True)
        self._consume(counted)
        self._consume(feedback, self.keys.new_feedback)
        promo = result.promotion
        msg = promo.describe() if promo is not None else f"trained {result.run_dir.name}"
        self._save_state(last_run_at=time.time(), last_run=result.run_dir.name, last_message=msg,
                         last_attempt_at=time.time())
        log.info("%s", msg)
        return Outcome(result.run_dir, bool(promo and promo.promoted), msg)

    # --- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event, poll_s: float | None = None) -> None:
        s = self.settings
        poll = poll_s if poll_s is not None else max(1.0, min(30.0, s.retrain_interval_s / 10))
        backoff = 0.0
        log.info("scheduler: models %s, every %g s or after %d new events; updates every %g s or after %d new "
                 "events", s.retrain_models, s.retrain_interval_s, s.retrain_min_new_events, s.update_interval_s,
                 s.update_min_new_events)
        self._save_state(schedule={"retrain_interval_s": s.retrain_interval_s,
                                   "retrain_min_new_events": s.retrain_min_new_events,
                                   "update_interval_s": s.update_interval_s,
                                   "update_min_new_events": s.update_min_new_events})
        gate = BusyGate(s.retrain_max_delay_s)
        while not stop.is_set():
            self.look()
            reason, job = self.check(), self.retrain
            if not reason:
                reason, job = self.check_update(), self.update
            if reason and gate.postpone(self._counted, time.time()):
                log.info("retrain due (%s) but events are still arriving: waiting for the stream to settle", reason)
                reason = None
            if reason and time.time() >= backoff:
                try:
                    out = job(reason)
                    backoff = 0.0
                    if out.run_dir is None:  # no data yet: look again after a poll or two
                        backoff = time.time() + poll
                except Exception as exc:  # noqa: BLE001 - one failed retrain must not end the scheduler
                    log.exception("retrain failed: %s", exc)
                    backoff = time.time() + min(s.retrain_interval_s, 300.0)
            stop.wait(poll)
        log.info("scheduler stopped")


def run_scheduler(settings: Settings, stop: threading.Event | None = None, poll_s: float | None = None) -> None:
    """Blocking entry point: retrain whenever due until SIGTERM / SIGINT or ``stop``."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    Scheduler(settings).run(stop, poll_s)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("faiss", "aiokafka"):  # CPU probes and subscription changes on every retrain
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = get_settings()
    yield_cpu(settings)
    run_scheduler(settings)


def yield_cpu(settings: Settings) -> str:
    """Retraining is batch work: on a machine it shares with the worker and the API (``streamrec
    up``), it yields the CPU to them rather than stretching their latency. Called before torch
    starts its thread pool, so every training thread inherits it. Returns what was applied."""
    os.nice(max(0, settings.scheduler_nice))
    if settings.scheduler_idle_cpu and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "idle"
        except OSError as exc:  # a container may forbid it: the niceness still holds
            log.warning("SCHED_IDLE refused (%s): training runs at niceness %d", exc, settings.scheduler_nice)
    return "nice"


if __name__ == "__main__":
    main()
