"""Experiment tracking: `streamrec train` logs each run to MLflow when a tracking URI is set.

Tested with a local SQLite store (the file store is in maintenance mode in MLflow 3)."""
from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from tests.unit.test_trainer_cli import invoke, tiny_csv, train  # noqa: F401 - fixtures (env: conftest)


def test_a_promoted_run_is_logged_with_params_metrics_tags_and_artifacts(env, tiny_csv, monkeypatch):  # noqa: F811
    from schemas.settings import get_settings

    uri = f"sqlite:///{env / 'mlflow.db'}"
    monkeypatch.setenv("STREAMREC_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("STREAMREC_MLFLOW_EXPERIMENT", "tracking-test")
    get_settings.cache_clear()
    run = train(tiny_csv, "--model", "ease", "--promote")

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tracking-test")
    assert experiment.artifact_location.startswith((env / "artifacts").resolve().as_uri())
    [logged] = client.search_runs([experiment.experiment_id])
    assert logged.info.status == "FINISHED"
    tags = logged.data.tags
    assert tags["streamrec.run_id"] == run.name and tags["mlflow.runName"] == run.name
    assert tags["streamrec.promoted"] == "true" and tags["streamrec.policy"] == "ease"
    assert "version.numpy" in tags
    assert "lambda_" in "".join(logged.data.params) and logged.data.params["policy"] == "ease"
    metrics = json.loads((run / "metrics.json").read_text())
    assert logged.data.metrics["score"] == metrics["score"]
    assert logged.data.metrics["validation.ease.ndcg_at_10"] == metrics["validation"]["ease"]["ndcg@10"]
    artifacts = {a.path for a in client.list_artifacts(logged.info.run_id, "run")}
    assert {"run/metrics.json", "run/policy.json", "run/models"} <= artifacts


def test_tracking_is_off_by_default_and_a_dead_server_does_not_fail_training(env, tiny_csv, monkeypatch):  # noqa: F811
    from schemas.settings import get_settings

    assert get_settings().mlflow_tracking_uri is None
    assert not (env / "artifacts" / "mlflow").exists()
    monkeypatch.setenv("STREAMREC_MLFLOW_TRACKING_URI", "http://127.0.0.1:1")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    get_settings.cache_clear()
    res = invoke("train", "--interactions", tiny_csv, "--no-progress", "--model", "popularity")
    assert res.exit_code == 0, res.output
    assert "warning: MLflow logging failed" in res.stderr
