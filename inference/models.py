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
    """Holds the current ``ServingRun`` (or None before anything was trained)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.current: ServingRun | None = None
        self.history: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()

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
