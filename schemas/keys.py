"""Redis key names, as fixed in DESIGN.md. One place builds them so writers and readers agree.

>>> k = Keys("sr:")
>>> k.recs("u1", "popularity", 10, version=0)
'sr:recs:u1:popularity:10'
>>> k.pop_seg("plumber")
'sr:pop:seg:plumber'
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str = "sr:"

    # popularity
    @property
    def pop_global(self) -> str:
        return f"{self.prefix}pop:global"

    @property
    def pop_trend(self) -> str:
        return f"{self.prefix}pop:trend"

    def pop_seg(self, segment: str) -> str:
        return f"{self.prefix}pop:seg:{segment}"

    # co-occurrence
    def pairs(self, item: str, segment: str = "ANY") -> str:
        return f"{self.prefix}pairs:{item}" if segment == "ANY" else f"{self.prefix}pairs:{segment}:{item}"

    def pairs_rev(self, item: str, segment: str = "ANY") -> str:
        return f"{self.prefix}pairs_rev:{item}" if segment == "ANY" else f"{self.prefix}pairs_rev:{segment}:{item}"

    # user history
    def seen(self, user: str) -> str:
        return f"{self.prefix}seen:{user}"

    def recent(self, user: str) -> str:
        return f"{self.prefix}recent:{user}"

    def user_counts(self, user: str) -> str:
        return f"{self.prefix}ucount:{user}"

    def user_profile(self, user: str) -> str:
        return f"{self.prefix}user:{user}"

    def item(self, item: str) -> str:
        return f"{self.prefix}item:{item}"

    # cache: version 0 is the plain DESIGN key; a `model-updates` event bumps the version,
    # which moves every reader to a fresh namespace without a KEYS scan.
    @property
    def cache_version(self) -> str:
        return f"{self.prefix}recs_version"

    def recs(self, user: str, strategy: str, k: int, version: int = 0) -> str:
        v = f"v{version}:" if version else ""
        return f"{self.prefix}recs:{v}{user}:{strategy}:{k}"

    def recs_index(self, user: str) -> str:
        """Set of the user's cached list keys, so the agents can invalidate them in one call."""
        return f"{self.prefix}recs_idx:{user}"

    @property
    def invalidate_channel(self) -> str:
        """Pub/sub channel: the agents publish a JSON list of user ids whose cached lists they
        dropped, or ``["*"]`` when every list is stale (a model update); API processes holding
        an in-process copy of cached bodies evict them on it."""
        return f"{self.prefix}invalidate"

    # stream-side working state (written and read only by the agents in streams/)
    @property
    def trend_meta(self) -> str:
        """Hash ``{epoch, hl}``: the forward-decay reference time and half-life of ``pop:trend``."""
        return f"{self.prefix}pop:trend:meta"

    @property
    def sessions(self) -> str:
        """Hash user -> ``item|ts``: each user's last interacted item and its time (session pairs);
        one hash so a batch reads and writes every user's entry in one command each."""
        return f"{self.prefix}sessions"

    @property
    def user_segments(self) -> str:
        """Hash user -> segment, kept by the users agent beside ``user:{id}`` so the interactions
        script looks up a whole batch's segments in one HMGET."""
        return f"{self.prefix}user_segments"

    def basket(self, basket_id: str) -> str:
        """Set of the items already seen in one basket (basket pairs)."""
        return f"{self.prefix}basket:{basket_id}"

    def impressions(self, bucket: int | str) -> str:
        """Hash ``user<TAB>item`` -> ``strategy|ts|credited`` of the impressions in one time bucket
        of one reward window (bandit credit); each bucket expires after two windows."""
        return f"{self.prefix}imp:{bucket}"

    # bandits, analytics, models
    def bandit(self, policy: str) -> str:
        """Hash ``{arm}:pulls`` / ``{arm}:rewards`` (policy = ``Settings.bandit_policy``)."""
        return f"{self.prefix}bandit:{policy}"

    def stats_day(self, day: str) -> str:
        """Hash of counters for one UTC day (``2026-11-22``): ``{strategy}:impressions``,
        ``{strategy}:clicks``, ``type:{type}``."""
        return f"{self.prefix}stats:{day}"

    def user_stats(self, user: str) -> str:
        """Hash ``{day}:{strategy}:impressions`` / ``{day}:{strategy}:clicks`` for one user."""
        return f"{self.prefix}ustats:{user}"

    def dedupe(self, event_id: str) -> str:
        return f"{self.prefix}dedupe:{event_id}"

    @property
    def model_current(self) -> str:
        return f"{self.prefix}model:current"

    @property
    def config(self) -> str:
        """Hash of run-time overrides (strengths, half-life) the agents re-read."""
        return f"{self.prefix}config"

    @property
    def new_events(self) -> str:
        """Counter of interactions since the last training run (read by the scheduler)."""
        return f"{self.prefix}train:new_events"
