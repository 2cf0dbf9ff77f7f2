"""The Redis side of the agents: one script call per interactions batch, plain writes for
catalog, users and model updates. Redis errors are mapped here, at the boundary.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import orjson
import redis.asyncio as aioredis
from redis import exceptions as rexc

from schemas import topics
from schemas.catalog import CatalogItem, UserProfile
from schemas.errors import ScriptRejected, StoreUnavailable
from schemas.keys import Keys
from schemas.settings import Settings
from streams.cluster import ClusterApplier
from streams.config import StreamConfig

_SCRIPT = resources.files("streams").joinpath("lua/apply_interactions.lua").read_text()


def make_client(settings: Settings, socket_timeout: float = 10, socket_connect_timeout: float = 5,
                **options) -> aioredis.Redis:
    """The worker side's Redis client: a ``RedisCluster`` when ``Settings.redis_cluster`` is on
    (the URL names any one node), else a plain client. Every worker-side client comes from here."""
    if settings.redis_cluster:
        return aioredis.RedisCluster.from_url(settings.redis_url or "redis://127.0.0.1:6379/0", socket_timeout=socket_timeout,
                                              socket_connect_timeout=socket_connect_timeout, **options)
    return aioredis.Redis.from_url(settings.redis_url or "redis://127.0.0.1:6379/0", socket_timeout=socket_timeout,
                                   socket_connect_timeout=socket_connect_timeout, **options)


@dataclass(frozen=True)
class ApplyResult:
    new: int
    duplicates: int
    invalidated_users: int
    forgotten: int = 0  # rows of a forgotten user, dated before the forget: dropped


def item_fields(item: CatalogItem) -> dict[str, str]:
    """The catalog hash the serving and basket code read.

    >>> item_fields(CatalogItem(item_id="i1", title="T", private_label=True))["private_label"]
    '1'
    """
    return {
        "title": item.title, "text": item.text, "category": item.category or "",
        "subcategory": item.subcategory or "", "level": "" if item.level is None else str(item.level),
        "private_label": "1" if item.private_label else "0",
        "attributes": orjson.dumps(item.attributes).decode(),
    }


def user_fields(user: UserProfile) -> dict[str, str]:
    """The user hash (``segment`` and ``profession`` are synonyms, both written)."""
    return {
        "segment": user.segment or "", "profession": user.profession or "",
        "level": "" if user.level is None else str(user.level),
        "attributes": orjson.dumps(user.attributes).decode(),
    }


class StreamState:
    """Writes the agents' effects to Redis. The client is passed in, never created globally."""

    def __init__(self, client: aioredis.Redis, settings: Settings):
        self.redis = client
        self.settings = settings
        self.keys = Keys(settings.redis_prefix)
        self._templates = self.keys.interactions_script(settings.bandit_policy)
        # the offset watermark of the interactions topic this worker reads (prefix included)
        self._templates["watermark"] = self.keys.watermark(settings.topic(topics.INTERACTIONS))
        self._script = client.register_script(_SCRIPT)
        self.cluster = (ClusterApplier(client, self.keys, settings.bandit_policy, settings.topic(topics.INTERACTIONS),
                                       _SCRIPT) if settings.redis_cluster else None)

    def script_config(self, cfg: StreamConfig, now: float) -> bytes:
        return orjson.dumps(self.script_doc(cfg, now))

    def script_doc(self, cfg: StreamConfig, now: float) -> dict:
        s = self.settings
        return {
            "keys": self._templates, "now": now, "hl": cfg.half_life_s, "renorm": s.trend_renorm_half_lives,
            "gap": cfg.session_gap_s,
            "window": cfg.reward_window_s, "imp_ttl": max(1, int(2 * cfg.reward_window_s) + 60),
            "rewards": cfg.rewards, "invalidating": {t: True for t in cfg.invalidating},
            "top_n": s.pairs_top_n, "recent_max": s.recent_max, "eid_window": s.event_id_window_s,
            "user_ttl": s.user_state_ttl_s, "session_bucket_s": max(60, int(cfg.session_gap_s)),
            "basket_ttl": s.basket_ttl_s, "basket_max": s.basket_max_items,
            "positive_ttl": 3 * 86400, "comments_max": s.feedback_comments_max,
        }

    async def apply_interactions(self, rows: list[list], cfg: StreamConfig, now: float | None = None,
                                 positions: list[tuple[int, int]] | None = None) -> ApplyResult:
        """Deduplicate and apply one batch atomically (one script call). ``positions``: the
        (partition, offset) of each row's record, for the offset watermark (exactly-once on
        replays); without them only the event_id window deduplicates."""
        now = time.time() if now is None else now
        try:
            if self.cluster is not None:  # per slot group, then per target slot (streams/cluster.py)
                new, dups, users, dropped = await self.cluster.apply(self.script_doc(cfg, now), rows, positions or [])
            else:
                args = [self.script_config(cfg, now), orjson.dumps(rows), orjson.dumps(positions or [])]
                new, dups, users, dropped = await self._script(keys=[], args=args)
        except rexc.ResponseError as exc:
            raise ScriptRejected(str(exc)) from exc
        except rexc.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return ApplyResult(int(new), int(dups), int(users), int(dropped))

    async def watermarks(self) -> dict[int, tuple[int, int | None]]:
        """partition -> (highest applied offset of the interactions topic, the fingerprint of the
        record at it; None for a watermark written before fingerprints were kept)."""
        try:
            hashes = [await self.redis.hgetall(k) for k in await self._watermark_keys()]
        except rexc.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        out: dict[int, tuple[int, int | None]] = {}
        for h in hashes:  # one hash on a single node; one per slot group on a cluster: the highest wins
            raw = {_text(f): v for f, v in h.items()}
            for p, o in raw.items():
                if ":" not in p and (int(p) not in out or int(o) > out[int(p)][0]):
                    out[int(p)] = (int(o), int(raw[f"{p}:fp"]) if f"{p}:fp" in raw else None)
        return out

    async def _watermark_keys(self) -> list[str]:
        if self.cluster is None:
            return [self._templates["watermark"]]
        pattern = self.keys.watermark(self.settings.topic(topics.INTERACTIONS), "*")
        return sorted({_text(k) async for k in self.redis.scan_iter(match=pattern, count=1000)})

    async def reset_watermark(self, partition: int) -> None:
        """Forget a partition's watermark: its log restarted, its offsets start again at 0."""
        try:
            for key in await self._watermark_keys():
                await self.redis.hdel(key, str(partition), f"{partition}:fp")
        except rexc.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def upsert_items(self, items: list[CatalogItem]) -> None:
        await self._hset_many([(self.keys.item(i.item_id), item_fields(i)) for i in items])

    async def upsert_users(self, users: list[UserProfile]) -> None:
        entries = [(self.keys.user_profile(u.user_id), user_fields(u)) for u in users]
        segments = {u.user_id: u.segment or "" for u in users}
        await self._hset_many(entries + [(self.keys.user_segments, segments)])

    async def model_updated(self) -> int:
        """Every cached list is stale: move readers to a new cache namespace (no KEYS scan)."""
        try:
            version = await self.redis.incr(self.keys.cache_version)
            await self.redis.publish(self.keys.invalidate_channel, b'["*"]')
        except rexc.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return int(version)

    async def report_lag(self, worker: str, snapshot: bytes) -> None:
        """This worker's lag, for the API's health endpoint (``Keys.worker_lag``); best effort."""
        try:
            await self.redis.hset(self.keys.worker_lag, worker, snapshot)
        except rexc.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc

    async def read_overrides(self) -> dict[str, str]:
        try:
            raw = await self.redis.hgetall(self.keys.config)
        except rexc.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc
        return {_text(k): _text(v) for k, v in raw.items()}

    async def _hset_many(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        if not entries:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key, fields in entries:
                    pipe.hset(key, mapping=fields)
                await pipe.execute()
        except rexc.RedisError as exc:
            raise StoreUnavailable(f"redis: {exc}") from exc


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
