"""Redis key names, as fixed in DESIGN.md. One place builds them so writers and readers agree.

>>> k = Keys("sr:")
>>> k.recs("u1", "popularity", 10, version=0)
'sr:recs:u1:popularity:10'
>>> k.pop_seg("plumber")
'sr:pop:seg:plumber'

Lua scripts build dynamic keys themselves (a user's seen set, a segment's popularity...). They
get them from here too, as *templates*: the literal parts around the placeholders, which the
script concatenates with the values (``{"sr:seen:", ""}`` → ``"sr:seen:" .. user .. ""``).
``Keys.template`` derives a template from the very method that builds the key, so a script
and a Python reader cannot disagree on a layout.

>>> k.template(k.seen)
['sr:seen:', '']
>>> k.template(lambda seg, item: k.pairs(item, seg), 2)
['sr:pairs:', ':', '']

Redis Cluster (``Settings.redis_cluster``, docs/redis-cluster.md): the prefix then carries the
layout (``KeyPrefix``) and keys that one script touches together share a hash slot: a user's
keys carry the user id as hash tag, an item's co-occurrence lists the item id, the global
aggregates the tag ``{<prefix>pop:global}`` (so they live with ``sr:pop:global``, which stays
plain), and the worker's working state (session and impression buckets, the event_id window,
the watermark...) is sharded by the slot of its users (``Keys.slot_tag``). Single-node keys are
exactly the ones above.

>>> c = Keys(KeyPrefix("sr:", hash_tags=True))
>>> c.seen("u42"), c.pairs("i7", "plumber"), c.pop_global, c.pop_trend
('sr:seen:{u42}', 'sr:pairs:plumber:{i7}', 'sr:pop:global', 'sr:pop:trend{sr:pop:global}')
>>> key_slot(c.seen("u42")) == key_slot(c.recent("u42")) == key_slot(c.sessions_bucket(3, c.user_group("u42")))
True
"""
from __future__ import annotations

import binascii
import hashlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Callable, NamedTuple

_HOLES = ("\x00", "\x01", "\x02")  # placeholders: never part of a real id (ids match ID_PATTERN)
SLOTS = 16384  # hash slots of a Redis Cluster


class KeyPrefix(str):
    """The key prefix, and whether keys carry Redis Cluster hash tags (``Settings.redis_prefix``
    is one when ``Settings.redis_cluster`` is on, so every ``Keys(settings.redis_prefix)`` agrees).

    >>> p = KeyPrefix("sr:", hash_tags=True)
    >>> p == "sr:", p.hash_tags, KeyPrefix("sr:").hash_tags
    (True, True, False)
    """

    hash_tags: bool

    def __new__(cls, value: str, hash_tags: bool = False) -> "KeyPrefix":
        obj = super().__new__(cls, value)
        obj.hash_tags = hash_tags
        return obj

    def __reduce__(self):  # pickles (multiprocessing, copies) keep the layout
        return (KeyPrefix, (str(self), self.hash_tags))


def key_slot(key: str | bytes) -> int:
    """The Redis Cluster hash slot of a key: CRC16 of the key, or of its hash tag (the part
    between the first ``{`` and the next ``}``, when not empty), modulo 16384.

    >>> key_slot("foo"), key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    (12182, True)
    """
    k = key.encode() if isinstance(key, str) else key
    start = k.find(b"{")
    if start >= 0:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            k = k[start + 1:end]
    return binascii.crc_hqx(k, 0) % SLOTS


@lru_cache(maxsize=1)
def _slot_tags() -> tuple[str, ...]:
    """One short string per slot that hashes to it (a few hundred thousand CRCs, once)."""
    tags: list[str | None] = [None] * SLOTS
    left, n = SLOTS, 0
    while left:
        t = format(n, "x")
        s = binascii.crc_hqx(t.encode(), 0) % SLOTS
        if tags[s] is None:
            tags[s] = t
            left -= 1
        n += 1
    return tuple(tags)  # type: ignore[arg-type]


def slot_tag(slot: int) -> str:
    """A hash tag's content that hashes to ``slot``: keys named with it live in that slot.

    >>> key_slot("{" + slot_tag(866) + "}x")
    866
    """
    return _slot_tags()[slot]


