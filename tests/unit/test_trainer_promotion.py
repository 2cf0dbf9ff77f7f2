"""Run registry and offline promotion: champion/challenger, rollback, cleanup (no Redis, no broker)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from schemas.errors import ArtifactError
from schemas.settings import Settings
from trainer.artifacts import current_run, list_runs, new_run_dir, resolve_run, save_run, verify_run
from trainer.base import Recommender
from trainer.data.interactions import Interactions
from trainer.promotion import cleanup, model_update, promote, rollback


class Constant(Recommender):
    """The smallest model there is: every user gets the same scores."""

    name = "constant"

    def __init__(self, bias: float = 0.0):
        self.bias = bias

    def _fit(self, data: Interactions) -> None:
        self.w_ = np.asarray(data.matrix.sum(axis=0)).ravel() + self.bias

    def _score_users(self, uidx: np.ndarray) -> np.ndarray:
        return np.tile(self.w_, (len(uidx), 1))

    def _state(self):
        return {"w": self.w_}

    def _load_state(self, state) -> None:
        self.w_ = state["w"]

    def item_embeddings(self):
        return np.stack([self.w_, np.ones_like(self.w_)], axis=1)


DATA = Interactions.from_events(pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "y", "x"]}))


def make_run(settings: Settings, ndcg: float | None, tag: str) -> "Path":  # noqa: F821
    validation = {} if ndcg is None else {"constant": {"ndcg@10": ndcg}}
    metrics = {"primary": "ndcg@10", "validation": validation, "best_model": "constant"}
    return save_run(new_run_dir(settings.artifact_dir, tag), {"constant": Constant().fit(DATA)}, metrics)


@pytest.fixture
def offline(tmp_path) -> Settings:
    return Settings(artifact_dir=tmp_path / "artifacts", data_dir=tmp_path / "data", promote_min_delta=0.01,
                    keep_runs=10)


def test_saved_run_is_complete_with_embeddings_and_index(offline):
    run = make_run(offline, 0.3, "a")
    assert verify_run(run) == []
    assert (run / "faiss" / "constant.index").exists()
    emb = np.load(run / "embeddings" / "constant.npy")
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0)
    (run / "COMPLETE").unlink()
    assert "missing COMPLETE" in verify_run(run)


def test_first_promotion_moves_the_link_and_says_it_is_offline(offline):
    run = make_run(offline, 0.3, "a")
    res = promote(offline, run)
    assert res.promoted and current_run(offline.artifact_dir) == run.resolve()
    assert res.notified == []
    assert any("no Redis" in w for w in res.warnings) and any("no broker" in w for w in res.warnings)


def test_challenger_must_beat_champion_by_the_minimum(offline, caplog):
    a = make_run(offline, 0.30, "a")
    promote(offline, a)
    b = make_run(offline, 0.305, "b")
    with caplog.at_level(logging.WARNING, logger="trainer.promotion"):
        res = promote(offline, b)
    assert not res.promoted
    assert current_run(offline.artifact_dir) == a.resolve()
    assert "0.3050" in caplog.text and "0.3000" in caplog.text  # the refusal shows both figures
    c = make_run(offline, 0.32, "c")
    assert promote(offline, c).promoted
    assert current_run(offline.artifact_dir) == c.resolve()


def test_force_and_missing_metric(offline):
    promote(offline, make_run(offline, 0.5, "a"))
    worse = make_run(offline, 0.1, "b")
    assert promote(offline, worse, force=True).promoted
    unmeasured = make_run(offline, None, "c")
    res = promote(offline, unmeasured)
    assert not res.promoted and "no validation" in res.reason


def test_incomplete_run_is_never_promoted(offline):
    run = make_run(offline, 0.9, "a")
    (run / "COMPLETE").unlink()
    with pytest.raises(ArtifactError, match="not a complete run"):
        promote(offline, run)


def test_rollback_walks_back_the_promotions(offline):
    a = make_run(offline, 0.1, "a")
    b = make_run(offline, 0.2, "b")
    c = make_run(offline, 0.3, "c")
    for run in (a, b, c):
        promote(offline, run)
    assert rollback(offline).run_id == b.name
    assert current_run(offline.artifact_dir) == b.resolve()
    assert rollback(offline).run_id == a.name
    with pytest.raises(ArtifactError, match="nothing to roll back"):
        rollback(offline)


def test_rollback_without_history_takes_the_previous_complete_run(offline):
    from trainer.artifacts import set_current

    a = make_run(offline, 0.1, "a")
    b = make_run(offline, 0.2, "b")
    set_current(offline.artifact_dir, b)  # linked by hand, no promotion history
    assert rollback(offline).run_id == a.name


def test_cleanup_keeps_the_newest_and_the_serving_runs(offline):
    runs = [make_run(offline, 0.1 * (i + 1), f"r{i}") for i in range(5)]
    promote(offline, runs[0])
    removed = cleanup(offline.artifact_dir, keep=2)
    left = [p.name for p in list_runs(offline.artifact_dir)]
    assert runs[0].name in left  # serving
    assert runs[3].name in left and runs[4].name in left  # newest two
    assert {p.name for p in removed} == {runs[1].name, runs[2].name}


def test_promotion_cleans_up_to_keep_runs(offline):
    offline = offline.model_copy(update={"keep_runs": 2})
    runs = [make_run(offline, 0.1 * (i + 1), f"r{i}") for i in range(4)]
    promote(offline, runs[0])
    promote(offline, runs[3])
    left = {p.name for p in list_runs(offline.artifact_dir)}
    assert runs[3].name in left and runs[0].name in left  # serving + the rollback target
    assert len(left) <= 3


def test_resolve_run_and_model_update(offline):
    run = make_run(offline, 0.4, "a")
    assert resolve_run(offline.artifact_dir, run.name) == run.resolve()
    with pytest.raises(ArtifactError):
        resolve_run(offline.artifact_dir, "current")
    promote(offline, run)
    assert resolve_run(offline.artifact_dir, "current") == run.resolve()
    with pytest.raises(ArtifactError, match="no run"):
        resolve_run(offline.artifact_dir, "run_nope")
    update = model_update(run, "ndcg@10")
    assert update.run_id == run.name and update.models == ["constant"]
    assert update.metrics["ndcg@10"] == 0.4
    assert json.loads(update.model_dump_json())["run_dir"] == str(run.resolve())
