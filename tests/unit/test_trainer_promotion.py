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


# --- the shared holdout ------------------------------------------------------------------------------
def taste(group: str, users, js, t0: float, noise: float = 0.0, seed: int = 0) -> list[tuple]:
    """Click rows: user u takes items (u + 2j) % 15 of ``group`` (a noisy share replaced at random)."""
    import random

    rng = random.Random(seed)
    rows = []
    for u in users:
        for n, j in enumerate(js):
            item = rng.randrange(15) if noise and rng.random() < noise else (u + 2 * j) % 15
            rows.append((f"u{u}", f"{group}{item}", float(t0 + u * 20 + n), "click"))
    return rows


def frame(rows: list[tuple]) -> pd.DataFrame:
    ev = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "type"])
    ev = ev.drop_duplicates(["user_id", "item_id"]).reset_index(drop=True)
    ev["value"] = float("nan")
    return ev


def source(rows: list[tuple]):
    from trainer.data.rows import LoadReport, Source

    ev = frame(rows)
    return Source(ev, LoadReport("synthetic", rows=len(ev)))


USERS = range(30)
#: the newest events: every user moves on to two more items of the "b" taste
NEW_B = taste("b", USERS, [6, 7], 3000)


@pytest.fixture
def shared(tmp_path) -> Settings:
    return Settings(artifact_dir=tmp_path / "artifacts", data_dir=tmp_path / "data", promote_min_delta=0.01,
                    promote_holdout_min_events=10, keep_runs=10, train_threads=1)


def last_log(settings: Settings) -> dict:
    return json.loads((settings.artifact_dir / "promotions.json").read_text())["log"][-1]


def test_better_validation_but_worse_on_the_shared_holdout_is_refused(shared):
    from trainer.holdout import fingerprint
    from trainer.pipeline import train_run

    # the champion learnt the "b" taste (noisily: a modest validation figure of its own)
    champ = train_run(source(taste("b", USERS, range(6), 1000, noise=0.5)), shared, ["ease"], promote=True, tune=False)
    assert champ.promotion.promoted
    # the challenger's older data is a clean "a" taste (a fine validation figure), but the newest
    # events, since the champion was trained, follow "b"
    res = train_run(source(taste("a", USERS, range(8), 0) + NEW_B), shared, ["ease"], promote=True, tune=False)
    assert res.metrics["score"] > champ.metrics["score"] + shared.promote_min_delta  # the old rule would promote
    assert res.promotion.promoted is False
    assert current_run(shared.artifact_dir) == champ.run_dir.resolve()

    held = json.loads((res.run_dir / "metrics.json").read_text())["holdout"]
    assert held["mode"] == "since-champion" and "note" not in held
    assert held["champion_run"] == champ.run_dir.name and held["metric"] == "ndcg@10"
    assert held["champion"] > held["challenger"] + shared.promote_min_delta
    assert held["challenger_figures"]["ndcg@10"] == held["challenger"]
    assert held["champion_figures"]["ndcg@10"] == held["champion"]
    assert held["events"] == len(NEW_B) and held["users"] == len(USERS) and held["evaluated_users"] == len(USERS)
    assert held["fingerprint"] == fingerprint(frame(NEW_B))
    # the holdout starts where the champion's data ended
    champ_info = json.loads((champ.run_dir / "params.json").read_text())["dataset"]
    assert held["after_ts"] == champ_info["last_event_ts"]
    assert res.promotion.challenger == held["challenger"] and res.promotion.champion == held["champion"]
    assert "holdout ndcg@10" in res.promotion.reason and held["fingerprint"] in res.promotion.reason

    entry = last_log(shared)
    assert entry["action"] == "refused" and entry["run_id"] == res.run_dir.name
    assert entry["holdout"]["fingerprint"] == held["fingerprint"]
    assert (entry["holdout"]["challenger"], entry["holdout"]["champion"]) == (held["challenger"], held["champion"])
    assert entry["holdout"]["events"] == len(NEW_B)


