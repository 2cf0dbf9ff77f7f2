"""The running experiments as one API process sees them, and the arm of each home request.

``ExperimentBook`` keeps the running experiments (``Keys.experiments``, written by
``trainer.experiment_store``) in memory. It re-reads them on a ``{"experiments": …}`` message on
the control channel (``inference.control``: every replica within a second of a change) and every
``Settings.experiment_refresh_s`` anyway (a missed message costs at most that), and asks the
model registry to hold the runs their arms name.

``pick`` is the request path's only work: one SHA-256 per running experiment (two when it owns a
slice of its namespace), no I/O. A request that names a strategy is outside every experiment
(it asked for that strategy); so is a user whose arm names a run this process could not load
(serving another policy under the arm's label would spoil its figures).
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from inference import control
from inference.models import ModelRegistry
from inference.store import RedisStore, make_sync_client
from ranking.experiments import Arm, Experiment, assign
from schemas.errors import StoreUnavailable
from schemas.keys import Keys
from schemas.settings import Settings

log = logging.getLogger(__name__)

#: the policy fields an arm's ``params`` may override (ranking.policy.Policy)
ARM_PARAMS = ("mmr_lambda", "category_cap", "fill", "rescale", "candidates", "full_scoring_max_items")


def arm_variant(label: str, tag: str) -> str:
    """The cache-key suffix of an arm's lists: its label and policy hash.

    >>> arm_variant("ranker.b", "1f2e")
    '~eranker.b.1f2e'
    """
    return f"~e{label}.{tag}"


@dataclass(frozen=True)
class Pick:
    """A user's arm in a running experiment."""

    experiment: Experiment
    arm: Arm

    @property
    def label(self) -> str:
        return self.experiment.label(self.arm.name)

    @property
    def variant(self) -> str:
        """The cache-key suffix of the arm's lists (``~e{experiment}.{arm}.{policy hash}``)."""
        return arm_variant(self.label, self.arm.policy_tag)


def serving_pick(pick: Pick) -> Pick:
    """The arm whose list a user is served: their own, except in a shadow experiment, where every
    user is served the first arm and the second is only computed (``HomeService.shadow``)."""
    exp = pick.experiment
    return Pick(exp, exp.control) if exp.kind == "shadow" and pick.arm is not exp.control else pick


def parse_running(raw: dict, now: float) -> list[Experiment]:
    """The experiments of a ``Keys.experiments`` hash that serve at ``now`` (bad documents skipped).

    >>> e = Experiment.create("e", {"a": 0.5, "b": 0.5})
    >>> doc = orjson.dumps({**e.to_dict(), "status": "running"})
    >>> [x.name for x in parse_running({b"e": doc, b"bad": b"{"}, now=0.0)]
    ['e']
    """
    out = []
    for name, body in (raw or {}).items():
        try:
            doc = orjson.loads(body)
            if doc.get("status") != "running":
                continue
            exp = Experiment.from_dict(doc)
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("experiment %r not served: %s", name, exc)
            continue
        if exp.stop is None or now < exp.stop:
            out.append(exp)
    return sorted(out, key=lambda e: e.name)


def seed_from_file(settings: Settings, keys: Keys) -> list[str]:
    """Create the experiments ``Settings.experiments_file`` declares (a JSON list of
    ``POST /admin/experiments`` bodies) that do not exist yet; returns the names created.
    Blocking (a worker thread at start). A bad entry is logged and skipped."""
    import redis

    from inference.routes.experiments import ExperimentCreate, build_experiment
    from trainer.experiment_store import ExperimentStore

    path = settings.experiments_file
    if path is None or not settings.redis_url:
        return []
    try:
        bodies = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        log.error("experiments file %s not read: %s", path, exc)
        return []
    client = make_sync_client(settings, decode_responses=True, socket_timeout=5)
    store, made = ExperimentStore(client, keys, settings.artifact_dir, origin="api"), []
    try:
        for body in bodies if isinstance(bodies, list) else [bodies]:
            try:
                req = ExperimentCreate.model_validate(body)
                if client.hexists(keys.experiments, req.name):
                    continue
                store.create(build_experiment(req, settings.artifact_dir), req.description)
                made.append(req.name)
            except (ValueError, redis.RedisError) as exc:
                log.error("experiment from %s not created: %s", path, exc)
    finally:
        client.close()
    return made


