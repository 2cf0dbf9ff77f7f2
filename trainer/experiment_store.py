"""Where experiments live: Redis (``Keys.experiments``, what the API replicas read) and the
artifact registry (``<artifact dir>/experiments/<name>.json``, what stays with the runs).

A stored experiment is ``ranking.experiments.Experiment.to_dict()`` plus its state: ``status``
(running, stopped, rolled_back, promoted), ``created_at``, ``updated_at``, a ``description`` and a
``history`` of what happened to it (created, reshared, stopped...). Every change is published on
the control channel (``Keys.control_channel``, ``{"experiments": name}``): each API process
re-reads the experiments on receipt, within a second, and every ``experiment_refresh_s`` anyway.

The client is a synchronous redis-py client with ``decode_responses=True`` (the CLI, the monitor,
the API's admin routes in a worker thread).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ranking.experiments import Experiment, check_namespaces, moved, reshare
from schemas.errors import NotFound
from schemas.keys import Keys

RUNNING = "running"
STATUSES = (RUNNING, "stopped", "rolled_back", "promoted")


class ExperimentConflict(ValueError):
    """A name already used, or a slice that overlaps a running experiment of its namespace."""


def is_running(doc: dict[str, Any], now: float | None = None) -> bool:
    """Whether a stored experiment serves now (running, and inside its start/stop)."""
    now = time.time() if now is None else now
    return doc.get("status") == RUNNING and Experiment.from_dict(doc).active(now)


class ExperimentStore:
    def __init__(self, client, keys: Keys, artifact_dir: Path | str | None = None, origin: str = "cli"):  # noqa: ANN001
        self.client, self.keys = client, keys
        self.dir = Path(artifact_dir) / "experiments" if artifact_dir is not None else None
        self.origin = origin

    # --- reading ---------------------------------------------------------------------------
    def all(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name, raw in (self.client.hgetall(self.keys.experiments) or {}).items():
            try:
                out[name] = json.loads(raw)
            except ValueError:
                continue  # an unreadable document is skipped, not fatal
        return dict(sorted(out.items()))

    def get(self, name: str) -> dict[str, Any]:
        raw = self.client.hget(self.keys.experiments, name)
        if raw is None:
            raise NotFound(f"no experiment named {name!r}")
        return json.loads(raw)

    def running(self, now: float | None = None) -> list[dict[str, Any]]:
        return [d for d in self.all().values() if is_running(d, now)]

    # --- writing ---------------------------------------------------------------------------
    def create(self, exp: Experiment, description: str = "", now: float | None = None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store a new experiment; ``ExperimentConflict`` when the name is taken or its slice
        overlaps a running experiment of its namespace."""
        now = time.time() if now is None else now
        if self.client.hexists(self.keys.experiments, exp.name):
            raise ExperimentConflict(f"an experiment named {exp.name!r} exists already (names are never reused: "
                                     "their counters are kept under the name)")
        others = [Experiment.from_dict(d) for d in self.running(now)]
        try:
            check_namespaces(others + [exp])
        except ValueError as exc:
            raise ExperimentConflict(str(exc)) from None
        doc = {**exp.to_dict(), "status": RUNNING, "created_at": now, "updated_at": now,
               "description": description, **(extra or {}),
               "history": [{"at": now, "action": "created", "shares": exp.shares}]}
        if doc["start"] is None:
            doc["start"] = now
        self.save(doc)
        return doc

    def set_shares(self, name: str, shares: dict[str, float], note: str = "", now: float | None = None) -> dict[str, Any]:
        """New shares, moving as few users as possible (``ranking.experiments.reshare``)."""
        now = time.time() if now is None else now
        doc = self.get(name)
        before = Experiment.from_dict(doc)
        after = reshare(before, shares)
        doc.update({k: v for k, v in after.to_dict().items() if k == "arms"}, updated_at=now)
        doc["history"].append({"at": now, "action": "reshared", "shares": after.shares,
                               "moved": round(moved(before, after), 6), **({"note": note} if note else {})})
        self.save(doc)
        return doc

    def finish(self, name: str, status: str = "stopped", note: str = "", now: float | None = None) -> dict[str, Any]:
        """Stop serving an experiment (its figures and report stay)."""
        if status not in STATUSES or status == RUNNING:
            raise ValueError(f"status must be one of {', '.join(STATUSES[1:])}")
        now = time.time() if now is None else now
        doc = self.get(name)
        doc.update(status=status, stop=now if doc.get("stop") is None or doc["stop"] > now else doc["stop"],
                   updated_at=now)
        doc["history"].append({"at": now, "action": status, **({"note": note} if note else {})})
        self.save(doc)
        return doc

    def update(self, doc: dict[str, Any], action: str, now: float | None = None, **details: Any) -> dict[str, Any]:
        """Save a document changed by the caller (e.g. a canary's step), with a history line."""
        now = time.time() if now is None else now
        doc["updated_at"] = now
        doc.setdefault("history", []).append({"at": now, "action": action, **details})
        self.save(doc)
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        Experiment.from_dict(doc)  # never store what cannot be served
        body = json.dumps(doc, sort_keys=True)
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".{doc['name']}.json.tmp"
            tmp.write_text(json.dumps(doc, indent=2, sort_keys=True))
            os.replace(tmp, self.dir / f"{doc['name']}.json")
        self.client.hset(self.keys.experiments, doc["name"], body)
        self.announce(doc["name"])

    def announce(self, name: str) -> None:
        """Tell the API processes (they re-read the experiments on it)."""
        self.client.publish(self.keys.control_channel, json.dumps({"experiments": name, "origin": self.origin}))
