"""The one settings class of streamrec.

Every value can be set from the environment with the ``STREAMREC_`` prefix
(``STREAMREC_REDIS_URL``, ``STREAMREC_EVENT_STRENGTHS='{"view": 1}'``...). Nothing else
in the code base reads the environment: parts receive a ``Settings`` (or plain values
taken from one) from their caller.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.keys import KeyPrefix
from schemas.security import ApiKeySpec

DEFAULT_STRENGTHS: dict[str, float] = {
    "impression": 0.0,
    "view": 1.0,
    "click": 2.0,
    "download": 3.0,
    "rate": 4.0,
    "enroll": 4.0,
    "purchase": 4.0,
    "like": 4.0,
    "dislike": -2.0,
    "dwell": 0.0,  # implicit feedback: counted in the online metrics, not in popularity
    "convert": 4.0,
}

DEFAULT_REWARDS: dict[str, float] = {"view": 0.2, "click": 0.5, "download": 0.8, "enroll": 1.0, "purchase": 1.0, "convert": 1.0}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore")

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Path(".streamrec")
    artifact_dir: Path = Path("artifacts")
    kafka_bootstrap: str | None = None  # None: `streamrec up` starts the embedded broker
    redis_url: str | None = None  # None: `streamrec up` starts an embedded redis-server
    topic_prefix: str = ""
    redis_prefix: str = "sr:"
    # Redis Cluster (docs/redis-cluster.md): REDIS_URL names any one node; keys then carry hash tags
    # (``Settings.redis_prefix`` becomes a ``KeyPrefix`` that says so) and the worker applies a batch per slot group
    redis_cluster: bool = False
    topic_partitions: int = 4
    # Kafka TLS / SASL for every client (schemas/kafka_security.py); PLAINTEXT: none
    kafka_security_protocol: str = Field("PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    kafka_sasl_mechanism: str = Field("PLAIN", pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None  # never printed: `streamrec config` shows '**********'
    kafka_ssl_cafile: str | None = None
    kafka_ssl_certfile: str | None = None
    kafka_ssl_keyfile: str | None = None
    topic_replication: int = Field(1, ge=1)  # replicas of each topic streamrec creates (3 on a production cluster)

    # --- stream processing -------------------------------------------------------------
    worker_id: str = "streamrec-worker"  # Faust app id == consumer group
    worker_web_port: int = 0  # 0: pick a free loopback port
    batch_size: int = 5000  # largest interactions batch (a backlog is caught up in batches this big)
    batch_within_s: float = 0.02  # longest a small batch waits for more events, only when the worker is near saturation
    batch_budget_s: float = 0.025  # Redis script time one batch aims at while the worker keeps up (sizes the batch)
    # ... and while it catches up: well under redis_timeout_s, or the API's reads time out behind one script
    batch_catchup_budget_s: float = Field(0.15, gt=0)
    stream_workers: int = 1  # workers `streamrec up` runs (one group; they split the interactions partitions)
    interactions_fetch_max_wait_ms: int = 10  # the broker may hold a fetch this long: it delays events of a light load
    rebalance_timeout_s: float = 3.0
    event_strengths: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_STRENGTHS))
    # exactly-once on replays: a per-partition offset watermark written with the effects (docs/streams.md);
    # a client that sends one event twice is caught by the event_id window (0: off)
    event_id_window_s: int = Field(3600, ge=0)
    # legacy per-event markers (sr:dedupe:{event_id}) of workers before the watermark: read on a partition's first
    # batch only (upgrade path), never written any more; they expire on their own TTL
    dedupe_ttl_s: int = 7 * 24 * 3600
    # a user's per-user keys expire this long after their last event (0: never, the default). Opt-in: with it
    # on, a stream of mostly new users (4 EXPIREs each) put the freshness check's p99 at 79-114 ms instead of
    # 36-42 ms (docs/streams.md, "Inactive users expire")
    user_state_ttl_s: int = Field(0, ge=0)
    forget_guard_s: int = Field(24 * 3600, ge=60)  # after a forget, events of that user dated before it are dropped this long
    batch_max_attempts: int = Field(3, ge=1)  # a batch failing for a non-Redis reason is tried this often, then isolated / DLQ
    batch_retry_delay_s: float = Field(1.0, ge=0)  # pause before a failed batch is fetched again
    # test-only fault hook: a record whose raw bytes contain this marker makes batch preparation raise
    # (tests/integration/test_streams_retries.py); never set it in production
    fault_poison_marker: str | None = None
    recent_max: int = 50
    trend_half_life_s: float = 6 * 3600.0
    session_gap_s: float = 30 * 60.0
    pairs_top_n: int = 100
    invalidating_types: list[str] = Field(
        # dwell changes nothing a list shows (no popularity, seen set or session): no invalidation
        default_factory=lambda: [t for t in DEFAULT_STRENGTHS if t not in ("impression", "dwell")]
    )
    bandit_reward_window_s: float = 3600.0
    bandit_rewards: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_REWARDS))
    # aspect names a 'rate' event may mark 1-5 in context.aspects (docs/feedback.md); others are invalid
    feedback_aspects: list[str] = Field(default_factory=lambda: ["relevance", "quality", "usefulness", "difficulty"])
    feedback_comments_max: int = Field(1000, ge=1)  # the latest comments kept (GET /api/v1/feedback/comments)
    bandit_policy: str = "epsilon_greedy"  # epsilon_greedy | ucb | thompson
    bandit_epsilon: float = 0.1
    # exploration for off-policy estimates (docs/off-policy.md): each slot of a home list is, with this
    # probability, swapped for a random candidate of the pool (0 = off); or a fixed number of slots
    explore_epsilon: float = Field(0.0, ge=0, le=1)
    explore_slots: int = Field(0, ge=0)
    explore_pool: int = Field(50, ge=1)  # candidates beyond the list that an explored slot may show
    bandit_arms: list[str] = Field(default_factory=lambda: ["popularity", "hybrid", "ncf", "lightfm", "two_tower"])
    worker_metrics_port: int | None = 9108  # Prometheus metrics of the worker; None: off; 0: any free port
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container scraped from outside
    worker_fetch_max_wait_ms: int = 50  # longest a consumer fetch may wait for records (Faust: 1500)
    config_refresh_s: float = 2.0  # how often the agents re-read the run-time overrides in Keys.config
    basket_ttl_s: int = 24 * 3600  # how long an open basket's items are remembered for basket pairs
    basket_max_items: int = 50  # a basket larger than this adds no more pairs (bounds the O(n^2) work)
    trend_renorm_half_lives: float = 32.0  # re-anchor pop:trend once this many half-lives past its epoch

    # --- serving -----------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    admin_key: str | None = None
    # `streamrec api` refuses to start without admin_key unless this is set (`streamrec up` makes a key)
    allow_insecure: bool = False
    # producer keys (schemas/security.py): JSON list of {name, sha256, scopes, writes_per_s, burst};
    # empty: the public routes need no key
    api_keys: list[ApiKeySpec] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)  # origins allowed to call the API from a browser
    cache_ttl_s: int = 3600
    # single flight across API replicas (inference/cache.py ReplicaFlight): on a Redis-cache miss one process
    # computes a list under a Redis lock (expiring after lock_s), the others wait up to wait_s for it, then compute
    single_flight_replicas: bool = True
    single_flight_lock_s: float = Field(5.0, gt=0)
    single_flight_wait_s: float = Field(0.5, ge=0)
    default_strategy: str = "policy"  # the serving run's policy; popularity while no run serves
    max_k: int = 100
    redis_timeout_s: float = 0.3
    hybrid_weights: dict[str, float] = Field(
        default_factory=lambda: {"ease": 0.35, "ncf": 0.2, "lightfm": 0.2, "two_tower": 0.15, "popularity": 0.1}
    )
    mmr_lambda: float = 0.7
    category_cap: int | None = None
    emit_impressions: bool = True
    basket_profiles_file: Path | None = None  # None: the profiles shipped with streamrec
    basket_profile: str = "tuned"  # the basket policy tuned on the serving run's baskets; else precision
    broker_timeout_s: float = 2.0  # API: producing events / health metadata request
    impression_max_lists_per_s: int = 100  # API: served lists turned into impression events per second; more are shed
    local_cache_max: int = 100_000  # API: bodies kept in-process in front of the Redis cache
    candidates_n: int = 200  # API: ANN candidates per request before ranking
    snapshot_refresh_s: float = 5.0  # API: popularity snapshot used when Redis is unreachable

    # --- training ----------------------------------------------------------------------
    promote_metric: str = "ndcg@10"
    promote_min_delta: float = 0.0
    # promotion compares both runs on one shared holdout (trainer/holdout.py): the events since the
    # serving run's data ended ("since-champion"), or the newest promote_holdout_fraction of events ("tail");
    # since-champion with fewer than promote_holdout_min_events falls back to the tail
    promote_holdout: str = Field("since-champion", pattern="^(since-champion|tail)$")
    promote_holdout_fraction: float = Field(0.1, gt=0.0, le=0.5)
    promote_holdout_min_events: int = Field(50, ge=1)
    retrain_interval_s: float = 24 * 3600.0
    retrain_min_new_events: int = 10_000
    retrain_min_new_feedback: int = 1_000  # explicit feedbacks (rate, like, dislike) that trigger a retrain
    # warm-start updates between full retrains (`streamrec train --incremental`, trainer/incremental.py): the
    # scheduler updates the serving run every update_interval_s when events came in, or as soon as
    # update_min_new_events arrived; 0 turns that trigger off (both 0: no updates, full retrains only)
    # `default`: the budgeted models and grids of trainer.tuning (DEFAULT_PARAMS, GRIDS); `fast`: cheaper still
    # (FAST_PARAMS: smaller Mult-VAE, warm refits); `full`: the slower set before the budget (FULL_PARAMS)
    train_profile: str = Field("default", pattern="^(default|fast|full)$")
    update_interval_s: float = Field(600.0, ge=0)
    update_min_new_events: int = Field(1_000, ge=0)
    keep_runs: int = 5
    retrain_max_delay_s: float = 600.0  # a due retrain waits while events are still arriving, at most this long
    scheduler_nice: int = 10  # the scheduler process's niceness: training yields the CPU to the worker and the API
    # Linux SCHED_IDLE for the scheduler (and the threads it starts): it runs only on CPU time the worker and the API
    # leave idle, and a waking request thread preempts it at once (a niced process still holds a core for a slice)
    scheduler_idle_cpu: bool = True
    # what `streamrec train` and the scheduler fit and blend by default: the mix that served NDCG@10 >= 0.49 on
    # MovieLens-100K (a user-based VAE, an item-based EASE and RP3beta, the feature-aware two-tower and LightFM);
    # about a minute on the demo, ~10 min on ML-100K on 2 cores. Add "ncf" or "content" (needs a catalog).
    retrain_models: list[str] = Field(
        default_factory=lambda: ["ease", "rp3beta", "multvae", "two_tower", "lightfm"])
    # --- monitoring and alerts (trainer/alerts/) ----------------------------------------
    monitor_interval_s: float = 300.0  # how often the scheduler's monitor compares the windows
    alert_recent_days: int = Field(1, ge=1)  # the window a metric is judged on (today included)
    alert_baseline_days: int = Field(7, ge=1)  # the days before it, the baseline
    alert_drop: float = Field(0.05, gt=0, lt=1)  # relative drop that alerts, unless alert_drops names the metric
    alert_drops: dict[str, float] = Field(default_factory=dict)  # per metric: {"ctr": 0.1}
    alert_alpha: float = Field(0.05, gt=0, lt=1)  # the drop must also be significant at this level
    alert_min_samples: int = Field(1000, ge=1)  # fewer impressions (or ratings) in a window: no verdict
    alert_min_rating_samples: int = Field(100, ge=2)  # fewer ratings in a window: no verdict on the rating mean
    alert_volume_drop: float = Field(0.5, gt=0, lt=1)  # events below (1 - this) of the baseline at this hour
    alert_dlq_rate: float = Field(0.05, gt=0, le=1)
    alert_max_records_behind: int = Field(10_000, ge=1)
    alert_no_promotion_days: float = Field(7.0, gt=0)
    alert_webhook_url: str | None = None  # each raised or resolved alert is POSTed here as JSON
    alert_keep_resolved_s: float = 7 * 24 * 3600.0
    # experiments and canaries (docs/experiments.md)
    experiment_alpha: float = Field(0.05, gt=0, lt=1)  # the always-valid tests' level in experiment reports
    experiment_refresh_s: float = Field(2.0, gt=0)  # API: re-read the experiments even without a pub/sub message
    experiments_file: Path | None = None  # JSON list of POST /admin/experiments bodies the API creates at start when absent
    canary_steps: list[float] = Field(default_factory=lambda: [0.1, 0.25, 0.5])  # challenger shares, widened in turn
    canary_margin: float = Field(0.05, gt=0, lt=1)  # guardrail: fail when CTR or positive rate is surely this much below control
    canary_min_impressions: int = Field(1000, ge=1)  # per arm, before a canary is widened or promoted
    tune_budget_s: float | None = None  # seconds the hyperparameter / blend / λ search may take; None: no limit
    val_ratio: float = 0.25  # share of each user's pairs held out to choose params and the policy (--val-ratio)
    snapshot_dir: Path | None = None  # None: <data_dir>/snapshot (replayed interactions, Parquet)
    replay_idle_s: float = 2.0  # a replay stops after this long without new records
    min_user_interactions: int = 1  # users with fewer events are dropped before training
    min_item_interactions: int = 1
    max_items: int | None = None  # keep only the most popular N items
    include_cold_items: bool = False  # catalog items without events still get an index
    train_threads: int = 1  # torch / BLAS threads for training; more than the cores left free makes training slower
    # cores a `streamrec train` fits models on, one process and one thread each (trainer/fit_pool.py); 0: every core
    # the process may use. The scheduler's retrains use scheduler_train_workers (1: one process, beside the stack)
    train_workers: int = Field(0, ge=0)
    scheduler_train_workers: int = Field(1, ge=0)
    # experiment tracking (trainer/tracking.py): off unless a URI is set, e.g. sqlite:///mlflow.db or http://mlflow:5000
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "streamrec"

    # --- search and reranking (docs/search-reranking.md) ------------------------------------
    # models load from local paths only (the packaged MiniLM, a promoted reranker): never from a hub
    hf_offline: bool = True
    search_candidates: int = Field(100, ge=1)  # first-stage candidates from each retriever (FAISS, BM25)
    rrf_k: int = Field(60, ge=1)  # reciprocal rank fusion constant: 1 / (rrf_k + rank)
    search_index_on_train: bool = True  # `streamrec train` (re)builds the search index when the catalogue's texts changed
    rerank_top_n: int = Field(20, ge=1, le=500)  # how many first-stage results the cross-encoder rescores
    # tokens of (query, item text) the cross-encoder is trained on and reads; a run serves at the one it was trained
    # and exported at (its model/onnx/export.json). 64: the Cranfield fine-tunes learn more per CPU second than at
    # 128 or 256, and 20 pairs cost a quarter of 256's (docs/search-reranking.md)
    rerank_max_length: int = Field(64, ge=16, le=512)
    # the reranker's backend: auto = the run's int8 ONNX export when it has one, else torch fp32; onnx / torch force one
    rerank_backend: str = Field("auto", pattern="^(auto|onnx|torch)$")
    rerank_threads: int = Field(2, ge=1)  # intra-op threads of the ONNX reranker session (the API's scoring thread)
    # the reranker's weight in its rank fusion with the first stage over the top N (ranking.rerank.apply_reranker):
    # 1 = the reranker's order alone, 0 = the first stage's. None: the serving run's own weight, which
    # train-reranker picks on its validation lists (0.5 for a run without one); a number fixes it for both
    rerank_weight: float | None = Field(None, ge=0.0, le=1.0)
    # train-reranker from the packaged base keeps its first N transformer layers (0: all 6); a pass costs about
    # N / 6 of the whole model's (trainer/reranker/base.py, docs/search-reranking.md)
    rerank_base_layers: int = Field(0, ge=0, le=24)
    # train-reranker from the packaged base first learns the task on the catalogue: each item text shaped
    # "title. body" gives its title as a query its body answers, BM25's near misses as dislikes; at most this
    # many items (0: off), for this many epochs (trainer/reranker/catalogue.py)
    rerank_pretrain_items: int = Field(2000, ge=0)
    rerank_pretrain_epochs: float = Field(1.0, gt=0.0, le=20.0)
    reranker_min_feedback: int = Field(50, ge=1)  # train-reranker refuses below this many like/dislike pairs
    reranker_min_feedback_small: int = Field(10, ge=1)  # ... or below this with --allow-small
    reranker_min_delta: float = 0.0  # a new reranker is promoted when it beats the serving one by more
    # with no reranker promoted yet: rerank with the packaged MiniLM and its untrained head (its order is noise:
    # off by default, the first stage serves until `streamrec train-reranker` promotes one)
    rerank_untuned: bool = False

    @model_validator(mode="after")
    def _key_layout(self) -> "Settings":
        # every Keys(settings.redis_prefix) then builds the cluster layout, with no flag to pass around
        if self.redis_cluster and not getattr(self.redis_prefix, "hash_tags", False):
            self.redis_prefix = KeyPrefix(self.redis_prefix, hash_tags=True)
        return self

    def snapshot_path(self) -> Path:
        return self.snapshot_dir or self.data_dir / "snapshot"

    def topic(self, name: str) -> str:
        """The full name of a topic, with the configured prefix."""
        return f"{self.topic_prefix}{name}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