def recs_variant(explain: bool, exclude_seen: bool) -> str:
    """The part of a cached list's identity beyond user/strategy/k ('' for a default request).

    >>> recs_variant(False, True), recs_variant(True, False)
    ('', '~x~a')
    """
    return ("~x" if explain else "") + ("" if exclude_seen else "~a")


class RecsId(NamedTuple):
    """What identifies a cached list in every cache: (user, strategy, k, variant).

    It is the API's in-process cache key as is (a plain tuple of the same values is equal to
    it), and ``Keys.recs_key`` turns it into the Redis key for a cache version.
    """

    user: str
    strategy: str
    k: int
    variant: str = ""


@dataclass(frozen=True)
class Keys:
    prefix: str = "sr:"
    hash_tags: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if getattr(self.prefix, "hash_tags", False):
            object.__setattr__(self, "hash_tags", True)

    # --- Redis Cluster: hash tags (identity on a single node) -----------------------------
    def _own(self, owner: str) -> str:
        """A user's or an item's id as it appears in its keys: the hash tag in cluster mode."""
        return f"{{{owner}}}" if self.hash_tags else owner

    def _global(self, key: str) -> str:
        """A global aggregate the worker writes in one script with the others: same slot as pop:global."""
        return f"{key}{{{self.prefix}pop:global}}" if self.hash_tags else key

    def _grouped(self, name: str, group: str) -> str:
        """Worker working state: one key per slot group in cluster mode (``group`` = ``slot_tag``)."""
        return f"{self.prefix}{name}:{{{group}}}:" if self.hash_tags else f"{self.prefix}{name}:"

    def user_group(self, user: str) -> str:
        """The slot group of a user's keys in cluster mode (the tag of its slot; '' on a single node)."""
        return slot_tag(key_slot(user)) if self.hash_tags else ""

    def group_of_slot(self, slot: int) -> str:
        return slot_tag(slot) if self.hash_tags else ""

    # popularity
    @property
    def pop_global(self) -> str:
        return f"{self.prefix}pop:global"

    @property
    def pop_trend(self) -> str:
        return self._global(f"{self.prefix}pop:trend")

    def pop_seg(self, segment: str) -> str:
        return f"{self.prefix}pop:seg:{segment}"

    # co-occurrence
    def pairs(self, item: str, segment: str = "ANY") -> str:
        item = self._own(item)
        return f"{self.prefix}pairs:{item}" if segment == "ANY" else f"{self.prefix}pairs:{segment}:{item}"

    def pairs_rev(self, item: str, segment: str = "ANY") -> str:
        item = self._own(item)
        return f"{self.prefix}pairs_rev:{item}" if segment == "ANY" else f"{self.prefix}pairs_rev:{segment}:{item}"

    # user history
    def seen(self, user: str) -> str:
        return f"{self.prefix}seen:{self._own(user)}"

    def recent(self, user: str) -> str:
        return f"{self.prefix}recent:{self._own(user)}"

    def user_counts(self, user: str) -> str:
        return f"{self.prefix}ucount:{self._own(user)}"

    def user_profile(self, user: str) -> str:
        return f"{self.prefix}user:{self._own(user)}"

    def item(self, item: str) -> str:
        return f"{self.prefix}item:{self._own(item)}"

    # cache: version 0 is the plain DESIGN key; a `model-updates` event bumps the version,
    # which moves every reader to a fresh namespace without a KEYS scan.
    @property
    def cache_version(self) -> str:
        return f"{self.prefix}recs_version"

    def recs(self, user: str, strategy: str, k: int, version: int | str = 0, variant: str = "") -> str:
        """THE key of a cached list; every cache key (Redis, in-process, the home script's) comes
        from here. ``variant`` (``recs_variant``) is appended to the strategy part.

        >>> Keys("sr:").recs("u1", "hybrid", 10, version=3, variant="~x")
        'sr:recs:v3:u1:hybrid~x:10'
        """
        v = f"v{version}:" if version and version != "0" else ""
        return f"{self.prefix}recs:{v}{self._own(user)}:{strategy}{variant}:{k}"

    def recs_key(self, rid: RecsId, version: int | str = 0) -> str:
        return self.recs(rid.user, rid.strategy, rid.k, version, rid.variant)

    def recs_versioned(self, rid: RecsId) -> tuple[str, list[str]]:
        """(key at version 0, template around a version > 0) of one cached list: what a script
        needs to find the list under the cache version it reads.

        >>> Keys("sr:").recs_versioned(RecsId("u1", "hybrid", 10))
        ('sr:recs:u1:hybrid:10', ['sr:recs:v', ':u1:hybrid:10'])
        """
        return self.recs_key(rid), self.template(lambda v: self.recs_key(rid, version=v))

    def recs_lock(self, recs_key: str) -> str:
        """Lock of one cached list while an API process computes it (single flight across replicas)."""
        return f"{self.prefix}lock:{recs_key}"

    def recs_index(self, user: str) -> str:
        """Set of the user's cached list keys, so the agents can invalidate them in one call."""
        return f"{self.prefix}recs_idx:{self._own(user)}"

    def recs_pending(self, user: str, token: str) -> str:
        """A member of the user's ``recs_index`` while an API process computes one of their lists
        (never a key of its own: same hash slot as the index, so the agents' DEL of the index's
        members may name it). The list is stored only while it is still there (docs/freshness.md).

        >>> Keys("sr:").recs_pending("u1", "t7")
        'sr:recs_idx:u1:pending:t7'
        """
        return f"{self.recs_index(user)}:pending:{token}"

    @property
    def invalidate_channel(self) -> str:
        """Pub/sub channel: the agents publish a JSON list of user ids whose cached lists they
        dropped, or ``["*"]`` when every list is stale (a model update); API processes holding
        an in-process copy of cached bodies evict them on it."""
        return f"{self.prefix}invalidate"

    @property
    def alerts(self) -> str:
        """Hash: alert id -> Alert JSON (schemas/alerts.py), open and recently resolved."""
        return f"{self.prefix}alerts"

    @property
    def alerts_open(self) -> str:
        """Hash: episode (kind:metric:arm) -> id of its open alert; one open alert per episode."""
        return f"{self.prefix}alerts:open"

    @property
    def monitor_last(self) -> str:
        """JSON of the monitor's last look: what it measured (DLQ rate, records behind...)."""
        return f"{self.prefix}monitor:last"

    @property
    def control_channel(self) -> str:
        """Pub/sub channel: admin changes (basket profile, reload) one API process tells the others."""
        return f"{self.prefix}control"

    # experiments (docs/experiments.md)
    @property
    def experiments(self) -> str:
        """Hash experiment name -> JSON document (arms, shares, salt, state); the artifact dir
        keeps a copy in ``experiments/<name>.json``."""
        return f"{self.prefix}experiments"

    def experiment_users(self, label: str) -> str:
        """HyperLogLog of the users served an experiment arm (``label`` = ``{experiment}.{arm}``)."""
        return f"{self.prefix}exp_users:{label}"

    def experiment_members(self, label: str) -> str:
        """Set of the users served an experiment arm (sampled by the report for CUPED)."""
        return f"{self.prefix}exp_members:{label}"

    def shadow_log(self, experiment: str) -> str:
        """List (newest first, capped) of a shadow experiment's records: both lists, agreement, latencies."""
        return f"{self.prefix}shadow:{experiment}"

    def shadow_stats(self, experiment: str) -> str:
        """Hash of a shadow experiment's running totals (n, agreement and latency sums, dropped)."""
        return f"{self.prefix}shadow_stats:{experiment}"

    # stream-side working state (written and read only by the agents in streams/)
    @property
    def trend_meta(self) -> str:
        """Hash ``{epoch, hl}``: the forward-decay reference time and half-life of ``pop:trend``."""
        return self._global(f"{self.prefix}pop:trend:meta")

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

    def basket(self, basket_id: str, group: str = "*") -> str:
        """Set of the items already seen in one basket (basket pairs)."""
        return f"{self._grouped('basket', group)}{basket_id}"

    def impressions(self, bucket: int | str, group: str = "*") -> str:
        """Hash ``user<TAB>item`` -> ``strategy|ts|credited`` of the impressions in one time bucket
        of one reward window (bandit credit); each bucket expires after two windows."""
        return f"{self._grouped('imp', group)}{bucket}"

    # bandits, analytics, models
    def bandit(self, policy: str) -> str:
        """Hash ``{arm}:pulls`` / ``{arm}:rewards`` (policy = ``Settings.bandit_policy``)."""
        return self._global(f"{self.prefix}bandit:{policy}")

    def stats_day(self, day: str) -> str:
        """Hash of counters for one UTC day (``2026-11-22``): ``{strategy}:impressions``,
        ``{strategy}:clicks``, ``type:{type}``, and the feedback counters ``{arm}:{counter}``
        of docs/feedback.md (likes, rating_sum, ``aspect.{name}.sum``, ``dwell.lt3s``...)."""
        return self._global(f"{self.prefix}stats:{day}")

    def positive_day(self, day: str, group: str = "*") -> str:
        """Set of ``user<TAB>item`` with positive feedback on one UTC day: each counts once a day."""
        return f"{self._grouped('positive', group)}{day}"

    @property
    def comments(self) -> str:
        """List of the latest feedback comments (JSON, newest first), capped."""
        return self._global(f"{self.prefix}feedback:comments")

    def user_stats(self, user: str) -> str:
        """Hash ``{day}:{strategy}:impressions`` / ``{day}:{strategy}:clicks`` for one user."""
        return f"{self.prefix}ustats:{self._own(user)}"

    def dedupe(self, event_id: str) -> str:
        """Legacy per-event idempotency marker (before the offset watermark); read, never written."""
        return f"{self.prefix}dedupe:{event_id}"

    def watermark(self, topic: str, group: str = "*") -> str:
        """Hash partition -> highest offset of ``topic`` whose effects are applied (exactly-once on replays)."""
        return f"{self._grouped('wm', group)}{topic}"

    def event_ids(self, bucket: int | str, group: str = "*") -> str:
        """Set of the event ids applied in one bucket of the event_id window (a re-sent event counts once)."""
        return f"{self._grouped('eids', group)}{bucket}"

    def sessions_bucket(self, bucket: int | str, group: str = "*") -> str:
        """Hash user -> ``item|ts|day`` of the users active in one time bucket of one session gap:
        their last interacted item and its time (session pairs) and the day their keys' TTL was
        last renewed; expires after two buckets, so inactive users hold no session."""
        return f"{self._grouped('sessions', group)}{bucket}"

    def forgotten(self, digest: str, group: str = "*") -> str:
        """String: epoch seconds of a user's forget; the user's events dated before it are dropped
        (TTL). Named by ``user_digest``, never by the id: the marker keeps no readable trace."""
        return f"{self._grouped('forgotten', group)}{digest}"

    @staticmethod
    def user_digest(user: str) -> str:
        """SHA-1 hex of a user id (Lua computes the same with ``redis.sha1hex``).

        >>> Keys.user_digest("u1")
        'c5ea71554c774daf7fab320fc3476afc0617eb00'
        """
        return hashlib.sha1(user.encode()).hexdigest()

    def user_keys(self, user: str) -> list[str]:
        """Every key that belongs to one user alone: forgetting the user deletes them, the
        footprint lists those still held. Beside them a user appears as a field of
        ``user_segments``, of the session buckets (and of the legacy ``sessions`` hash), in the cached lists
        (``recs_patterns``), as ``user<TAB>item`` in impression buckets and positive-day sets,
        and in feedback comments."""
        return [self.seen(user), self.recent(user), self.user_counts(user), self.user_stats(user),
                self.user_profile(user), self.recs_index(user)]

    def recs_patterns(self, user: str) -> list[str]:
        """SCAN patterns of the user's cached lists, every cache version (ids hold no glob characters)."""
        return [f"{self.prefix}recs:{self._own(user)}:*", f"{self.prefix}recs:v*:{self._own(user)}:*"]

    @property
    def forgotten_any(self) -> str:
        """Exists while any ``forgotten`` marker may: the batch script looks markers up only then."""
        return f"{self.prefix}forgotten:any"

    def forgotten_any_in(self, group: str) -> str:
        """``forgotten_any`` of one slot group (cluster mode); ``forgotten_any`` on a single node."""
        return f"{self._grouped('forgotten', group)}any" if self.hash_tags else self.forgotten_any

    # --- cluster mode: the batch's effects per slot group (streams/cluster.py) ------------
    def outbox(self, group: str, partition: int) -> str:
        """Hash seq -> JSON of the effects a slot group's batch script computed for other slots
        (aggregates, co-occurrences), kept until every target slot applied them."""
        return f"{self.prefix}outbox:{{{group}}}:{partition}"

    def pending_outboxes(self, partition: int) -> str:
        """Set of the slot groups whose outbox of ``partition`` may hold effects not yet applied."""
        return f"{self.prefix}outbox_pending:{partition}"

    def drain_seq(self, partition: int) -> str:
        """Counter: the sequence number of each drain of ``partition``'s outboxes."""
        return f"{self.prefix}drain_seq:{partition}"

    def applied_drains(self, group: str) -> str:
        """Hash partition -> the last drain sequence applied to this slot group (exactly once)."""
        return f"{self.prefix}drained:{{{group}}}"

    @property
    def model_current(self) -> str:
        return f"{self.prefix}model:current"

    @property
    def config(self) -> str:
        """Hash of run-time overrides (strengths, half-life) the agents re-read."""
        return f"{self.prefix}config"

    @property
    def worker_lag(self) -> str:
        """Hash: worker id -> JSON of its consumer lag and event-to-Redis lag (the health endpoint reads it)."""
        return f"{self.prefix}worker:lag"

    @property
    def new_events(self) -> str:
        """Counter of interactions since the last training run (read by the scheduler)."""
        return self._global(f"{self.prefix}train:new_events")

    @property
    def new_feedback(self) -> str:
        """Counter of explicit feedbacks (rate, like, dislike) since the last training run."""
        return self._global(f"{self.prefix}train:new_feedback")

    # --- templates for Lua scripts ----------------------------------------------------------
    @staticmethod
    def template(build: Callable[..., str], holes: int = 1) -> list[str]:
        """The literal parts of ``build(a[, b])`` around its placeholders, in argument order."""
        key = build(*_HOLES[:holes])
        parts, rest = [], key
        for hole in _HOLES[:holes]:
            head, found, rest = rest.partition(hole)
            assert found, f"placeholders out of order in {key!r}"
            parts.append(head)
        return parts + [rest]

    def interactions_script(self, policy: str, group: str = "") -> dict[str, str | list[str]]:
        """Every key ``streams/lua/apply_interactions.lua`` touches: names, and templates of
        one value or of (segment, item). ``group``: the slot group of the call (cluster mode).

        >>> t = Keys("sr:").interactions_script("epsilon_greedy")
        >>> t["seen"], t["pairs_seg"], t["bandit"]
        (['sr:seen:', ''], ['sr:pairs:', ':', ''], 'sr:bandit:epsilon_greedy')
        """
        t = self.template
        seg_item = lambda build: t(lambda seg, item: build(item, seg), 2)  # noqa: E731
        return {
            "pop_global": self.pop_global, "pop_trend": self.pop_trend, "trend_meta": self.trend_meta,
            "pop_seg": t(self.pop_seg),
            "pairs_any": t(self.pairs), "pairs_rev_any": t(self.pairs_rev),
            "pairs_seg": seg_item(self.pairs), "pairs_rev_seg": seg_item(self.pairs_rev),
            "seen": t(self.seen), "recent": t(self.recent),
            "user_counts": t(self.user_counts), "user_profile": t(self.user_profile),
            "sessions": self.sessions, "sessions_bucket": t(lambda b: self.sessions_bucket(b, group)),
            "user_segments": self.user_segments,
            "basket": t(lambda b: self.basket(b, group)), "event_ids": t(lambda b: self.event_ids(b, group)),
            "forgotten": t(lambda d: self.forgotten(d, group)), "forgotten_any": self.forgotten_any_in(group),
            "impressions": t(lambda b: self.impressions(b, group)), "bandit": self.bandit(policy),
            "stats_day": t(self.stats_day), "user_stats": t(self.user_stats),
            "positive_day": t(lambda d: self.positive_day(d, group)), "comments": self.comments,
            "dedupe": t(self.dedupe), "recs_index": t(self.recs_index),
            "invalidate_channel": self.invalidate_channel, "new_events": self.new_events,
            "new_feedback": self.new_feedback,
        }

    @cached_property
    def home_templates(self) -> tuple[list[str], list[str]]:
        """(segment popularity, co-occurrence of an item): the dynamic keys of the API's home
        script (``inference/lua/home.lua``) beyond the user's own keys."""
        return self.template(self.pop_seg), self.template(self.pairs)

    def home_script(self, user: str) -> list[str]:
        """The KEYS of the home script, in its order: cache version, the user's profile, seen
        set and recent list, global popularity, trending."""
        return [self.cache_version, self.user_profile(user), self.seen(user), self.recent(user),
                self.pop_global, self.pop_trend]

    @cached_property
    def item_template(self) -> list[str]:
        """The catalog hash of an item (the basket script, ``inference/basket/fetch.lua``)."""
        return self.template(self.item)
