"""The shared holdout promotion compares runs on.

A challenger and the serving run (the champion) are measured in one process, on one set of
fresh events, with one set of training signals: the served lists of each run's policy
(``trainer.policy_eval``) for the users known before the holdout, against the user–item
pairs those users newly formed in it. Their ``metrics.json`` validation figures come from
different datasets; these two come from the same one.

The holdout (``Settings.promote_holdout``):

- ``since-champion``: the events newer than the champion's training data (its
  ``params.json`` records ``dataset.last_event_ts``; when ``streamrec promote`` compares two
  existing runs, newer than both runs' data); at most the newest ``MAX_SHARE`` of the events.
  With fewer than ``promote_holdout_min_events`` of them (or a champion that does not record
  when its data ends) it falls back to the tail and says so in ``note``.
- ``tail``: the newest ``promote_holdout_fraction`` of the events by time (at least
  ``promote_holdout_min_events``, at most ``MAX_SHARE``). The champion may have trained on
  those events; that favours the champion, so the comparison stays conservative.

Signals (seen items, recent items, popularity) are built from the events before the holdout
for both runs, and ``before`` is what a challenger is fitted on to be measured here.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ranking.policy import Policy
from schemas.settings import Settings
from trainer.data.interactions import Interactions

log = logging.getLogger(__name__)

MODES = ("since-champion", "tail")
MAX_SHARE = 0.5  # a holdout never takes more than this share of the events


def data_span(data: Interactions) -> dict[str, float]:
    """First and last event time of a dataset (epoch seconds), for ``params.json``'s dataset info.

    >>> ev = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [10.0, 20.0]})
    >>> data_span(Interactions.from_events(ev))
    {'first_event_ts': 10.0, 'last_event_ts': 20.0}
    >>> data_span(Interactions.from_events(ev.drop(columns="timestamp")))
    {}
    """
    ts = _times(data.events)
    if ts is None or not ts.notna().any():
        return {}
    return {"first_event_ts": float(ts.min()), "last_event_ts": float(ts.max())}


def trained_until(run_dir: Path) -> float | None:
    """When a run's training data ends (``params.json`` dataset ``last_event_ts``); None if unrecorded."""
    try:
        info = json.loads((Path(run_dir) / "params.json").read_text()).get("dataset") or {}
    except (OSError, ValueError):
        return None
    value = info.get("last_event_ts")
    return float(value) if isinstance(value, (int, float)) else None


def metric_k(metric: str, default: int = 10) -> int:
    """The cut-off of a metric name.

    >>> metric_k("ndcg@20"), metric_k("auc")
    (20, 10)
    """
    _, at, k = metric.rpartition("@")
    return int(k) if at and k.isdigit() else default


def fingerprint(events: pd.DataFrame) -> str:
    """Short sha256 of the sorted (user, item, timestamp) rows: the same holdout, the same print.

    >>> a = pd.DataFrame({"user_id": ["u", "v"], "item_id": ["x", "y"], "timestamp": [2.0, 1.0]})
    >>> fingerprint(a) == fingerprint(a.iloc[::-1]), len(fingerprint(a))
    (True, 16)
    """
    rows = sorted(zip(events["user_id"].astype(str), events["item_id"].astype(str),
                      (repr(float(t)) for t in events["timestamp"])))
    h = hashlib.sha256()
    for u, i, t in rows:
        h.update(f"{u}\t{i}\t{t}\n".encode())
    return h.hexdigest()[:16]


def _times(ev: pd.DataFrame) -> pd.Series | None:
    return pd.to_numeric(ev["timestamp"], errors="coerce") if "timestamp" in ev else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


@dataclass
class Holdout:
    """The events after ``cutoff`` (the holdout) and the dataset before it."""

    before: Interactions  # events up to the cutoff; its own users, the full data's items
    events: pd.DataFrame  # the holdout's events (user_id, item_id, timestamp, ...)
    test: pd.DataFrame  # user–item pairs new in the holdout (not seen before it): what is measured
    mode: str  # "since-champion" or "tail": the one actually used
    cutoff: float  # holdout = events with timestamp > cutoff
    note: str = ""  # why the configured mode was not used, when it was not

    @property
    def n_events(self) -> int:
        return int(len(self.events))

    @property
    def n_users(self) -> int:
        return int(self.events["user_id"].nunique())

    def describe(self) -> dict[str, Any]:
        out = {"mode": self.mode, "after_ts": self.cutoff, "after": _iso(self.cutoff), "events": self.n_events,
               "users": self.n_users, "pairs": int(len(self.test)), "fingerprint": fingerprint(self.events)}
        if self.note:
            out["note"] = self.note
        return out


def split_at(data: Interactions, cutoff: float, mode: str, note: str = "") -> Holdout | None:
    """``data`` cut at ``cutoff``; None when either side is empty or no pair is new after it."""
    ev = data.events
    ts = _times(ev)
    late = (ts > cutoff).to_numpy()  # NaN times never count as late
    hold, early = ev[late], ev[~late]
    if hold.empty or early.empty:
        return None
    early = early.drop(columns=[c for c in ("uidx", "iidx") if c in early])
    before = Interactions.from_events(early, item_meta=data.item_meta, user_meta=data.user_meta,
                                      item_ids=data.item_ids)
    pairs = hold[["user_id", "item_id"]].astype(str).drop_duplicates()
    old = pd.MultiIndex.from_frame(early[["user_id", "item_id"]].astype(str))
    test = pairs[~pd.MultiIndex.from_frame(pairs).isin(old)].reset_index(drop=True)
    if test.empty:
        return None
    cols = [c for c in ("user_id", "item_id", "timestamp", "type", "value") if c in hold]
    return Holdout(before, hold[cols].reset_index(drop=True), test, mode, float(cutoff), note)


