"""Fits side by side (trainer/fit_pool.py): a run fitted in worker processes chooses, measures and saves
what a run fitted in one process does; a worker's error is raised in the caller; a worker that dies
hands its job back."""
from __future__ import annotations

import json
import operator
import time
from pathlib import Path

import numpy as np
import pytest

from schemas.settings import Settings
from trainer import fit_pool, pipeline
from trainer.artifacts import load_run
from trainer.data.sources import load_source
from trainer.fit_pool import FitPool, worker_count
from trainer.pipeline import train_run

MODELS = ["ease", "rp3beta", "multvae", "two_tower", "lightfm"]
PARAMS = {"multvae": {"epochs": 4, "ensemble": 2, "warm_epochs": 2}, "two_tower": {"epochs": 2, "warm_epochs": 1},
          "lightfm": {"epochs": 3, "warm_epochs": 1}}


@pytest.fixture
def ratings(tmp_path) -> Path:
    """60 users in three taste groups over 45 items, with titles (the two-tower reads them)."""
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,timestamp,type"]
    for u in range(60):
        group = u % 3
        for j, item in enumerate(rng.choice(15, size=9, replace=False)):
            rows.append(f"u{u},i{group * 15 + item},{1_700_000_000 + u * 100 + j},{['view', 'click'][j % 2]}")
    path = tmp_path / "ratings.csv"
    path.write_text("\n".join(rows) + "\n")
    items = ["item_id,title,category"] + [f"i{i},film {i} {['red', 'blue', 'green'][i // 15]},{'ABC'[i // 15]}"
                                          for i in range(45)]
    (tmp_path / "items.csv").write_text("\n".join(items) + "\n")
    return path


def _train(ratings: Path, tmp_path: Path, workers: int, **extra):
    settings = Settings(artifact_dir=tmp_path / f"artifacts{workers}", data_dir=tmp_path / f"data{workers}",
                        train_threads=1, train_workers=workers, search_index_on_train=False, **extra)
    return train_run(load_source(ratings), settings, MODELS, {m: dict(p) for m, p in PARAMS.items()})


def test_a_run_fitted_in_workers_is_the_run_fitted_in_one_process(ratings, tmp_path, monkeypatch):
    monkeypatch.setattr(fit_pool, "PARALLEL_MIN_PAIRS", 0)  # this dataset is far below the size worth a worker
    monkeypatch.setattr(pipeline, "CHEAP_FIT_S", 0.0)  # a model the policy leaves out keeps its fit, however fast
    alone, side_by_side = _train(ratings, tmp_path, 1), _train(ratings, tmp_path, 2)
    for key in ("validation", "policy", "refit", "tuning", "score", "best_model"):
        assert alone.metrics.get(key) == side_by_side.metrics.get(key), key
    assert (json.loads((alone.run_dir / "policy.json").read_text())["components"]
            == json.loads((side_by_side.run_dir / "policy.json").read_text())["components"])
    assert "validation fit kept (not in the policy), all data attached" in alone.metrics["refit"].values()
    one, two = load_run(alone.run_dir), load_run(side_by_side.run_dir)
    users = np.arange(one.models["ease"].data.n_users)
    for name in MODELS:  # the saved models score alike, float for float
        np.testing.assert_array_equal(one.models[name].score_matrix(users), two.models[name].score_matrix(users))


def test_a_search_budget_spent_in_a_worker_still_says_where_it_stopped(ratings, tmp_path, monkeypatch):
    monkeypatch.setattr(fit_pool, "PARALLEL_MIN_PAIRS", 0)
    result = _train(ratings, tmp_path, 2, tune_budget_s=0.0)
    notes = result.metrics["tuning"]["stopped_early"]
    assert any(n.startswith("ease grid: stopped after 1 of") for n in notes)
    assert any(n.startswith("rp3beta grid") for n in notes)
    assert result.warnings == notes


def test_a_workers_error_is_raised_in_the_caller() -> None:
    with FitPool(1) as pool:
        jobs = [pool.submit(operator.truediv, 1, 0) for _ in range(3)]
        for job in jobs:  # whether the worker or this process ran it
            with pytest.raises(ZeroDivisionError):
                pool.result(job)


def test_a_worker_that_dies_hands_its_job_back() -> None:
    with FitPool(1) as pool:
        job = pool.submit(time.sleep, 2.0)
        deadline = time.monotonic() + 60
        while job.state != "sent" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.state == "sent"
        for pid in pool.worker_pids():
            import os
            import signal

            os.kill(pid, signal.SIGKILL)
        assert pool.result(job) is None  # slept here instead
        assert pool.result(pool.submit(operator.add, 2, 3)) == 5  # and the pool goes on, in this process


def test_worker_count() -> None:
    assert worker_count(1, 10**6) == 0  # one core: everything in the training process
    assert worker_count(3, 10**6) == 2
    assert worker_count(2, 100) == 0  # too small to be worth a worker
    assert worker_count(0, 10**6) == fit_pool.available_cores() - 1
