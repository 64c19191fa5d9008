"""Service settings: one class, read from ``NBA_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from decision.catalogue import DEFAULT_CATALOGUE_PATH
from features.schema import DEFAULT_SCHEMA_PATH


class Settings(BaseSettings):
    """Everything an operator may set. Defaults give the embedded demo set-up."""

    model_config = SettingsConfigDict(env_prefix="NBA_", env_file=".env", extra="ignore", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Address the gRPC server binds to (0.0.0.0 to accept other machines)."""

    port: int = Field(50051, ge=0, le=65535)
    """gRPC port; 0 picks a free one (tests)."""

    workers: int = Field(1, ge=1, le=64)
    """Server processes sharing the gRPC and HTTP ports (SO_REUSEPORT), each deciding on its own core. 1 serves
    in this process; more start a supervisor that runs them, restarts any that dies and stops them together."""

    threads: int = Field(4, ge=1, le=64)
    """gRPC handler threads per process. More threads make p99 worse on 2 cores (the GIL and the cores are shared)."""

    http_enabled: bool = True
    """Serve the HTTP/JSON API and the teller screen beside gRPC, in the same process."""

    http_port: int = Field(8080, ge=0, le=65535)
    """HTTP port of the JSON API (/v1/...) and the teller screen (/teller), on the same host; 0 picks a free one."""

    http_deadline_ms: float = Field(1000.0, gt=0)
    """Deadline of an HTTP decision (gRPC callers set their own): Redis calls are bounded by what is left of it."""

    http_max_connections: int = Field(1000, ge=1)
    """Most HTTP connections open at once in a server process; one more is answered 503 and closed at once, so slow
    or idle HTTP clients cannot take the file descriptors gRPC and Redis need. The process's open-files limit is
    raised to its hard limit at start; a cap over half of what that leaves beyond 256 is lowered, with a warning."""

    http_read_timeout_s: float = Field(10.0, gt=0)
    """A request's headers and body must have arrived this many seconds after its first byte (or after the
    connection opened), else it is answered 408 and its connection closed: a client that sends part of a request,
    then nothing, does not hold its connection for longer."""

    redis_url: str = ""
    """Redis URL of the feature store and decision log. Empty starts an embedded Redis server under data_dir."""

    redis_timeout_ms: float = Field(25.0, gt=0)
    """Socket timeout of every Redis call (shorter when the caller's deadline is nearer). A slower Redis makes the
    decision degrade instead of wait."""

    deadline_margin_ms: float = Field(5.0, ge=0)
    """Of a caller's deadline, the time each Redis call leaves for the rest of the answer: a call gets the Redis
    timeout or, when the deadline is nearer, what is left of it less this margin; less than the shortest call worth
    trying (features.online_store.SHORTEST_CALL_S) left skips it."""

    redis_retry_after_ms: float = Field(1000.0, ge=0)
    """After a Redis failure, decide without Redis for this long before trying it again (no per-call waits)."""

    redis_fsync: Literal["everysec", "always"] = "everysec"
    """The embedded Redis and the spool files: "always" puts every write on disk before it is acknowledged (no
    acknowledged outcome lost even on power loss, at the cost of a disk flush per write); "everysec" may lose the last
    second on power loss, never on a crash of the service or of Redis itself."""

    redis_maxmemory_mb: float = Field(1024.0, ge=0)
    """The embedded Redis's memory limit (0: none). At the limit it refuses writes and evicts nothing (noeviction):
    decisions degrade and are spooled, outcomes answer UNAVAILABLE, health is NOT_SERVING. Your own Redis: set a
    maxmemory and maxmemory-policy noeviction yourself (the service warns at start when it can see otherwise)."""

    spool_max_mb: float = Field(256.0, gt=0)
    """Largest size of a server process's spool file (decisions kept on local disk while Redis is down, ~5 KB
    each). A decision that does not fit is not logged: it is counted and logged as an error."""

    data_dir: Path = Path(".nba-data")
    """Where the embedded Redis keeps its data (append-only file) and the demo model lives."""

    model_dir: Path = Path(".nba-data/models/demo")
    """Directory with model.txt and model.json of the model that serves while nothing is published."""

    registry_dir: Path | None = None
    """The model registry (nba train writes versions there, nba publish makes one live); its live.json is
    followed by the running server. Default: registry under data_dir."""

    exploration_share: float = Field(0.02, ge=0.0, le=0.5)
    """Share of decisions whose first action is drawn at random among the eligible non-mandatory ones, so the
    log stays usable for off-policy evaluation; every decision logs the probability of what it chose."""

    schema_path: Path = DEFAULT_SCHEMA_PATH
    """The feature schema file."""

    catalogue_path: Path = DEFAULT_CATALOGUE_PATH
    """The action catalogue file."""

    policy_dir: Path = Path(__file__).resolve().parent.parent / "rules" / "policies"
    """Directory of rule files."""

    messages_path: Path = Path(__file__).resolve().parent.parent / "rules" / "messages.yaml"
    """Greetings, reason texts and follow-up letter templates per language."""

    rules_reload_s: float = Field(1.0, ge=0)
    """How often the running service looks for changed rule files, catalogue or messages (seconds; 0 = never).
    A change that compiles is live for the next decision; a bad one is refused and logged, the old rules serve."""

    rules_settle_s: float = Field(1.0, ge=0)
    """A change of the rule files, catalogue or messages is read only once no file changed for this long (seconds),
    so a file caught while it is still being written or copied never goes live half-written."""

    feature_max_age_s: float = Field(7 * 86_400.0, gt=0)
    """A profile written longer ago than this is stale: the decision is flagged degraded (features_stale)."""

    decision_ttl_s: int = Field(86_400, gt=0)
    """How long a decision is kept in Redis for its outcomes and request_id retries (seconds); an outcome that
    comes later is refused (NOT_FOUND). The log files keep every decision; Redis holds about decisions per second x
    this x 2 KB (a decision's packed record, benchmarks/RESULTS.md): a day at 10 decisions a second is ~1.7 GB."""

    log_max_entries: int = Field(100_000, ge=1_000)
    """Most entries each log stream (decisions, outcomes, follow-ups) keeps in Redis. The log shipper moves entries
    to the log files and trims them; this cap only bites when it falls behind, and then the oldest entries not
    shipped yet are lost (the shipper logs it). Keep it x the bytes of an entry (benchmarks/RESULTS.md) well under
    Redis's maxmemory: Redis full makes every decision degrade."""

    max_context_entries: int = Field(32, ge=1)
    """Largest accepted request context."""

    explain_top_features: int = Field(3, ge=0, le=20)
    """How many model feature contributions an explanation names."""

    log_shipper: bool = True
    """Run the log shipper beside ``nba serve`` and ``nba demo``: a process of its own that moves the decisions,
    outcomes and follow-ups streams from Redis to Parquet files under log_dir and trims what it shipped (false:
    run ``nba ship-log`` yourself, as a sidecar or from cron, else the streams grow until the stream cap)."""

    log_dir: str = ""
    """Where the shipped log lives: a local directory or a filesystem URL pyarrow understands (``s3://bucket/path``,
    ``gs://bucket/path``). Default: log under data_dir. Hosts that share a Redis must share this directory (a
    bucket): one shipper ships at a time (a lease in Redis), and its files are the log of every host."""

    log_batch_entries: int = Field(10_000, ge=1)
    """Most stream entries in one shipped file; a batch this big ships at once."""

    log_ship_every_s: float = Field(60.0, gt=0)
    """A smaller batch ships once its oldest entry is this old (seconds): at most this long in Redis alone."""

    log_lag_warn_s: float = Field(600.0, gt=0)
    """The shipper logs a warning while the oldest entry not shipped yet is older than this (seconds)."""

    log_lease_s: float = Field(30.0, ge=1)
    """How long the shipping lease lasts unless renewed (seconds): another shipper takes over this long after the
    one shipping died. It must exceed the time to write one batch."""

    @property
    def log_root(self) -> str:
        return self.log_dir or str(Path(self.data_dir) / "log")

    @property
    def registry_root(self) -> Path:
        return self.registry_dir if self.registry_dir is not None else Path(self.data_dir) / "registry"
