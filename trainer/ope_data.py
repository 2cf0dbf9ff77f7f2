"""From the replayed snapshot to off-policy estimates (``streamrec ope``).

``logged_slots`` turns the snapshot's events into ``trainer.ope.Logs``: one row per impression
(``context.request_id``, ``position``, ``propensity``; impressions logged before propensities
existed count as deterministic, 1), rewarded when the same user acted on the same item with a
reward type (default: click) after the impression — the event naming the same request when it
names one, otherwise within ``window_s`` seconds.

``challenger_lists`` computes the target policy's list for each logged request through the one
policy path (``trainer.policy_eval.policy_lists``, what ``streamrec recommend`` and the API run),
on the run's own view of each user (its training data: the state the run was trained on, not
the exact live state at the request's time; docs/off-policy.md says what that assumes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd

from schemas.errors import InvalidDataset
from trainer.ope import Logs


@dataclass(frozen=True)
class LoggedRequests:
    logs: Logs
    users: list[str]  # the user of each request, in the order of ``logs``' request numbers
    request_ids: list[str]
    strategies: dict[str, int]  # lists per logged strategy


def logged_slots(events: pd.DataFrame, reward_types: Iterable[str] = ("click",), window_s: float = 1800.0,
                 strategy: str | None = None) -> LoggedRequests:
    """The snapshot's impressions as logged slots with rewards (see the module doc).

    >>> ev = pd.DataFrame({"event_id": ["i0", "i1", "c1"], "type": ["impression", "impression", "click"],
    ...     "user_id": ["u", "u", "u"], "item_id": ["a", "b", "b"], "timestamp": [0.0, 0.0, 5.0],
    ...     "request_id": ["r1", "r1", None], "position": [0, 1, None], "propensity": [None, 0.2, None],
    ...     "strategy": ["policy", "policy", None]})
    >>> got = logged_slots(ev)
    >>> got.logs.reward.tolist(), got.logs.propensity.tolist(), got.users
    ([0.0, 1.0], [1.0, 0.2], ['u'])
    """
    need = {"type", "user_id", "item_id", "timestamp", "request_id", "position"}
    missing = need - set(events.columns)
    if missing:
        raise InvalidDataset(f"the snapshot lacks {', '.join(sorted(missing))}: replay it with this version")
    imp = events[(events["type"] == "impression") & events["request_id"].notna() & events["position"].notna()]
    if strategy is not None:
        imp = imp[imp["strategy"] == strategy]
    if imp.empty:
        raise InvalidDataset("no logged impressions with a request id and a position in the snapshot"
                             + (f" for strategy {strategy!r}" if strategy else "")
                             + " (is STREAMREC_EMIT_IMPRESSIONS on, and was the snapshot replayed?)")
    imp = imp.drop_duplicates(["request_id", "position"]).copy()
    imp["position"] = imp["position"].astype(np.int64)
    prop = imp["propensity"] if "propensity" in imp else pd.Series(np.nan, index=imp.index)
    imp["propensity"] = pd.to_numeric(prop, errors="coerce").fillna(1.0).clip(upper=1.0)
    imp = imp[imp["propensity"] > 0]
    imp["reward"] = _rewards(imp, events[events["type"].isin(list(reward_types))], window_s)
    imp = imp.sort_values(["request_id", "position"], kind="stable")
    logs = Logs.build(imp["request_id"].to_numpy(), imp["position"].to_numpy(), imp["item_id"].to_numpy(),
                      imp["propensity"].to_numpy(), imp["reward"].to_numpy())
    first = imp.drop_duplicates("request_id")  # Logs numbers requests in sorted order of their ids
    per_strategy = first["strategy"].fillna("?").value_counts().to_dict() if "strategy" in first else {}
    return LoggedRequests(logs, first["user_id"].astype(str).tolist(), first["request_id"].astype(str).tolist(),
                          {str(k): int(v) for k, v in per_strategy.items()})


def _rewards(imp: pd.DataFrame, acts: pd.DataFrame, window_s: float) -> np.ndarray:
    """1.0 for each impression followed by a reward event of its user on its item."""
    if acts.empty:
        return np.zeros(len(imp))
    left = imp[["user_id", "item_id", "timestamp", "request_id"]].reset_index(names="_imp")
    right = acts[["user_id", "item_id", "timestamp", "request_id"]].rename(
        columns={"timestamp": "_act_ts", "request_id": "_act_req"})
    both = left.merge(right, on=["user_id", "item_id"], how="inner")
    named = both["_act_req"].notna()
    same_request = named & (both["_act_req"] == both["request_id"])
    in_window = ~named & (both["_act_ts"] >= both["timestamp"]) & (both["_act_ts"] <= both["timestamp"] + window_s)
    hit = set(both.loc[same_request | in_window, "_imp"])
    return np.array([1.0 if i in hit else 0.0 for i in imp.index])


def challenger_lists(run_dir, users: list[str], k: int) -> tuple[list[list[str]], str]:
    """The run's policy list (k items) for each user, as ``streamrec recommend`` computes it;
    and the policy's name."""
    from trainer.artifacts import load_run
    from trainer.candidates import PolicyScorer
    from trainer.policy_eval import item_infos, policy_lists
    from trainer.signals import OfflineSignals

    loaded = load_run(run_dir)
    if not loaded.models:
        raise InvalidDataset(f"{loaded.run_id} has no model")
    data = next(iter(loaded.models.values())).data
    scorer = PolicyScorer(loaded.models, list(loaded.item_ids), loaded.embeddings)
    unique = list(dict.fromkeys(users))
    lists = policy_lists(scorer, loaded.policy, OfflineSignals(data), unique, k, item_infos(data), batch_rows=False)
    return [[i for i, _ in lists[u].items] for u in users], loaded.policy.name