class ExperimentBook:
    def __init__(self, store: RedisStore, keys: Keys, models: ModelRegistry, refresh_s: float = 2.0,
                 settings: Settings | None = None):
        self.store, self.keys, self.models, self.refresh_s = store, keys, models, refresh_s
        self.settings = settings
        self.running: list[Experiment] = []
        self.needs_segment = False  # some running experiment has an audience
        self.errors: dict[str, str] = {}  # runs named by arms that could not be loaded
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._lock = asyncio.Lock()
        self._memo: dict[str, Pick | None] = {}  # user -> arm, emptied at every refresh

    MEMO_MAX = 200_000

    # --- the request path ----------------------------------------------------------------
    def pick(self, user_id: str, segment: str | None = None, now: float | None = None) -> Pick | None:
        """The user's arm. Without a segment or a given time the answer is memoised until the next
        refresh (at most ``refresh_s``): a cached list's request then costs a dict lookup, not hashes."""
        if not self.running:
            return None
        memo = segment is None and now is None
        if memo:
            got = self._memo.get(user_id, self)
            if got is not self:
                return got  # type: ignore[return-value]
        at = time.time() if now is None else now
        pick = None
        for exp in self.running:
            arm = assign(exp, user_id, segment, at)
            if arm is not None:
                pick = Pick(exp, arm) if self.models.holds(arm.run) else None
                break
        if memo:
            if len(self._memo) >= self.MEMO_MAX:
                self._memo.clear()
            self._memo[user_id] = pick
        return pick

    # --- keeping up to date -------------------------------------------------------------
    async def refresh(self) -> None:
        async with self._lock:
            try:
                raw = await self.store.call(lambda c: c.hgetall(self.keys.experiments))
            except StoreUnavailable:
                return  # keep what we have: Redis away is no reason to stop an experiment
            running = parse_running(raw, time.time())
            runs = {a.run for e in running for a in e.arms if a.run}
            self.errors = await self.models.hold(runs)
            changed = [e.name for e in running] != [e.name for e in self.running]
            self.running = running
            self._memo = {}  # new shares, a start or stop time passed, a run loaded: assign afresh
            self.needs_segment = any(e.audience is not None for e in running)
            if changed:
                log.info("experiments running: %s", ", ".join(e.name for e in running) or "none")

    async def apply(self, change: dict[str, Any]) -> None:
        if "experiments" in change:
            await self.refresh()

    async def start(self, redis_factory) -> None:  # noqa: ANN001 - a client factory for pub/sub
        self._stop.clear()
        try:
            if self.settings is not None and self.settings.experiments_file is not None:
                made = await asyncio.to_thread(seed_from_file, self.settings, self.keys)
                if made:
                    log.info("experiments created from %s: %s", self.settings.experiments_file, ", ".join(made))
            await self.refresh()
        except Exception as exc:  # noqa: BLE001 - experiments must never keep the API down
            log.error("experiments not read at start: %s", exc)
        self._tasks = [
            asyncio.create_task(control.listen(redis_factory, self.keys.control_channel, self.apply, self._stop),
                                name="experiments-control"),
            asyncio.create_task(self._poll(), name="experiments-refresh"),
        ]

    async def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.refresh_s)
            except asyncio.TimeoutError:
                pass
            try:
                await self.refresh()
            except Exception as exc:  # noqa: BLE001 - retried at the next tick
                log.warning("experiments not refreshed: %s", exc)

    async def stop(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def describe(self) -> dict[str, Any]:
        return {"running": [e.name for e in self.running], "run_errors": self.errors}
