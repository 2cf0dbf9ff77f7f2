"""The home list service: the whole path of one home list.

In-process cache, then (single-flight) the Redis cache and the user's state in one round trip,
the strategy's policy (``inference.strategies`` → ``ranking.home``), and the result stored back.
Redis failures switch it to the degraded path (the run's training data and an in-process
popularity snapshot) instead of failing the request. The route only validates and calls it.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime, timezone

from inference.bandit import BanditChooser
from inference.broker import Broker
from inference.cache import CachedList, LocalCache, ReplicaFlight
from inference.experiments import ExperimentBook, Pick, arm_variant, serving_pick
from inference.metrics import ApiMetrics
from inference.models import ModelRegistry
from inference.retrieval import ItemCatalog, PopularitySnapshot, UserContext, fetch_home
from inference.store import STORE_LIST_LUA, RedisStore
from inference.strategies import HomeQuery, rank_home, served_name, strategy_names
from schemas.errors import StoreUnavailable
from schemas.keys import RecsId, recs_variant
from schemas.settings import Settings


log = logging.getLogger(__name__)
#: names this process's pending computations in the users' recs indexes (``Keys.recs_pending``)
_PENDING = (f"{uuid.uuid4().hex[:12]}.{n}" for n in itertools.count())
SHADOW_KEEP = 1000  # shadow records kept per experiment (the newest)
EXPOSURE_TTL_S = 90 * 86400  # an arm's exposed users are kept this long after its last list


@dataclass(frozen=True)
class Served:
    """A list ready to send: the cached form plus whether it came from a cache."""

    entry: CachedList
    cached: bool


_stores: set[asyncio.Task] = set()  # stores of computed lists in flight (a task needs a reference to live)


class UnknownStrategy(ValueError):
    """A ``strategy`` value no built-in, model or serving policy answers to."""


def cache_variant(q: HomeQuery) -> str:
    """The part of the cache key beyond user/strategy/k (default requests: the plain key).

    >>> cache_variant(HomeQuery("u", 10, "popularity"))
    ''
    >>> cache_variant(HomeQuery("u", 10, "popularity", explain=True))
    '~x'
    >>> cache_variant(HomeQuery("u", 10, "popularity", experiment="e", arm="b", tag="1f"))
    '~ee.b.1f'
    """
    plain = recs_variant(q.explain, q.filters.exclude_seen)
    return plain + arm_variant(q.label, q.tag) if q.experiment else plain


#: the chance with which the bandit chose this request's arm; a context variable, so it is the
#: request's own (each request runs in its own task), and None for requests not served by the bandit
ARM_CHANCE: ContextVar[float | None] = ContextVar("arm_chance", default=None)


class HomeService:
    def __init__(self, settings: Settings, store: RedisStore, broker: Broker, models: ModelRegistry,
                 local: LocalCache, catalog: ItemCatalog, snapshot: PopularitySnapshot, bandit: BanditChooser,
                 metrics: ApiMetrics):
        self.settings, self.store, self.keys, self.broker = settings, store, store.keys, broker
        self.models, self.local, self.catalog, self.snapshot = models, local, catalog, snapshot
        self.bandit, self.metrics = bandit, metrics
        self.cache_version = 0
        self.stale_dropped = 0  # computed lists not kept in Redis: an event of the user came after their read
        self.strategies = strategy_names()
        self._served_counts: dict[tuple[str, str], int] = {}
        self._arm_users: dict[str, set[str]] = {}  # experiment arm label -> users served since the last flush
        self.experiments = ExperimentBook(store, store.keys, models, settings.experiment_refresh_s, settings)
        self._shadows: set[asyncio.Task] = set()  # shadow computations in flight (inference/experiments.py)
        self.flight = ReplicaFlight(store, settings.single_flight_lock_s, settings.single_flight_wait_s)

    # --- experiments (inference/experiments.py) ----------------------------------------------
    async def pick(self, user_id: str, strategy: str | None) -> Pick | None:
        """The user's experiment arm; None when the request names a strategy or no running
        experiment takes the user. An audience needs the user's segment: one Redis read, only
        while such an experiment runs."""
        book = self.experiments
        if strategy or not book.running:
            return None
        segment = None
        if book.needs_segment:
            try:
                got = await self.store.call(lambda c: c.hmget(self.keys.user_profile(user_id), "segment", "profession"))
                segment = next((v.decode() if isinstance(v, bytes) else v for v in got if v), None)
            except StoreUnavailable:
                pass
        return book.pick(user_id, segment)

    def fast_route(self, user_id: str, strategy: str | None) -> tuple[str | None, str, str | None] | None:
        """For the cached fast path, without I/O: (served strategy or None for the default, cache
        variant suffix, arm label), or None when the arm cannot be known without a Redis read."""
        book = self.experiments
        if strategy or not book.running:
            return None, "", None
        if book.needs_segment:
            return None
        pick = book.pick(user_id)
        if pick is None:
            return None, "", None
        if pick.experiment.kind == "interleaving":
            return None  # merged per request by the route
        pick = serving_pick(pick)
        return served_name(pick.arm.strategy, self.models.run_for(pick.arm.run)), pick.variant, pick.label

    # --- shadow experiments --------------------------------------------------------------------
    SHADOW_CONCURRENCY = 2

    @property
    def shadows_in_flight(self) -> int:
        return len(self._shadows)

    def shadow(self, q: HomeQuery, pick: Pick, served: CachedList, served_ms: float) -> bool:
        """Compute the shadow arm's list for this request in the background (never on the request's
        path); False when too many are in flight (the request is then not sampled, and counted)."""
        exp = pick.experiment
        if len(self._shadows) >= self.SHADOW_CONCURRENCY:
            asyncio.get_running_loop().create_task(self._shadow_dropped(exp.name))
            return False
        shadow_q = self.arm_query(replace(q, filters=q.filters), Pick(exp, exp.arms[1]))
        task = asyncio.get_running_loop().create_task(self._shadow(shadow_q, exp.name, served, served_ms))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)
        return True

    async def _shadow(self, q: HomeQuery, experiment: str, served: CachedList, served_ms: float) -> None:
        import time

        import orjson

        from ranking.experiments import overlap_at_k, rank_biased_overlap

        try:
            t0 = time.perf_counter()
            entry, _ = await self._miss(q, self.local_key(q), False)  # computed, never cached
            ms = (time.perf_counter() - t0) * 1000
        except Exception as exc:  # noqa: BLE001 - a failing shadow must never touch serving
            log.warning("shadow list of %s failed: %s", experiment, exc)
            return
        a, b = list(served.items), list(entry.items)
        overlap, rbo = overlap_at_k(a, b, q.k), rank_biased_overlap(a, b)
        record = orjson.dumps({"at": time.time(), "user_id": q.user_id, "k": q.k, "served": a, "shadow": b,
                               "overlap": round(overlap, 6), "rbo": round(rbo, 6),
                               "served_ms": round(served_ms, 3), "shadow_ms": round(ms, 3)})
        log_key, stats = self.keys.shadow_log(experiment), self.keys.shadow_stats(experiment)

        def build(pipe) -> None:  # noqa: ANN001
            pipe.lpush(log_key, record)
            pipe.ltrim(log_key, 0, SHADOW_KEEP - 1)
            pipe.hincrby(stats, "n", 1)
            pipe.hincrbyfloat(stats, "overlap_sum", overlap)
            pipe.hincrbyfloat(stats, "rbo_sum", rbo)
            pipe.hincrbyfloat(stats, "shadow_ms_sum", ms)
            pipe.hincrbyfloat(stats, "served_ms_sum", served_ms)

        try:
            await self.store.pipeline(build)
        except StoreUnavailable:
            pass

    async def _shadow_dropped(self, experiment: str) -> None:
        try:
            await self.store.call(lambda c: c.hincrby(self.keys.shadow_stats(experiment), "dropped", 1))
        except StoreUnavailable:
            pass

    def arm_query(self, q: HomeQuery, pick: Pick) -> HomeQuery:
        """``q`` served as the arm's policy."""
        arm = pick.arm
        q.strategy = served_name(arm.strategy, self.models.run_for(arm.run))
        q.experiment, q.arm, q.run, q.params, q.tag = pick.experiment.name, arm.name, arm.run, dict(arm.params), arm.policy_tag
        return q

    async def resolve(self, strategy: str | None) -> str:
        """The name a request is served and cached under: the default strategy, a bandit's arm,
        ``policy`` as the serving run's policy name. ``UnknownStrategy`` for a bad name."""
        name = strategy or self.settings.default_strategy
        serving = self.models.current
        if name not in self.strategies and (serving is None or name != serving.policy.name):
            raise UnknownStrategy(f"unknown strategy {name!r}: choose one of {', '.join(self.strategies)}")
        if name == "bandit":
            name, chance = await self.bandit.choose_with_probability(self.bandit_arms())
            ARM_CHANCE.set(chance)  # this request's impressions log it in their propensity (_book)
        return served_name(name, serving)

    def local_key(self, q: HomeQuery) -> RecsId:
        """The in-process key (``Keys.recs_key`` of it at a version is the Redis key)."""
        return RecsId(q.user_id, q.strategy, q.k, cache_variant(q))

    def cacheable(self, q: HomeQuery) -> bool:
        f = q.filters
        return not (f.include or f.exclude or f.category_cap is not None)

    async def home(self, q: HomeQuery) -> Served:
        key = self.local_key(q)
        cacheable = self.cacheable(q)
        if cacheable:
            hit = self.local.get(key)
            if hit is not None:
                self.metrics.hit_local.inc()
                return Served(hit, True)
            # joined only by requests of the same generation: one that arrives after an invalidation
            # of the user never gets a list computed from the state before it
            token = self.local.token(q.user_id)
            (entry, cached), leader = await self.local.single_flight((key, token),
                                                                     lambda: self._miss(q, key, True, token))
            return Served(entry, cached or not leader)
        entry, _ = await self._miss(q, key, False)
        return Served(entry, False)

    async def _miss(self, q: HomeQuery, key: tuple, cacheable: bool,
                    token: tuple[int, int] | None = None) -> tuple[CachedList, bool]:
        token = self.local.token(q.user_id) if token is None else token
        n = max(self.settings.candidates_n, q.k * 3)
        variant = q.strategy + cache_variant(q)
        # the Redis tier's own generation check: marked in the user's recs index by the same call that
        # reads the state, checked by the store (an invalidation deletes the index: docs/freshness.md)
        pending = self.keys.recs_pending(q.user_id, next(_PENDING)) if cacheable else None
        try:
            version, raw, ctx = await fetch_home(self.store, q.user_id, n + q.k, full=q.strategy != "popularity",
                                                 recs=(variant, q.k) if cacheable else None,
                                                 pending=(pending, self.settings.cache_ttl_s) if pending else None)
            self.cache_version = version
            if raw is not None:
                entry = CachedList.from_redis(raw)
                self.local.put(key, entry, token)
                self.metrics.hit_redis.inc()
                return entry, True
        except StoreUnavailable:
            ctx = self.degraded_context(q.user_id)
        serving = self.models.run_for(q.run)

        async def compute() -> CachedList:
            self.metrics.miss.inc()
            payload = await rank_home(q, ctx, serving, self.catalog, None if ctx.degraded else self.store,
                                      self.settings, self.snapshot.items)
            return CachedList.from_payload(payload)

        if ctx.degraded:
            entry = await compute()
            self.metrics.degraded.inc()
            return entry, False
        redis_key = self.keys.recs_key(key, ctx.cache_version)
        if cacheable and self.settings.single_flight_replicas:
            # one computation across replicas: the others wait for this list in the Redis cache
            entry, elsewhere = await self.flight.run(
                redis_key, self.keys.recs_lock(redis_key), compute,
                lambda e: self._store_redis(q.user_id, redis_key, e, pending, token), CachedList.from_redis)
            if token == self.local.token(q.user_id):
                self.local.put(key, entry, token)
            if elsewhere:
                self.metrics.hit_redis.inc()
            return entry, elsewhere
        entry = await compute()
        if cacheable and token == self.local.token(q.user_id):
            self.local.put(key, entry, token)
            task = asyncio.get_running_loop().create_task(self._store_redis(q.user_id, redis_key, entry, pending, token))
            _stores.add(task)
            task.add_done_callback(_stores.discard)
        return entry, False

    async def _store_redis(self, user: str, key: str, entry: CachedList, pending: str | None,
                           token: tuple[int, int]) -> bool:
        """Keep the list in Redis unless an event of the user was applied after its state was read:
        the pending member ``fetch_home`` put in the user's recs index is gone then (the agents'
        invalidation deletes the index), whatever the timing of the invalidation message here."""
        if pending is None:
            return False
        if token != self.local.token(user):
            self.stale_dropped += 1
            return False  # invalidated here already: no need to ask Redis
        script = self.store.script(STORE_LIST_LUA)
        keys = [self.keys.recs_index(user), key]
        args = [pending, entry.redis_value, self.settings.cache_ttl_s]
        try:
            stored = await self.store.call(lambda c: script(keys=keys, args=args, client=c))
        except StoreUnavailable:
            return False
        if not stored:
            self.stale_dropped += 1
        return bool(stored)

    def degraded_context(self, user: str) -> UserContext:
        serving = self.models.current
        seen = serving.trained_seen(user) if serving is not None else set()
        return UserContext(user_id=user, seen=seen, pop_global=list(self.snapshot.items), degraded=True)

    def served(self, request_id: str, entry: CachedList, label: str | None = None) -> None:
        """Bookkeeping of one served list: impressions and strategy counts (both flushed in batches).
        An experiment arm's list counts under its ``label`` (``{experiment}.{arm}``), which its
        impressions carry as their strategy: the stream keeps the arm's feedback counters under it."""
        self.metrics.strategy.labels(entry.strategy).inc()
        self._book(request_id, entry.user_id, label or entry.strategy, entry.items, label is not None,
                   entry.propensities)

    def _book(self, request_id: str, user: str, arm: str, items: tuple[str, ...], in_experiment: bool,
              propensities: tuple[float, ...] | None = None) -> None:
        key = (user, arm)
        self._served_counts[key] = self._served_counts.get(key, 0) + 1
        if in_experiment:
            self._arm_users.setdefault(arm, set()).add(user)
        if self.settings.emit_impressions and items:
            chance = ARM_CHANCE.get()
            if chance is not None:
                ARM_CHANCE.set(None)  # one request's: never the next one's, whatever task runs it
            self.broker.queue_impressions(request_id, user, arm, items, propensities, chance, in_experiment)

    async def interleave(self, q: HomeQuery, pick: Pick, request_id: str) -> bytes:
        """An interleaving experiment's list: both arms' lists (each computed and cached as any
        arm's) merged by team draft (``ranking.interleaving``, seeded by the request id), each item
        marked with the arm that drafted it. Its impressions go out per team under the team's
        label, so a click is credited to the arm that placed the item."""
        import orjson

        from ranking.interleaving import TEAM_A, team_draft

        exp = pick.experiment
        arm_a, arm_b = exp.arms
        got = await asyncio.gather(*(self.home(self.arm_query(replace(q), Pick(exp, arm))) for arm in (arm_a, arm_b)))
        docs = [orjson.loads(b"{" + s.entry.tail_cached) for s in got]
        by_id = [{i["item_id"]: i for i in d["items"]} for d in docs]
        merged = team_draft([i["item_id"] for i in docs[0]["items"]], [i["item_id"] for i in docs[1]["items"]],
                            q.k, key=request_id)
        teams: dict[str, list[str]] = {arm_a.name: [], arm_b.name: []}
        items = []
        for item, team in merged:
            side = 0 if team == TEAM_A else 1
            arm = (arm_a, arm_b)[side].name
            teams[arm].append(item)
            items.append({**by_id[side][item], "team": arm})
        self.metrics.strategy.labels("interleaving").inc()
        for arm, its in teams.items():
            self._book(f"{request_id}.{arm}", q.user_id, exp.label(arm), tuple(its), True)
        return orjson.dumps({
            "request_id": request_id, "user_id": q.user_id, "strategy": "interleaving",
            "model_version": docs[0].get("model_version"), "cached": all(s.cached for s in got),
            "degraded": any(d.get("degraded") for d in docs), "experiment": exp.name, "arm": "interleaved",
            "items": items})

    async def flush_served_counts(self) -> None:
        """``{strategy}:lists`` counters of the stats hashes, one pipeline for everything served since."""
        counts, self._served_counts = self._served_counts, {}
        arm_users, self._arm_users = self._arm_users, {}
        if not counts:
            return
        day = datetime.now(timezone.utc).date().isoformat()
        per_strategy: dict[str, int] = {}
        for (_, strategy), n in counts.items():
            per_strategy[strategy] = per_strategy.get(strategy, 0) + n

        def build(pipe) -> None:
            for strategy, n in per_strategy.items():
                pipe.hincrby(self.keys.stats_day(day), f"{strategy}:lists", n)
            ttl = self.settings.user_state_ttl_s
            for (user, strategy), n in counts.items():
                pipe.hincrby(self.keys.user_stats(user), f"{day}:{strategy}:lists", n)
                if ttl:  # a user who only ever gets lists must not keep this hash for ever
                    pipe.expire(self.keys.user_stats(user), ttl)
            for label, users in arm_users.items():  # an arm's exposure in users: a count, and who (for CUPED)
                for key, add in ((self.keys.experiment_users(label), pipe.pfadd),
                                 (self.keys.experiment_members(label), pipe.sadd)):
                    add(key, *users)
                    pipe.expire(key, EXPOSURE_TTL_S)

        try:
            await self.store.pipeline(build)
        except StoreUnavailable:
            pass  # counts of a Redis outage are lost; serving is not

    async def run_served_counts(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
            await self.flush_served_counts()

    def bandit_arms(self) -> list[str]:
        """Configured arms this process can serve: built-ins always, models when the run has them."""
        serving = self.models.current
        arms = [a for a in self.settings.bandit_arms
                if a in ("popularity", "hybrid") or (serving is not None and a in serving.models)]
        return arms or ["popularity"]
