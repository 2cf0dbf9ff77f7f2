"""Champion/challenger promotion, rollback and cleanup of runs.

A run is promoted only when it beats the serving run for ``Settings.promote_metric`` by more
than ``Settings.promote_min_delta`` on a shared holdout (``trainer.holdout``): both runs'
policies measured in this process, on the same fresh events, with the same training signals.
``train_run(..., promote=True)`` carves that holdout out before training the challenger
(``comparison``); ``streamrec promote RUN`` builds it from the current data (``data``).
Without data for a holdout, the runs' own validation figures are compared instead (they come
from different datasets, and the reason says so). ``force`` skips the comparison; with no
serving run any complete run is promoted. The figures, the holdout's size and fingerprint go
to ``promotions.json`` (and, from ``train_run``, to the run's ``metrics.json`` "holdout").
Promotion then, in this order:

1. moves ``run_current`` (atomically; the source of truth for every reader);
2. records the run in Redis ``Keys.model_current`` (run id, models, metrics);
3. publishes a ``ModelUpdate`` to the ``model-updates`` topic.

Steps 2 and 3 happen only when Redis / the broker are configured; offline, promotion just
moves the link and says so. A failure there does not undo the promotion: it is reported
as a warning (readers that missed the message still find the new run behind the link).
``promotions.json`` beside the runs keeps the stack of promoted runs that ``rollback`` walks back.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from schemas import topics
from schemas.catalog import ModelUpdate
from schemas.errors import ArtifactError, BrokerUnavailable, StoreUnavailable
from schemas.keys import Keys
from schemas.settings import Settings
from schemas.kafka_security import aiokafka_options
from trainer.artifacts import current_run, list_runs, run_score, set_current, verify_run
from trainer.holdout import Comparison, Holdout, carve, compare, run_scorer, trained_until

log = logging.getLogger(__name__)

HISTORY = "promotions.json"


@dataclass
class Decision:
    promote: bool
    reason: str
    challenger: float | None
    champion: float | None


def decide(
    challenger: float | None, champion: float | None, metric: str, min_delta: float, serving: bool = True
) -> Decision:
    """Champion/challenger on one figure (higher is better).

    >>> decide(0.42, 0.40, "ndcg@10", 0.01).promote
    True
    >>> d = decide(0.405, 0.40, "ndcg@10", 0.01); d.promote, d.reason
    (False, 'ndcg@10 0.4050 does not beat the serving run 0.4000 by more than 0.01')
    >>> decide(0.1, None, "ndcg@10", 0.0).promote
    True
    >>> decide(None, None, "ndcg@10", 0.0, serving=False).promote  # a model beats no model
    True
    >>> decide(None, None, "ndcg@10", 0.0, serving=True).promote
    False
    """
    if challenger is None and not serving:
        return Decision(True, f"no run is serving (the new run has no validation {metric})", challenger, champion)
    if challenger is None:
        return Decision(False, f"the new run has no validation {metric}", challenger, champion)
    if champion is None:
        return Decision(True, f"no serving run with a {metric} to beat", challenger, champion)
    if challenger > champion + min_delta:
        return Decision(
            True, f"{metric} {challenger:.4f} beats the serving run {champion:.4f} by more than {min_delta:g}",
            challenger, champion,
        )
    return Decision(
        False, f"{metric} {challenger:.4f} does not beat the serving run {champion:.4f} by more than {min_delta:g}",
        challenger, champion,
    )


@dataclass
class PromotionResult:
    run_id: str
    promoted: bool
    reason: str
    challenger: float | None = None
    champion: float | None = None
    champion_run: str | None = None
    holdout: dict[str, Any] | None = None  # Comparison.to_dict(), or {"note": why there was none}
    notified: list[str] = field(default_factory=list)  # "redis", "kafka"
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        head = f"promoted {self.run_id}" if self.promoted else f"kept {self.champion_run or 'no run'}; refused {self.run_id}"
        tail = f" (notified: {', '.join(self.notified)})" if self.notified else ""
        return f"{head}: {self.reason}{tail}"


# --- the promotion stack ---------------------------------------------------------------------
def _history(artifact_dir: Path) -> dict[str, Any]:
    f = Path(artifact_dir) / HISTORY
    if f.exists():
        try:
            return json.loads(f.read_text())
        except ValueError:
            log.warning("%s is unreadable; starting a new promotion history", f)
    return {"stack": [], "log": []}


def _save_history(artifact_dir: Path, hist: dict[str, Any]) -> None:
    f = Path(artifact_dir) / HISTORY
    tmp = f.with_name(f".{HISTORY}.tmp")
    tmp.write_text(json.dumps(hist, indent=2))
    os.replace(tmp, f)


def _record(artifact_dir: Path, action: str, run_id: str, **extra: Any) -> None:
    hist = _history(artifact_dir)
    if action == "promote":
        hist["stack"] = [r for r in hist["stack"] if r != run_id] + [run_id]
    hist["log"].append({"action": action, "run_id": run_id, "at": _now(), **extra})
    hist["log"] = hist["log"][-200:]
    _save_history(artifact_dir, hist)


def record_event(artifact_dir: Path, action: str, run_id: str, **extra: Any) -> None:
    """A line in the run registry's log (``promotions.json``), e.g. a canary's steps."""
    _record(artifact_dir, action, run_id, **extra)


def history_log(artifact_dir: Path) -> list[dict[str, Any]]:
    """The run registry's log, oldest first."""
    return list(_history(artifact_dir)["log"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _metrics(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


# --- the shared holdout ---------------------------------------------------------------------------
def carve_for_challenger(settings: Settings, data) -> tuple[Path | None, Holdout | None, str]:
    """Before a challenger is trained on ``data``: (the serving run, the holdout to keep out of
    the challenger's training, a note when the configured holdout could not be had).
    No serving run: (None, None, ""), there is nothing to compare with."""
    serving = current_run(settings.artifact_dir)
    if serving is None:
        return None, None, ""
    hold, note = carve(data, settings, trained_until(serving))
    if hold is None:
        return serving, None, f"no shared holdout: {note}"
    log.info("holdout for promotion: %s", hold.describe())
    return serving, hold, note


def challenger_comparison(settings: Settings, hold: Holdout, champion: Path, scorer, policy
                          ) -> tuple[Comparison | None, str]:
    """A challenger fitted on ``hold.before`` (``scorer``, ``policy``) against the run ``champion``."""
    try:
        return compare(hold, (scorer, policy), champion, settings.promote_metric), ""
    except (ValueError, ArtifactError) as exc:
        return None, f"no shared holdout: {exc}"
    except Exception as exc:  # noqa: BLE001 - a champion that cannot be measured must not lose the new run
        log.warning("the holdout comparison failed", exc_info=True)
        return None, f"no shared holdout: measuring it failed ({type(exc).__name__}: {exc})"


def _existing_runs_comparison(settings: Settings, run_dir: Path, serving: Path, data) -> tuple[Comparison | None, str]:
    """Two saved runs on a holdout cut from ``data``: since-champion means after both runs'
    data (events neither trained on); with the tail, both may have trained on it."""
    ends = [trained_until(serving), trained_until(run_dir)]
    since = max(ends) if None not in ends else None
    hold, note = carve(data, settings, since, "the newer run's data")
    if hold is None:
        return None, f"no shared holdout: {note}"
    if hold.mode == "tail":
        hold.note = (hold.note + "; " if hold.note else "") + "both runs may have trained on the tail"
    try:
        return compare(hold, run_scorer(run_dir), serving, settings.promote_metric), ""
    except (ValueError, ArtifactError) as exc:
        return None, f"no shared holdout: {exc}"


# --- promote / rollback --------------------------------------------------------------------------
def promote(settings: Settings, run_dir: Path, force: bool = False, redis_client=None,
            comparison: Comparison | None = None, data=None, holdout_note: str = "",
            reason: str | None = None) -> PromotionResult:
    """Promote ``run_dir`` if it beats the serving run on a shared holdout (or ``force``).

    ``comparison``: made by ``train_run`` against the serving run; ``data`` (``Interactions``):
    the current data to cut a holdout from for two saved runs; with neither (or a comparison
    made against a run that no longer serves and no data), the runs' validation figures are
    compared and the reason says so (``holdout_note``: why there was no holdout). ``reason``
    (with ``force``): why it is forced, e.g. a canary experiment it won (``trainer.canary``)."""
    run_dir = Path(run_dir).resolve()
    problems = verify_run(run_dir)
    if problems:
        raise ArtifactError(f"{run_dir.name} is not a complete run: {'; '.join(problems)}")
    if run_dir.parent != Path(settings.artifact_dir).resolve():
        raise ArtifactError(f"{run_dir} is not under the artifact dir {settings.artifact_dir}: only its runs can serve")
    metric = settings.promote_metric
    challenger = run_score(_metrics(run_dir), metric)
    serving = current_run(settings.artifact_dir)
    champion = run_score(_metrics(serving), metric) if serving is not None else None
    if serving is not None and serving == run_dir:
        return PromotionResult(run_dir.name, False, "this run is already serving", challenger, champion, serving.name)
    held: dict[str, Any] | None = None
    if serving is None or force:
        decision = decide(challenger, champion, metric, settings.promote_min_delta, serving=serving is not None)
    else:
        note = holdout_note
        if comparison is not None and comparison.champion_run != serving.name:
            note = f"the serving run changed since the holdout comparison (it was {comparison.champion_run})"
            comparison = None
        if comparison is None and data is not None:
            comparison, note = _existing_runs_comparison(settings, run_dir, serving, data)
        if comparison is not None:
            decision = decide(comparison.challenger, comparison.champion, f"holdout {metric}",
                              settings.promote_min_delta)
            extra = f" [{comparison.holdout['note']}]" if comparison.holdout.get("note") else ""
            decision.reason += f" on a {comparison.describe()}{extra}"
            held = comparison.to_dict()
        else:
            note = note or "no data for a shared holdout"
            decision = decide(challenger, champion, metric, settings.promote_min_delta)
            decision.reason += f" (validation figures, measured on different data: {note})"
            held = {"note": note}
    if force and reason:
        decision = Decision(True, reason, challenger, champion)
    elif force and not decision.promote:
        decision = Decision(True, f"forced ({decision.reason})", challenger, champion)
    result = PromotionResult(
        run_dir.name, decision.promote, decision.reason, decision.challenger, decision.champion,
        serving.name if serving else None, held,
    )
    if not decision.promote:
        log.warning("promotion refused for %s: %s", run_dir.name, decision.reason)
        _record(settings.artifact_dir, "refused", run_dir.name, reason=decision.reason,
                **({"holdout": held} if held else {}))
        return result
    _move(settings, run_dir, "promote", result, redis_client)
    log.info("%s", result.describe())
    removed = cleanup(settings.artifact_dir, settings.keep_runs)
    if removed:
        log.info("cleanup: removed %d old runs (%s)", len(removed), ", ".join(p.name for p in removed))
    return result


def rollback(settings: Settings, redis_client=None) -> PromotionResult:
    """Serve the run promoted before the current one (or, without history, the newest
    complete run older than it)."""
    adir = Path(settings.artifact_dir)
    serving = current_run(adir)
    if serving is None:
        raise ArtifactError("nothing to roll back: no run is serving")
    hist = _history(adir)
    stack = [r for r in hist["stack"] if r != serving.name]
    target = None
    while stack:
        cand = adir / stack[-1]
        if not verify_run(cand):
            target = cand
            break
        stack.pop()  # removed or broken since: skip it
    if target is None:
        ordered = list_runs(adir)
        names = [r.name for r in ordered]
        before = ordered[: names.index(serving.name)] if serving.name in names else []
        older = [r for r in before if not verify_run(r)]
        if not older:
            raise ArtifactError(f"nothing to roll back to: no complete run before {serving.name}")
        target = older[-1]
    hist["stack"] = stack if stack else [target.name]
    _save_history(adir, hist)
    metric = settings.promote_metric
    result = PromotionResult(
        target.name, True, f"rolled back from {serving.name}", run_score(_metrics(target), metric),
        run_score(_metrics(serving), metric), serving.name,
    )
    _move(settings, target, "rollback", result, redis_client)
    log.info("%s", result.describe())
    return result


def _move(settings: Settings, run_dir: Path, action: str, result: PromotionResult, redis_client) -> None:
    set_current(settings.artifact_dir, run_dir)
    _record(settings.artifact_dir, action, run_dir.name, score=result.challenger, previous=result.champion_run,
            **({"reason": result.reason, "holdout": result.holdout} if result.holdout else {}))
    update = model_update(run_dir, settings.promote_metric)
    if settings.redis_url or redis_client is not None:
        try:
            write_model_current(settings, update, action, redis_client)
            result.notified.append("redis")
        except StoreUnavailable as exc:
            result.warnings.append(str(exc))
    else:
        result.warnings.append("no Redis configured: sr:model:current not written (offline: only run_current moved)")
    if settings.kafka_bootstrap:
        try:
            publish_model_update(settings, update)
            result.notified.append("kafka")
        except BrokerUnavailable as exc:
            result.warnings.append(str(exc))
    else:
        result.warnings.append("no broker configured: nothing published to model-updates (offline)")
    for w in result.warnings:
        log.warning("%s", w)


def model_update(run_dir: Path, metric: str) -> ModelUpdate:
    """The ``model-updates`` record of a run: its models and its best model's validation figures."""
    run_dir = Path(run_dir)
    metrics = _metrics(run_dir)
    validation = metrics.get("validation") or {}
    best = metrics.get("best_model")
    flat: dict[str, float] = {}
    for name, values in validation.items():
        for key, value in (values or {}).items():
            if isinstance(value, (int, float)):
                flat[f"{name}.{key}"] = float(value)
    score = run_score(metrics, metric)
    if score is not None:
        flat[metric] = score
    models = sorted(p.name for p in (run_dir / "models").iterdir()) if (run_dir / "models").is_dir() else []
    if best and best in models:  # the best model first: the one a reader should prefer
        models = [best] + [m for m in models if m != best]
    return ModelUpdate(run_id=run_dir.name, run_dir=str(run_dir.resolve()), models=models, metrics=flat)


def write_model_current(settings: Settings, update: ModelUpdate, action: str, client=None) -> None:
    """Replace the ``sr:model:current`` hash in one transaction."""
    import redis

    from trainer.redis_client import sync_client

    key = Keys(settings.redis_prefix).model_current
    client = client or sync_client(settings, socket_timeout=5)
    fields = {
        "run_id": update.run_id,
        "run_dir": update.run_dir,
        "models": json.dumps(update.models),
        "metrics": json.dumps(update.metrics),
        "metric": settings.promote_metric,
        "score": "" if update.metrics.get(settings.promote_metric) is None else str(update.metrics[settings.promote_metric]),
        "action": action,
        "promoted_at": update.ts.isoformat(),
    }
    try:
        pipe = client.pipeline(transaction=True)
        pipe.delete(key)
        pipe.hset(key, mapping=fields)
        pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailable(f"could not write {key} to Redis: {exc}") from exc


def publish_model_update(settings: Settings, update: ModelUpdate) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    topic = settings.topic(topics.MODEL_UPDATES)

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000,
                                    **aiokafka_options(settings))
        try:
            await producer.start()
            # one key for every update: one partition, so readers see promotions in order
            await producer.send_and_wait(topic, update.model_dump_json().encode(), key=b"run_current")
        finally:
            await producer.stop()

    try:
        asyncio.run(send())
    except (KafkaError, OSError) as exc:
        raise BrokerUnavailable(f"could not publish to {topic}: {exc}") from exc


# --- cleanup ---------------------------------------------------------------------------------------
def cleanup(artifact_dir: Path, keep: int, grace_s: float = 3600.0) -> list[Path]:
    """Delete all but the newest ``keep`` runs. The serving run and the one a rollback would
    return to are always kept; an incomplete run younger than ``grace_s`` may still be
    being written and is left alone."""
    adir = Path(artifact_dir)
    runs = list_runs(adir)
    protected = set()
    cur = current_run(adir)
    if cur is not None:
        protected.add(cur.name)
    stack = _history(adir)["stack"]
    protected.update(stack[-2:])
    removed = []
    for run in runs[: max(0, len(runs) - max(keep, 1))]:
        if run.name in protected:
            continue
        if not (run / "COMPLETE").exists() and time.time() - run.stat().st_mtime < grace_s:
            continue
        shutil.rmtree(run, ignore_errors=True)
        removed.append(run)
    if removed:
        hist = _history(adir)
        gone = {r.name for r in removed}
        hist["stack"] = [r for r in hist["stack"] if r not in gone]
        _save_history(adir, hist)
    return removed
