"""Warm-start updates: ``streamrec train --incremental``.

A full retrain searches grids, blend weights and λ and fits every model from scratch. An
update starts from the serving run instead:

- the new events are those past the run's snapshot offsets (``versions.json``
  ``snapshot_offsets``; for a file, those after the run's ``last_event_ts``);
- each of the run's models is updated on the whole dataset: Mult-VAE and the two-tower continue
  from the run's weights (``trainer.models._warm``: rows carried over by id, new users and items
  get fresh rows) for their ``warm_epochs``, trained only on the users the new events touch;
  EASE, RP3beta, ItemKNN and the other closed-form or neighbour models are rebuilt (their fit
  is the cheap part); LightFM continues when users and items are unchanged, else refits;
- the policy is the serving run's (same weights, same λ): nothing is searched;
- the run goes through the same promotion gate as any run (``trainer.promotion.promote`` on a
  holdout cut from the data, as ``streamrec promote RUN`` does).

Nothing new since the serving run: no run is made (``IncrementalResult.run_dir`` is None).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from schemas.errors import ArtifactError
from schemas.settings import Settings
from trainer.data.sources import Source

log = logging.getLogger(__name__)

INTERACTIONS = "interactions"


@dataclass
class IncrementalResult:
    run_dir: Path | None
    base_run: Path
    new_events: int
    metrics: dict[str, Any] = field(default_factory=dict)
    promotion: Any = None
    fit_seconds: dict[str, float] = field(default_factory=dict)
    message: str = ""


def new_event_mask(events: pd.DataFrame, run_dir: Path, offsets: pd.DataFrame | None) -> np.ndarray:
    """Which rows of ``events`` the run ``run_dir`` did not train on.

    ``offsets``: the snapshot's ``topic, partition, offset`` per row (same order as ``events``);
    rows at or past the run's ``snapshot_offsets`` are new. Without offsets (a file), rows later
    than the run's ``last_event_ts`` are.

    >>> import tempfile; d = Path(tempfile.mkdtemp())
    >>> _ = (d / "versions.json").write_text('{"snapshot_offsets": {"interactions": {"0": 2}}}')
    >>> ev = pd.DataFrame({"timestamp": [1.0, 2.0, 3.0]})
    >>> off = pd.DataFrame({"topic": ["interactions"] * 3, "partition": [0, 0, 0], "offset": [0, 1, 2]})
    >>> new_event_mask(ev, d, off).tolist()
    [False, False, True]
    """
    versions = _read(run_dir / "versions.json")
    stored = (versions.get("snapshot_offsets") or {}).get(INTERACTIONS)
    if offsets is not None and stored is not None and len(offsets) == len(events):
        topics = offsets["topic"].astype(str)
        seen_until = offsets["partition"].astype(int).map({int(p): int(o) for p, o in stored.items()}).fillna(0)
        return ((offsets["offset"].astype(int) >= seen_until) & topics.str.endswith(INTERACTIONS)).to_numpy()
    from trainer.holdout import trained_until

    until = trained_until(run_dir)
    if until is None:
        raise ArtifactError(f"{run_dir.name} records neither snapshot offsets nor when its data ends: "
                            "run a full `streamrec train` first")
    ts = pd.to_numeric(events["timestamp"], errors="coerce")
    return (ts > until).fillna(False).to_numpy()


def snapshot_offsets(settings: Settings, source: Source) -> pd.DataFrame | None:
    """The snapshot's per-row offsets when ``source`` is the snapshot (same row order as its events)."""
    if not source.offsets:
        return None
    if source.positions is not None and len(source.positions) == len(source.events):
        return source.positions.reset_index(drop=True)  # read with the events (``Snapshot.read``)
    from trainer.data.snapshot import Snapshot

    frame = Snapshot(settings.snapshot_path()).frame()
    cols = [c for c in ("topic", "partition", "offset") if c in frame]
    return frame[cols].reset_index(drop=True) if len(cols) == 3 and len(frame) == len(source.events) else None


def incremental_run(source: Source, settings: Settings, tag: str | None = "incremental", promote: bool = False,
                    verbose: bool = False) -> IncrementalResult:
    """Update the serving run with the events since it was trained; save (and maybe promote) the update."""
    from trainer.artifacts import current_run, load_policy, new_run_dir, package_versions, save_run
    from trainer.data.dataset import describe
    from trainer.data.filters import Filters
    from trainer.holdout import data_span
    from trainer.models import load_model
    from trainer.models._warm import can_warm_start, warm_fit
    from trainer.pipeline import _build, _limit_threads, dataset_from_source

    base = current_run(settings.artifact_dir)
    if base is None:
        raise ArtifactError("no serving run to update: train and promote a full run first (`streamrec train --promote`)")
    _limit_threads(settings.train_threads)
    new = new_event_mask(source.events, base, snapshot_offsets(settings, source))
    if not new.any():
        return IncrementalResult(None, base, 0, message=f"nothing new since {base.name}: no update")
    data = dataset_from_source(source, settings)
    fresh = source.events[new]
    touched = np.flatnonzero(pd.Index(data.user_ids.astype(str)).isin(set(fresh["user_id"].astype(str))))
    policy = load_policy(base)
    params = _read(base / "params.json")
    models: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    how: dict[str, str] = {}
    for mdir in sorted((base / "models").iterdir()):
        name = mdir.name
        chosen = {k: v for k, v in (params.get(name) or {}).items() if k != "verbose"}
        previous = load_model(mdir)
        model = _build(name, chosen, verbose)
        t0 = time.perf_counter()
        if can_warm_start(model, previous):
            model.focus_users_ = touched  # the warm epochs read only the users the new events touch
            warm_fit(model, data, previous)
            how[name] = (f"warm start from {base.name} ({len(touched)} users touched)"
                         if getattr(model, "warm_started_", True) else "refitted (its matrices cannot grow new rows)")
        else:
            model.fit(data)
            how[name] = "rebuilt"
        seconds[name] = round(time.perf_counter() - t0, 3)
        models[name] = model
        log.info("%s: %s in %.1f s", name, how[name], seconds[name])
    metrics: dict[str, Any] = {
        "primary": settings.promote_metric, "validation": {}, "policy": policy.name,
        "incremental": {"base_run": base.name, "new_events": int(new.sum()), "users_touched": int(len(touched)),
                        "models": how},
        "fit_seconds": seconds, "best_model": policy.models[0] if policy.models else next(iter(models)),
    }
    info = {"source": source.report.source, **describe(data), **data_span(data),
            "filters": Filters.from_settings(settings).__dict__, "incremental_from": base.name}
    versions = {**package_versions(), "snapshot_offsets": source.offsets, "source": source.report.source,
                "incremental_from": base.name}
    run_dir = save_run(new_run_dir(settings.artifact_dir, tag), models, metrics, dataset_info=info,
                       versions=versions, policy=policy)
    result = IncrementalResult(run_dir, base, int(new.sum()), metrics, fit_seconds=seconds,
                               message=f"updated {base.name} with {int(new.sum())} new events")
    if promote:
        from trainer.promotion import promote as do_promote

        result.promotion = do_promote(settings, run_dir, data=data)
    return result


def _read(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}

