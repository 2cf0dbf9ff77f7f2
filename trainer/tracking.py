"""Experiment tracking: each training run, logged to MLflow when a tracking URI is set.

Off by default (``STREAMREC_MLFLOW_TRACKING_URI`` unset). With it, every ``streamrec train``
and every scheduled retrain becomes one MLflow run named after the streamrec run: the chosen
hyperparameters and policy as params, validation and holdout figures as metrics, the
promotion decision and model versions as tags, and the run directory as artifacts.

Tracking is a record, not a gate: when the tracking server is down the training run still
stands, and the failure is returned as a warning rather than raised.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from schemas.settings import Settings

log = logging.getLogger(__name__)


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """MLflow metrics from ``metrics.json``: ``validation.<model>.<metric>``, ``holdout.<side>``, ``score``.

    >>> flat_metrics({"score": 0.5, "validation": {"ease": {"ndcg@10": 0.4, "note": "x"}},
    ...               "holdout": {"challenger": 0.41, "champion": 0.39, "events": 120}})
    {'score': 0.5, 'validation.ease.ndcg_at_10': 0.4, 'holdout.challenger': 0.41, 'holdout.champion': 0.39, 'holdout.events': 120.0}
    """
    out: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        out[key.replace("@", "_at_")] = float(value)  # MLflow metric names may not contain '@'

    put("score", metrics.get("score"))
    for model, figures in (metrics.get("validation") or {}).items():
        for name, value in (figures or {}).items():
            put(f"validation.{model}.{name}", value)
    for name, value in (metrics.get("holdout") or {}).items():
        put(f"holdout.{name}", value)
    return out


def flat_params(params: dict[str, dict[str, Any]], policy: str) -> dict[str, str]:
    """MLflow params: ``<model>.<param>`` for each chosen hyperparameter, and the policy's name.

    >>> flat_params({"ease": {"lam": 400.0}}, "blend(ease)")
    {'policy': 'blend(ease)', 'ease.lam': '400.0'}
    """
    out = {"policy": policy}
    for model, chosen in params.items():
        for name, value in chosen.items():
            out[f"{model}.{name}"] = str(value)[:500]  # MLflow caps a param's value length
    return out


def log_training_run(settings: Settings, run_dir: Path, metrics: dict[str, Any],
                     params: dict[str, dict[str, Any]], promotion: Any = None) -> str | None:
    """Log one training run to MLflow; returns a warning when that failed, else None.

    ``promotion`` is the run's ``trainer.promotion.PromotionResult`` when it was asked to be promoted."""
    if not settings.mlflow_tracking_uri:
        return None
    try:
        import mlflow
        from mlflow.tracking import MlflowClient
    except ImportError:  # pragma: no cover - mlflow-skinny is a dependency
        return "STREAMREC_MLFLOW_TRACKING_URI is set but mlflow is not installed: pip install mlflow-skinny"
    try:
        client = MlflowClient(settings.mlflow_tracking_uri)
        experiment = client.get_experiment_by_name(settings.mlflow_experiment)
        if experiment is None:
            # artifacts beside streamrec's own runs, not in the current directory (MLflow's default)
            location = (Path(settings.artifact_dir).resolve() / "mlflow").as_uri()
            experiment_id = client.create_experiment(settings.mlflow_experiment, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
        tags = {"streamrec.run_id": run_dir.name, "streamrec.policy": str(metrics.get("policy")),
                "streamrec.best_model": str(metrics.get("best_model")),
                "mlflow.runName": run_dir.name}
        tags.update(_version_tags(run_dir))
        if promotion is not None:
            tags.update({"streamrec.promoted": str(bool(promotion.promoted)).lower(),
                         "streamrec.promotion_reason": promotion.reason[:5000]})
        run = client.create_run(experiment_id, tags=tags)
        run_id = run.info.run_id
        client.log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in
                                         flat_params(params, str(metrics.get("policy"))).items()],
                         metrics=[mlflow.entities.Metric(k, v, _now_ms(), 0) for k, v in
                                  flat_metrics(metrics).items()])
        client.log_artifacts(run_id, str(run_dir), artifact_path="run")
        client.set_terminated(run_id, "FINISHED")
        log.info("logged %s to MLflow run %s (%s)", run_dir.name, run_id, settings.mlflow_tracking_uri)
        return None
    except Exception as exc:  # noqa: BLE001 - tracking must never fail a training run that succeeded
        log.warning("MLflow logging failed for %s: %s", run_dir.name, exc)
        return f"MLflow logging failed: {exc}"


def _version_tags(run_dir: Path) -> dict[str, str]:
    import json

    path = run_dir / "versions.json"
    if not path.exists():
        return {}
    versions = json.loads(path.read_text())
    return {f"version.{k}": str(v)[:5000] for k, v in versions.items() if isinstance(v, (str, int, float))}


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)
