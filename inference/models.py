"""The serving run: which trained models answer, loaded from the run registry, hot-reloaded.

A reload loads the new run in a worker thread and then swaps one reference; a request
takes that reference once (``models.current``) and keeps using it, so requests in flight
finish on the run they started with and none fails during a swap.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ranking.policy import Policy
from schemas.errors import ArtifactError, NotFound
from trainer.candidates import PolicyScorer
from schemas.settings import Settings

log = logging.getLogger(__name__)

@dataclass
class ServingRun:
    """A loaded run plus the lookups the request path needs."""

    run: Any  # trainer.artifacts.Run
    loaded_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.item_ids: list[str] = list(self.run.item_ids)
        self.item_index = {it: i for i, it in enumerate(self.item_ids)}
        self.popularity = np.asarray(self.run.popularity, dtype=np.float32)
        # the candidate stage ``streamrec recommend`` and the policy evaluation use too
        self.scorer = PolicyScorer(self.run.models, self.item_ids, self.run.embeddings)

    @property
    def policy(self) -> Policy:
        """The run's policy: what the default strategy serves."""
        return self.run.policy

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def models(self) -> dict[str, Any]:
        return self.run.models

    def warm_up(self) -> None:
        """Build lazy per-run state before the run serves (its first request stays fast)."""
        for name in self.models:
            data = self.models[name].data
            if data is not None and data.n_users:
                try:
                    self.models[name].score_matrix(np.array([0]))
                except Exception:  # noqa: BLE001
                    pass

    def similarity_model(self) -> str | None:
        return self.scorer.sim_model

    def trained_seen(self, user: str) -> set[str]:
        """What the user interacted with in training (the seen set when Redis is away)."""
        for model in self.models.values():
            data = model.data
            if data is not None and user in data.user_index:
                row = data.matrix[data.user_index[user]]
                return {str(data.item_ids[i]) for i in row.indices}
        return set()

    def describe(self) -> dict[str, Any]:
        out = {}
        for name in self.models:
            emb = self.run.embeddings.get(name)
            index = self.run.indexes.get(name)
            out[name] = {
                "embedding_dim": None if emb is None else int(emb.shape[1]),
                "index_size": None if index is None else int(index.ntotal),
            }
        return {"run_id": self.run_id, "path": str(self.run.path), "n_items": len(self.item_ids),
                "policy": self.policy.to_dict(),
                "loaded_at": self.loaded_at, "metrics": self.run.metrics, "models": out}


class ModelRegistry:
    """Holds the current ``ServingRun`` (or None before anything was trained), and the extra runs
    the running experiments' arms name (``hold``), loaded the same way."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.current: ServingRun | None = None
        self.extra: dict[str, ServingRun] = {}  # run id -> run, for experiment arms
        self.extra_errors: dict[str, str] = {}  # run id -> why it could not be loaded
        self.history: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

    def run_for(self, run_id: str | None) -> ServingRun | None:
        """The run an arm serves: the serving run for None or its own id, else a held extra run
        (None while it is not loaded)."""
        cur = self.current
        if run_id is None or (cur is not None and cur.run_id == run_id):
            return cur
        return self.extra.get(run_id)

    def holds(self, run_id: str | None) -> bool:
        return run_id is None or self.run_for(run_id) is not None

    async def hold(self, run_ids: set[str]) -> dict[str, str]:
        """Keep exactly these runs loaded besides the serving one (loading the missing ones in a
        worker thread, dropping the others); returns the runs that could not be loaded, and why."""
        cur = self.current.run_id if self.current is not None else None
        want = {r for r in run_ids if r and r != cur}
        for run_id in sorted(want - set(self.extra)):
            try:
                serving = await asyncio.to_thread(self._load, self.resolve(run_id))
                await asyncio.to_thread(serving.warm_up)
            except Exception as exc:  # noqa: BLE001 - an arm whose run is missing is not served; the rest is
                self.extra_errors[run_id] = f"{type(exc).__name__}: {exc}"
                log.error("experiment run %s not loaded: %s", run_id, exc)
                continue
            self.extra[run_id] = serving
            self.extra_errors.pop(run_id, None)
            log.info("holding run %s for an experiment arm", run_id)
        for run_id in set(self.extra) - want:
            del self.extra[run_id]
        return {r: e for r, e in self.extra_errors.items() if r in want}

    def current_path(self) -> Path | None:
        from trainer.artifacts import current_run

        return current_run(self.settings.artifact_dir)

    async def reload(self, run_dir: Path | None = None) -> ServingRun | None:
        """Load ``run_dir`` (default: ``run_current``) and swap it in; None when there is no run."""
        async with self._lock:
            path = self.resolve(run_dir) if run_dir else self.current_path()
            if path is None:
                return self.current
            if self.current is not None and Path(self.current.run.path) == path.resolve():
                return self.current
            serving = await asyncio.to_thread(self._load, path)
            await asyncio.to_thread(serving.warm_up)
            self.current = serving
            self.history.append({"run_id": serving.run_id, "loaded_at": serving.loaded_at})
            self.history = self.history[-10:]
            log.info("serving run %s (%s)", serving.run_id, ", ".join(serving.models))
            return serving

    def resolve(self, run_dir: str | Path) -> Path:
        """A run directory by name or path; only runs under the artifact dir are loaded (a run
        is unpickled: a path from a request or a topic must not point anywhere else)."""
        base = Path(self.settings.artifact_dir).resolve()
        try:
            path = Path(run_dir)
            path = (path if path.is_absolute() else base / path).resolve()
        except (ValueError, OSError) as exc:
            raise NotFound(f"not a run directory: {run_dir!r} ({exc})") from None
        if not path.is_relative_to(base) or path == base:
            raise NotFound(f"{run_dir!r} is not a run under the artifact dir {base}")
        return path

    @staticmethod
    def _load(path: Path) -> ServingRun:
        from trainer.artifacts import load_run

        if not Path(path).exists():
            raise NotFound(f"no run at {path}")
        try:
            return ServingRun(load_run(path))
        except ArtifactError:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreadable pickle, a missing array...
            raise ArtifactError(f"cannot load {path}: {type(exc).__name__}: {exc}") from exc

    async def reindex(self) -> dict[str, int]:
        """Rebuild every FAISS index of the serving run from its stored embeddings."""
        serving = self.current
        if serving is None:
            return {}

        def build() -> dict[str, int]:
            from trainer.artifacts import build_faiss_index

            sizes = {}
            for name, emb in serving.run.embeddings.items():
                serving.run.indexes[name] = build_faiss_index(emb)
                sizes[name] = int(serving.run.indexes[name].ntotal)
            return sizes

        return await asyncio.to_thread(build)
