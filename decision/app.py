"""Wiring, in one place: settings -> Redis (embedded or configured) -> model -> rules -> flow -> gRPC server
and HTTP/JSON server (the teller screen among its pages), both over the same flow."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

from decision.api.grpc_server import DecisionApi, DecisionServicer, GrpcServer
from decision.api.http_api import HttpServer, create_app
from decision.api.http_limits import connection_budget, raise_open_files_limit
from decision.api.teller import teller_routes
from decision.catalogue import Catalogue
from decision.decision_log import RedisDecisionLog, spool_path
from decision.deployment import ModelSource
from decision.flow import DecisionFlow, FlowLimits
from decision.health import StoreHealth, memory_policy_problems
from decision.settings import Settings
from decision.strategy import RuleFiles, StrategyWatcher, strategy_with
from features.redis_client import CircuitBreaker, connect
from features.redis_keys import KeyLayout
from features.redis_server import RedisServer
from features.redis_store import RedisOnlineStore, RedisStoreConfig
from features.schema import FeatureSchema

log = logging.getLogger(__name__)


def store_config(settings: Settings, redis_url: str) -> RedisStoreConfig:
    return RedisStoreConfig(
        url=redis_url, timeout_ms=settings.redis_timeout_ms, retry_after_ms=settings.redis_retry_after_ms
    )


def rule_files(settings: Settings) -> RuleFiles:
    return RuleFiles(settings.policy_dir, settings.catalogue_path, settings.messages_path)


def definitions(settings: Settings) -> tuple[FeatureSchema, Catalogue]:
    """The feature schema and the action catalogue the settings name, each read once by the caller that wires a
    flow (start-up, a benchmark) and handed to every part that needs them."""
    return FeatureSchema.load(settings.schema_path), Catalogue.load(settings.catalogue_path)


def model_source(settings: Settings, schema: FeatureSchema, catalogue: Catalogue) -> ModelSource:
    """The published models (the registry's live.json), or NBA_MODEL_DIR while nothing is published; each checked
    on the catalogue's actions."""
    return ModelSource(settings.registry_root, settings.model_dir, schema, catalogue.action_ids, settings.schema_path)


def build_flow(
    settings: Settings,
    client: redis.Redis,
    config: RedisStoreConfig,
    schema: FeatureSchema,
    catalogue: Catalogue,
    models: ModelSource | None = None,
    worker: int | None = None,
) -> DecisionFlow:
    """The decision flow over a Redis client; every part built from settings and the schema and catalogue the
    caller read, nothing global. ``models``: where the models come from (model_source's by default). ``worker``
    is the index of this server process when several share the port (its spool file is its own)."""
    models = models or model_source(settings, schema, catalogue)
    strategy = strategy_with(catalogue, rule_files(settings), schema, models.load_serving())
    breaker = CircuitBreaker(config.retry_after_ms / 1000.0)
    return DecisionFlow(
        store=RedisOnlineStore(client, config, breaker),
        schema=schema,
        strategy=strategy,
        decision_log=decision_log(settings, client, config, breaker, worker),
        limits=FlowLimits(
            feature_max_age_s=settings.feature_max_age_s,
            explain_top_features=settings.explain_top_features,
            exploration_share=settings.exploration_share,
            deadline_margin_s=settings.deadline_margin_ms / 1000.0,
        ),
    )


def decision_log(
    settings: Settings,
    client: redis.Redis,
    config: RedisStoreConfig,
    breaker: CircuitBreaker | None = None,
    worker: int | None = None,
) -> RedisDecisionLog:
    """The decision log in Redis, spooling to this server process's own file while Redis is down."""
    return RedisDecisionLog(
        client,
        ttl_s=settings.decision_ttl_s,
        max_entries=settings.log_max_entries,
        key_prefix=config.key_prefix,
        spool_path=spool_path(settings.data_dir, worker),
        breaker=breaker,
        spool_fsync=settings.redis_fsync,
        spool_max_bytes=int(settings.spool_max_mb * (1 << 20)),
    )


def replay_earlier_spools(settings: Settings, log_to: RedisDecisionLog) -> None:
    """Decisions an earlier run spooled while Redis was down (one file per process it had) go to the log now.
    If Redis does not answer, they stay in their files for the next start."""
    try:
        moved = log_to.replay_spool_files(Path(settings.data_dir))
    except (redis.RedisError, OSError) as exc:
        log.warning("spooled decisions of an earlier run not replayed yet (Redis: %s)", exc)
        return
    if moved:
        log.info("replayed %d decisions spooled by an earlier run", moved)


def check_now(health: StoreHealth | None) -> None:
    if health is not None:
        health.check()


@dataclass
class Service:
    """A running service: its Redis (when embedded), its client, its flow, its gRPC and HTTP servers."""

    settings: Settings
    redis_url: str
    client: redis.Redis
    flow: DecisionFlow
    grpc: GrpcServer
    rules_watcher: StrategyWatcher
    embedded_redis: RedisServer | None = None
    http: HttpServer | None = None
    store_health: StoreHealth | None = None
    _serving_stopped: bool = field(default=False, init=False, repr=False)

    @classmethod
    def start(cls, settings: Settings, worker: int | None = None) -> Service:
        """Serve in this process. ``worker`` is set in the processes ``decision.workers`` starts: they share the
        ports (SO_REUSEPORT) and the supervisor's Redis, and replay nothing but their own spool."""
        # Often 1024 by default: HTTP clients that hold their connections would take the descriptors gRPC needs.
        open_files = raise_open_files_limit()
        embedded = None
        store_health: StoreHealth | None = None
        redis_url = settings.redis_url
        if not redis_url:
            # Restarted by its watchdog when it dies; its death and return are checked at once, not at the next ping.
            embedded = RedisServer(
                Path(settings.data_dir) / "redis",
                fsync=settings.redis_fsync,
                restart=True,
                on_change=lambda up: check_now(store_health),
                maxmemory_mb=settings.redis_maxmemory_mb,
            ).start()
            redis_url = embedded.url
            log.info("embedded Redis started at %s", redis_url)
        try:
            config = store_config(settings, redis_url)
            client = connect(config)
            for problem in memory_policy_problems(client):
                log.warning("Redis: %s (see NBA_REDIS_MAXMEMORY_MB in decision/settings.py)", problem)
            schema, catalogue = definitions(settings)  # read once: the models are checked on its actions too
            models = model_source(settings, schema, catalogue)
            flow = build_flow(settings, client, config, schema, catalogue, models, worker)
            if worker is None and isinstance(flow.decision_log, RedisDecisionLog):
                replay_earlier_spools(settings, flow.decision_log)
            api = DecisionApi(flow, settings.max_context_entries, flow.catalogue.default_max_actions)
            shared = worker is not None
            server = GrpcServer(DecisionServicer(api), settings.host, settings.port, settings.threads, shared)
            http = None
            if settings.http_enabled:
                pages = teller_routes(flow.schema, lambda: flow.narrator)
                http = HttpServer(
                    create_app(api, settings.http_deadline_ms / 1000.0, pages),
                    settings.host,
                    settings.http_port,
                    connection_budget(settings.http_max_connections, open_files),
                    settings.http_read_timeout_s,
                    reuse_port=shared,
                )
            store_health = StoreHealth(
                redis_url,
                lambda reachable: server.set_degraded(not reachable),
                key=KeyLayout(config.key_prefix).health(socket.gethostname(), os.getpid()),
            )
            server.start()
            store_health.start()
            if http is not None:
                try:
                    http.start()
                except BaseException:
                    store_health.stop()
                    server.stop(0)
                    raise
        except BaseException:
            if embedded is not None:
                embedded.stop()
            raise
        log.info("serving nba.v1.DecisionService on %s (rules %s)", server.target, flow.rules_version)
        if http is not None:
            log.info("serving the HTTP/JSON API and the teller screen on %s", http.url)
        watcher = StrategyWatcher(
            rule_files(settings),
            flow.schema,
            lambda: flow.strategy,
            flow.install,
            settings.rules_reload_s,
            models=models,
            settle_s=settings.rules_settle_s,
        ).start()
        return cls(settings, redis_url, client, flow, server, watcher, embedded, http=http, store_health=store_health)

    def flush_log(self) -> None:
        """Wait until every decision answered so far is stored in the decision log: what a reader of the log (an
        export, a test that checks it) waits for."""
        self.flow.decision_log.flush()

    def stop_serving(self) -> None:
        """Take no more calls, finish those under way and write the whole log to Redis; Redis stays up (for the
        log shipper's last pass). Idempotent."""
        if self._serving_stopped:
            return
        self._serving_stopped = True
        self.rules_watcher.stop()
        if self.store_health is not None:
            self.store_health.stop()
        if self.http is not None:
            self.http.stop()
        self.grpc.stop()
        self.flow.decision_log.close()

    def stop(self) -> None:
        self.stop_serving()
        self.client.close()
        if self.embedded_redis is not None:
            self.embedded_redis.stop()

    def __enter__(self) -> Service:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