def tail_cutoff(ts: pd.Series, fraction: float, min_events: int) -> float | None:
    """The time after which the newest ``fraction`` of events lie (at least ``min_events``,
    at most ``MAX_SHARE``; ties at the cut stay before it).

    >>> tail_cutoff(pd.Series([float(t) for t in range(10)]), 0.2, 1)
    7.0
    >>> tail_cutoff(pd.Series([float(t) for t in range(10)]), 0.1, 3)
    6.0
    """
    t = np.sort(ts.dropna().to_numpy(dtype=float))
    n = min(max(math.ceil(fraction * len(t)), min_events), int(MAX_SHARE * len(t)))
    if n < 1 or len(t) - n - 1 < 0:
        return None
    return float(t[len(t) - n - 1])


def carve(data: Interactions, settings: Settings, since: float | None, since_what: str = "the serving run's data"
          ) -> tuple[Holdout | None, str]:
    """The holdout ``settings`` ask for, cut from ``data``; ``since``: when the champion's data ends.

    Returns (holdout, note): the note says why the configured mode was not used, or, when
    the holdout is None, why there is none."""
    ts = _times(data.events)
    if ts is None or not ts.notna().any():
        return None, "the events carry no timestamps: no holdout by time"
    min_events = settings.promote_holdout_min_events
    note = ""
    if settings.promote_holdout == "since-champion":
        if since is None:
            note = f"{since_what} records no end time"
        else:
            n = int((ts > since).sum())
            if n < min_events:
                note = (f"only {n} events after {since_what} ended ({_iso(since)}), fewer than "
                        f"promote_holdout_min_events={min_events}")
            else:
                cutoff = since
                if n > int(MAX_SHARE * ts.notna().sum()):  # the newest MAX_SHARE: still all unseen by the champion
                    cap = tail_cutoff(ts, MAX_SHARE, 1)
                    cutoff = since if cap is None else max(since, cap)
                hold = split_at(data, cutoff, "since-champion")
                if hold is not None:
                    return hold, ""
                note = f"the events after {since_what} ended ({_iso(since)}) add no new user-item pair"
        note += f"; using the newest {settings.promote_holdout_fraction:.0%} of events (tail) instead"
    cutoff = tail_cutoff(ts, settings.promote_holdout_fraction, min_events)
    hold = split_at(data, cutoff, "tail", note) if cutoff is not None else None
    if hold is None:
        return None, (note + "; " if note else "") + "too few events with distinct times for a tail holdout"
    return hold, note


@dataclass
class Comparison:
    """Both runs' figures on one holdout (``metric``, higher is better)."""

    metric: str
    challenger: float | None
    champion: float | None
    champion_run: str
    holdout: dict[str, Any]  # Holdout.describe() plus "evaluated_users"
    challenger_figures: dict[str, float]
    champion_figures: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "challenger": self.challenger, "champion": self.champion,
                "champion_run": self.champion_run, **self.holdout,
                "challenger_figures": self.challenger_figures, "champion_figures": self.champion_figures}

    def describe(self) -> str:
        h = self.holdout
        return (f"{h['mode']} holdout of {h['events']} events, {h['users']} users "
                f"({h.get('evaluated_users', 0)} measured, fingerprint {h['fingerprint']})")


def measure(scorer, policy: Policy, hold: Holdout, k: int, signals=None, infos=None) -> dict[str, float]:
    """The served lists of ``policy`` over ``scorer`` on the holdout, with the signals before it."""
    from trainer.policy_eval import evaluate_policy

    figures = evaluate_policy(scorer, policy, hold.before, hold.test, k, signals, infos)
    return {key: (int(v) if key == "users" else float(v)) for key, v in figures.items()}


def run_scorer(run_dir: Path):
    """(scorer, policy) of a saved run, evaluated as it is."""
    from trainer.artifacts import load_run
    from trainer.candidates import PolicyScorer

    run = load_run(run_dir)
    return PolicyScorer(run.models, list(run.item_ids), run.embeddings), run.policy


def compare(hold: Holdout, challenger: tuple[Any, Policy], champion_dir: Path, metric: str) -> Comparison:
    """``challenger`` (scorer, policy) and the saved run ``champion_dir`` on ``hold``.

    Raises ``ValueError`` when no holdout user is known before it (nothing to measure)."""
    from trainer.policy_eval import item_infos
    from trainer.signals import OfflineSignals

    k = metric_k(metric)
    signals, infos = OfflineSignals(hold.before), item_infos(hold.before)
    ch = measure(*challenger, hold, k, signals, infos)
    # Evaluated as it is: with a "tail" holdout the champion may have trained on these
    # events, which only favours it (a conservative comparison).
    cp = measure(*run_scorer(champion_dir), hold, k, signals, infos)
    info = {**hold.describe(), "evaluated_users": int(ch.get("users", 0))}
    result = Comparison(metric, ch.get(metric), cp.get(metric), Path(champion_dir).name, info, ch, cp)
    log.info("holdout: challenger %s=%s, champion %s=%s on %s", metric, result.challenger, metric, result.champion,
             result.describe())
    return result
