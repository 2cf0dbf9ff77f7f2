"""Fixtures shared by the unit tests."""
from __future__ import annotations

import pytest


@pytest.fixture
def env(tmp_path, monkeypatch):
    """Settings from a clean environment: no broker or Redis, artifacts and data under the test's
    folder, one training thread, no search index built with a run (the MiniLM index is tested
    once, in test_trainer_cli.py::test_train_builds_the_search_index_with_the_run)."""
    from schemas.settings import get_settings

    for var in ("STREAMREC_KAFKA_BOOTSTRAP", "STREAMREC_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STREAMREC_ARTIFACT_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STREAMREC_TRAIN_THREADS", "1")
    monkeypatch.setenv("STREAMREC_SEARCH_INDEX_ON_TRAIN", "false")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()