def test_challenger_that_wins_on_the_shared_holdout_is_promoted(shared):
    from trainer.holdout import fingerprint
    from trainer.pipeline import train_run

    champ = train_run(source(taste("a", USERS, range(6), 1000)), shared, ["ease"], promote=True, tune=False)
    res = train_run(source(taste("b", USERS, range(6), 0) + NEW_B), shared, ["ease"], promote=True, tune=False)
    assert res.promotion.promoted is True
    assert current_run(shared.artifact_dir) == res.run_dir.resolve()
    held = res.metrics["holdout"]
    assert held["challenger"] > held["champion"] + shared.promote_min_delta
    assert held["events"] == len(NEW_B) and held["fingerprint"] == fingerprint(frame(NEW_B))
    assert held["champion_run"] == champ.run_dir.name
    entry = last_log(shared)
    assert entry["action"] == "promote" and entry["holdout"]["challenger"] == held["challenger"]
    assert entry["holdout"]["champion"] == held["champion"]


def test_since_champion_with_too_few_new_events_falls_back_to_the_tail(shared):
    from trainer.holdout import carve

    data = Interactions.from_events(frame(taste("a", USERS, range(8), 0)))
    last = float(data.events["timestamp"].max())
    hold, note = carve(data, shared, since=last - 1)  # one event since the champion's data ended
    assert hold is not None and hold.mode == "tail" and "tail" in note and "only 1 events" in note
    assert hold.note == note and hold.describe()["note"] == note
    assert hold.n_events >= shared.promote_holdout_min_events
    assert hold.n_events <= 0.5 * len(data.events)
    assert len(hold.before.events) + hold.n_events == len(data.events)
    assert set(map(tuple, hold.test.values)).isdisjoint(set(zip(hold.before.events["user_id"],
                                                                hold.before.events["item_id"])))
    again, _ = carve(data, shared, since=None)
    assert again.mode == "tail" and again.describe()["fingerprint"] == hold.describe()["fingerprint"]
    tail, note = carve(data, shared.model_copy(update={"promote_holdout": "tail"}), since=last - 1)
    assert tail.mode == "tail" and note == "" and tail.cutoff == hold.cutoff


def test_promote_command_compares_two_saved_runs_on_a_holdout_from_the_data(shared, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from infra.cli import app
    from schemas.settings import get_settings
    from trainer.pipeline import train_run

    for var in ("STREAMREC_KAFKA_BOOTSTRAP", "STREAMREC_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STREAMREC_ARTIFACT_DIR", str(shared.artifact_dir))
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(shared.data_dir))
    monkeypatch.setenv("STREAMREC_PROMOTE_MIN_DELTA", "0.01")
    monkeypatch.setenv("STREAMREC_PROMOTE_HOLDOUT_MIN_EVENTS", "10")
    get_settings.cache_clear()
    try:
        champ = train_run(source(taste("b", USERS, range(6), 1000, noise=0.5)), shared, ["ease"], tune=False)
        promote(shared, champ.run_dir)
        chal = train_run(source(taste("a", USERS, range(8), 0)), shared, ["ease"], tune=False)
        assert chal.metrics["score"] > champ.metrics["score"] + 0.01
        csv = tmp_path / "now.csv"
        frame(taste("a", USERS, range(8), 0) + NEW_B).to_csv(csv, index=False)

        res = CliRunner().invoke(app, ["promote", chal.run_dir.name, "--interactions", str(csv)])
        assert res.exit_code == 1, res.output
        assert "holdout ndcg@10" in res.stdout and f"{len(NEW_B)} events" in res.stdout
        entry = last_log(shared)
        assert entry["action"] == "refused" and entry["holdout"]["mode"] == "since-champion"
        assert entry["holdout"]["events"] == len(NEW_B)

        res = CliRunner().invoke(app, ["promote", chal.run_dir.name])  # no file, no snapshot: validation figures
        assert res.exit_code == 0, res.output
        assert "validation figures" in res.stdout and "no data for a shared holdout" in res.stdout
        assert current_run(shared.artifact_dir) == chal.run_dir.resolve()
    finally:
        get_settings.cache_clear()
