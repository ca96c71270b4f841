"""One typed settings object, built once at the entry point and passed down.

Precedence, lowest to highest (the order of ``settings_customise_sources``):

1. defaults in this module;
2. the YAML file (``config/data_pipeline_config.yaml`` or ``--config``/``MARKETPIPE_CONFIG``),
   whose keys may sit under the seed's ``data_pipeline:`` root key;
3. a ``.env`` file (``MARKETPIPE_...`` lines, the usual home of secrets);
4. the process environment (``MARKETPIPE_...``, nested keys joined by ``__``, e.g.
   ``MARKETPIPE_DATABASE__PORT=5544``);
5. CLI flags (``--set collection.batch_size=100`` and the named flags of ``marketpipe``).

Secrets are ``SecretStr``: they print as ``**********`` and are redacted from logs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, DotEnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from core.errors import ConfigurationError

DEFAULT_CONFIG_PATH = Path("config/data_pipeline_config.yaml")
ENV_PREFIX = "MARKETPIPE_"
ENV_NESTED_DELIMITER = "__"

Port = int  # validated by _check_port below; kept an int for arithmetic on port bases


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("a TCP port must be between 1 and 65535")
    return value


class CollectionSettings(_Section):
    max_parallel_symbols: PositiveInt = 5
    batch_size: PositiveInt = 50
    # At most this many collected symbols' pages are processed in one transaction (tasks.pending.
    # PendingProcessor): those that finished collecting while the previous batch was processed.
    processing_batch_symbols: PositiveInt = 16
    # While more of a run's symbols are being collected, a batch waits up to this long from its
    # first symbol's arrival to fill up (0: a batch is whatever waits when a lane is free).
    processing_batch_wait_seconds: NonNegativeFloat = 0.25
    retry_attempts: NonNegativeInt = 3
    exponential_backoff: bool = True
    request_timeout_seconds: PositiveFloat = 30.0
    circuit_failure_threshold: PositiveInt = 5
    circuit_cooldown_seconds: PositiveFloat = 30.0
    # How stale a process's view of the breakers other processes share (ops.circuit_breakers) may
    # be; 0 keeps each process's breakers to itself.
    circuit_share_refresh_seconds: NonNegativeFloat = 2.0
    # Without a Prefect server (no PREFECT_API_URL) a vendor's rate limit can only be kept per process:
    # N processes then send N x the limit. True refuses to build a rate-limited source then; false
    # runs with a per-process limit and a warning (one process alone, a notebook).
    shared_rate_limit_required: bool = True


class RateLimit(_Section):
    requests_per_second: PositiveFloat


def _default_rate_limits() -> dict[str, RateLimit]:
    # The seed's published figures: Polygon 50/s, Alpaca 150/s, Yahoo 5/s; Reddit asks for 1/s.
    return {
        "polygon": RateLimit(requests_per_second=50),
        "alpaca": RateLimit(requests_per_second=150),
        "yahoo": RateLimit(requests_per_second=5),
        "reddit": RateLimit(requests_per_second=1),
    }


class RoutingSettings(_Section):
    hot_data_days: PositiveInt = 30
    hot_data_days_by_dataset: dict[str, PositiveInt] = Field(
        default_factory=dict,
        description="per-dataset override of hot_data_days; datasets: bars_intraday, bars_daily, features, "
        "feature_values, trades, quotes, option_quotes (see storage/tiering.py)",
    )
    cold_fallback_enabled: bool = True

    def hot_days(self, dataset: str) -> int:
        """Days of ``dataset`` kept in the hot store before tiering moves them to the lake."""
        return self.hot_data_days_by_dataset.get(dataset, self.hot_data_days)


class DataLakeSettings(_Section):
    compression: Literal["snappy", "zstd"] = "snappy"
    row_group_rows: PositiveInt = Field(
        default=65_536,
        description="rows per Parquet row group of tiered files (sorted by symbol, ts): smaller groups "
        "let a one-symbol read skip more of a file, larger ones compress better",
    )
    compact_min_files: PositiveInt = Field(
        default=4, description="`marketpipe lake compact` merges a partition once it holds this many files"
    )
    raw_retention_days: PositiveInt = Field(
        default=365, description="raw-zone pages (raw/..., ops.raw_pages) older than this are pruned"
    )
    compression_after_days: PositiveInt = Field(
        default=7,
        description="full TimescaleDB edition only: chunks older than this are compressed in TimescaleDB "
        "(warm) by a compression policy, until storage.routing.hot_data_days moves them to the lake (cold); "
        "set it below hot_data_days, or nothing is ever warm",
    )


DEFAULT_SOURCE_PRECEDENCE = ("polygon", "alpaca", "yahoo")


class StorageSettings(_Section):
    routing: RoutingSettings = RoutingSettings()
    data_lake: DataLakeSettings = DataLakeSettings()
    source_precedence: tuple[str, ...] = Field(
        default=DEFAULT_SOURCE_PRECEDENCE,
        description="vendors by precedence, best first: the consolidated bars (market.bars, what readers, "
        "features and scanners see) hold the best vendor's row of each bar; the other vendors' rows are kept "
        "in market.vendor_bars_* (storage/hot.py). Sources not listed (plugins) rank after every listed one",
    )

    @field_validator("source_precedence")
    @classmethod
    def _distinct_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = [v.strip() for v in value]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"source_precedence {list(value)} must list distinct, non-empty source names")
        return tuple(names)


class StreamingSettings(_Section):
    """Live streams (streaming/service.py). ``buffer_size`` frames are read ahead of the parser;
    trades become bars of ``window_seconds`` and of 1 minute, final once the window's end plus
    ``lateness_seconds`` has passed in event time; a micro-batch is committed every
    ``batch_max_delay_seconds`` or ``batch_max_rows`` messages, whichever comes first."""

    buffer_size: PositiveInt = 10000
    buffer_bytes: PositiveInt = Field(
        default=256 * 2**20,
        description="the frames read ahead of the parser take at most this many bytes as well (a frame may be up "
        "to 16 MiB: 10,000 of them would be 160 GiB); full by either bound, the reader stops reading and, past "
        "lag_limit_seconds, spills the oldest frames (half of them, and down to half of this) to the lake",
    )
    window_seconds: PositiveFloat = 60.0
    lateness_seconds: float = Field(default=2.0, ge=0.0)
    batch_max_rows: PositiveInt = 20_000
    batch_max_delay_seconds: PositiveFloat = 0.1
    max_event_skew_seconds: PositiveFloat = Field(
        default=5.0,
        description="a trade, quote or minute bar stamped more than this after the instant its frame was received "
        "is a bad timestamp (a vendor's bad print, a skewed clock): dead-lettered with the reason and counted "
        "(future_events), never windowed, so it cannot move the event clock that closes the bar windows. One "
        "stamped within it closes windows at most this much early (their later trades are corrections, within "
        "the windows' 60 s correction horizon). Keep the host's clock synced (NTP)",
    )
    # The connection (sources/stream.py): dead peers, silent sockets, reconnects, backpressure.
    ping_interval_seconds: PositiveFloat = Field(
        default=10.0, description="a WebSocket ping is sent this often (alpaca-py uses 10 s)"
    )
    ping_timeout_seconds: PositiveFloat = Field(
        default=20.0, description="no pong within this long: the peer is dead, reconnect"
    )
    data_idle_timeout_seconds: PositiveFloat = Field(
        default=30.0,
        description="no frame at all for this long (a socket that answers pings but sends nothing): reconnect; "
        "time the reader spends blocked on a full buffer does not count",
    )
    open_timeout_seconds: PositiveFloat = Field(
        default=10.0, description="connect, the vendor's welcome and the auth answer must arrive within this long"
    )
    reconnect_base_seconds: PositiveFloat = Field(
        default=0.5, description="first reconnect delay; it doubles per failed attempt, with jitter"
    )
    reconnect_max_seconds: PositiveFloat = Field(default=30.0, description="cap of the reconnect delay")
    healthy_seconds: PositiveFloat = Field(
        default=60.0, description="a connection that stayed up this long resets the reconnect delay to the base"
    )
    connection_limit_pause_seconds: PositiveFloat = Field(
        default=60.0,
        description="pause before reconnecting after the vendor's connection limit (Alpaca 406, Polygon "
        "max_connections + close 1008): another client holds the key's slot, or Alpaca still holds ours "
        "(a dropped connection's slot is reaped after ~90 s); an immediate retry would only evict or be refused",
    )
    database_statement_timeout_seconds: PositiveFloat = Field(
        default=120.0,
        description="a statement of the stream's database connection running longer (a lock held by a batch "
        "writer, a stalled server) is cancelled and retried on a new connection; TCP keepalives find a "
        "vanished server meanwhile. Bounds what would otherwise block the consumer, and SIGTERM's drain, for ever",
    )
    catch_up_parallel_symbols: PositiveInt = Field(
        default=8,
        description="hybrid mode: REST requests of the catch-ups in flight at once (one per symbol and dataset)",
    )
    catch_up_hold_rows: PositiveInt = Field(
        default=500_000,
        description="hybrid mode: rows read while a catch-up is in flight wait in memory, in order, behind it; "
        "past this many the consumer waits for the catch-up (the buffer's spill takes over, and is caught up too)",
    )
    lag_limit_seconds: PositiveFloat = Field(
        default=2.0,
        description="the reader blocked this long on a full buffer hands the oldest half of the buffer to the "
        "spill (the lake's raw zone) so it can read again; keep it below ping_timeout_seconds, since a blocked "
        "reader does not read pongs either",
    )

    @model_validator(mode="after")
    def _spill_before_the_ping_timeout(self) -> StreamingSettings:
        if self.lag_limit_seconds >= self.ping_timeout_seconds:
            raise ValueError(
                f"lag_limit_seconds ({self.lag_limit_seconds}) must be below ping_timeout_seconds "
                f"({self.ping_timeout_seconds}): a reader blocked on a full buffer reads no pongs, so the "
                "connection would die of a ping timeout before the buffer spills"
            )
        return self


class OptionSettings(_Section):
    """Option chains (features/option_chains.py, storage/options.py)."""

    risk_free_rate: float = Field(
        default=0.04,
        gt=-1.0,
        lt=1.0,
        description="flat continuously compounded rate written to market.rate_curve when it holds no curve "
        "(the pipeline has no rate vendor yet); a stored curve takes precedence",
    )
    stale_after_minutes: PositiveInt = Field(
        default=30, description="a quote older than the snapshot by more than this is flagged stale"
    )


class QualitySettings(_Section):
    validation_mode: Literal["strict", "lenient"] = "strict"
    min_quality_score: float = Field(default=0.8, ge=0.0, le=1.0)
    vendor_disagreement_tolerance: float = Field(
        default=0.005,
        gt=0.0,
        description="relative price difference (open/high/low/close) above which two vendors' bars of the "
        "same symbol and time disagree (`marketpipe vendors`, market.vendor_disagreements)",
    )


class ReadReplicaSettings(_Section):
    """A streaming-replication hot standby of the hot store (``marketpipe up --replica`` starts the
    embedded one). With ``enabled`` the scanners, the read router (``StorageRouter.connect``) and
    ``subscribe_bars``' reads of announced bars go to it; writes always go to the primary. A read
    whose bound the replica does not meet (lag above ``max_lag_seconds`` or the caller's
    ``max_staleness_seconds``, or a ``min_lsn`` it has not replayed) goes to the primary."""

    enabled: bool = Field(default=False, description="route reads to the replica (db.connect.read_connection)")
    embedded: bool = Field(
        default=True, description="`marketpipe up --replica` runs the standby; false: host/port name an external one"
    )
    host: str = "127.0.0.1"
    port: Port = 5434
    max_lag_seconds: PositiveFloat = Field(
        default=30.0,
        description="replay lag above this is a health issue and an alert (replica-lagging), and reads without "
        "a bound of their own go to the primary meanwhile",
    )
    catch_up_wait_seconds: NonNegativeFloat = Field(
        default=0.5,
        description="subscribe_bars waits this long for the replica to replay an announced batch before "
        "reading it from the primary",
    )
    replication_user: str = Field(default="marketpipe_replication", description="the standby's replication role")
    replication_password: SecretStr | None = Field(
        default=None, description="its password (secret: MARKETPIPE_DATABASE__READ_REPLICA__REPLICATION_PASSWORD)"
    )
    slot: str = Field(
        default="marketpipe_replica",
        pattern=r"^[a-z0-9_]{1,63}$",
        description="the physical replication slot on the primary (it keeps the WAL the standby still needs)",
    )

    _port = field_validator("port")(_check_port)


class DatabaseSettings(_Section):
    """The hot store. The embedded cluster serves it unless ``embedded`` is false."""

    embedded: bool = True
    host: str = "127.0.0.1"
    port: Port = 5433
    name: str = "marketpipe"
    prefect_database: str = "prefect"
    user: str = "marketpipe"
    password: SecretStr | None = None
    os_user: str | None = Field(
        default=None,
        description="OS user owning the embedded cluster; default: the current user, or 'postgres' as root",
    )
    read_replica: ReadReplicaSettings = ReadReplicaSettings()

    _port = field_validator("port")(_check_port)

    def conninfo(self, dbname: str | None = None) -> str:
        """libpq keyword string; the password travels separately so it never lands in a log line."""
        return f"host={self.host} port={self.port} dbname={dbname or self.name} user={self.user}"

    def replica_conninfo(self, dbname: str | None = None) -> str:
        """The same database and role on the read replica (a physical copy: same roles)."""
        replica = self.read_replica
        return f"host={replica.host} port={replica.port} dbname={dbname or self.name} user={self.user}"

    def sqlalchemy_url(self, dbname: str) -> str:
        password = self.password.get_secret_value() if self.password else ""
        return f"postgresql+asyncpg://{self.user}:{password}@{self.host}:{self.port}/{dbname}"


class LakeSettings(_Section):
    """The S3 lake. The embedded SeaweedFS serves it unless ``endpoint`` names another store."""

    endpoint: str | None = Field(default=None, description="external S3 endpoint URL; None = embedded")
    host: str = "127.0.0.1"
    port: Port = 8333
    internal_port_base: Port = Field(
        default=19330,
        description="SeaweedFS master/volume/filer/admin HTTP ports are base..base+3; "
        "their gRPC ports (and the S3 gRPC port) are the HTTP port + 10000",
    )
    bucket: str = Field(default="marketpipe-lake", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    access_key: str = "marketpipe"
    secret_key: SecretStr | None = None
    region: str = "us-east-1"

    _ports = field_validator("port", "internal_port_base")(_check_port)

    @property
    def endpoint_url(self) -> str:
        return self.endpoint or f"http://{self.host}:{self.port}"


class PrefectSettings(_Section):
    """The Prefect server. The embedded one runs unless ``api_url`` names another server."""

    api_url: str | None = Field(default=None, description="external Prefect API URL; None = embedded")
    host: str = "127.0.0.1"
    port: Port = 4200
    # Prefect's basic authentication ('user:password'): the embedded server requires it on every
    # API call (PREFECT_SERVER_API_AUTH_STRING) and every client sends it (PREFECT_API_AUTH_STRING).
    auth_string: SecretStr | None = None

    _port = field_validator("port")(_check_port)

    @property
    def embedded(self) -> bool:
        return self.api_url is None

    @property
    def resolved_api_url(self) -> str:
        return self.api_url or f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return self.resolved_api_url.removesuffix("/api")

    def client_environment(self) -> dict[str, str]:
        """The environment that points Prefect's client (CLI, workers, the flow runs they start) at
        this server, with its credentials."""
        env = {"PREFECT_API_URL": self.resolved_api_url}
        if self.auth_string is not None:
            env["PREFECT_API_AUTH_STRING"] = self.auth_string.get_secret_value()
        return env


class BarJob(_Section):
    """One bar series the pipeline keeps current: a timeframe and how far back it starts."""

    timeframe: Literal["1min", "5min", "15min", "1hour", "1day"]
    lookback_days: PositiveInt = Field(description="calendar days of history kept for this timeframe")


def _default_universe() -> list[str]:
    return [
        "AAPL",
        "MSFT",
        "AMZN",
        "GOOGL",
        "META",
        "NVDA",
        "TSLA",
        "BRK.B",
        "JPM",
        "V",
        "JNJ",
        "WMT",
        "PG",
        "XOM",
        "UNH",
        "HD",
        "MA",
        "DIS",
        "KO",
        "PEP",
    ]


class PipelineSettings(_Section):
    """What ``run_pipeline()`` (and the main job) collects when no symbols or dates are given."""

    source: str = "polygon"
    symbols: list[str] = Field(default_factory=_default_universe)
    bars: list[BarJob] = Field(
        default_factory=lambda: [
            BarJob(timeframe="1day", lookback_days=365),
            BarJob(timeframe="1min", lookback_days=14),
        ]
    )
    corporate_actions: bool = True
    history_start: date | None = Field(default=None, description="the date the historical stage backfills from")


class SandboxSettings(_Section):
    """The market sandbox: one seeded synthetic market served in every vendor's wire format."""

    enabled: bool = Field(default=True, description="start it with `marketpipe up`")
    route_vendors: bool = Field(
        default=True,
        description="vendors without an explicit base_url are reached through the sandbox",
    )
    host: str = "127.0.0.1"
    port: Port = 8765
    seed: int = 42
    now: str | None = Field(
        default=None,
        description="pin the sandbox's clock at this instant (ISO 8601, naive = New York; a date = its end); "
        "None follows the wall clock. The market serves nothing after it.",
    )

    _port = field_validator("port")(_check_port)

    @field_validator("now")
    @classmethod
    def _check_now(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an instant: use ISO 8601 like 2024-06-03T16:05:00-04:00 (naive = New York) "
                "or a date YYYY-MM-DD (its end)"
            ) from None
        return value

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


class VendorSettings(_Section):
    """Credentials and base URL of one vendor; keys are secrets and never printed."""

    base_url: str | None = None
    stream_url: str | None = Field(
        default=None,
        description="the vendor's WebSocket (sources/stream.py); None: the vendor's, the sandbox's when REST is "
        "routed there, or derived from a plain-http base_url (a local server); Alpaca's may hold {feed}",
    )
    api_key: SecretStr | None = None
    secret_key: SecretStr | None = None


def _default_vendors() -> dict[str, VendorSettings]:
    return {name: VendorSettings() for name in ("polygon", "alpaca", "yahoo", "reddit")}


class FeatureSettings(_Section):
    """The standard feature set's window lengths (in bars) and the plugin builders (features).

    Changing any of them changes the feature-set version stored with every feature row."""

    sma: PositiveInt = Field(default=20, description="SMA window")
    ema: PositiveInt = Field(default=20, description="EMA span (seeded by the SMA of its first window)")
    rsi: PositiveInt = Field(default=14, description="RSI (Wilder) window")
    macd_fast: PositiveInt = 12
    macd_slow: PositiveInt = 26
    macd_signal: PositiveInt = 9
    bb: PositiveInt = Field(default=20, description="Bollinger bands window")
    bb_k: PositiveFloat = Field(default=2.0, description="Bollinger bands width in standard deviations")
    atr: PositiveInt = Field(default=14, description="ATR (Wilder) window")
    volatility: int = Field(default=20, ge=2, description="rolling volatility of log returns window")
    volume_z: int = Field(default=20, ge=2, description="rolling volume z-score window")
    hilo: PositiveInt = Field(default=20, description="window of the rolling high and low (distance to them)")
    builders: dict[str, str] = Field(
        default_factory=dict,
        description="plugin builders: name -> import path of a FeatureBuilder subclass ('pkg.module:Class'), "
        "added to those of the marketpipe.features entry points",
    )


class ComputeSettings(_Section):
    """Where the features flow and the option analytics recompute compute (flows/features_flow.py,
    flows/options.py, tasks/compute.py): threads of the flow run's own process, or the workers of a
    Dask cluster through prefect-dask.

    Dask workers build their settings and secrets from their own environment (MARKETPIPE_*), as
    Prefect workers do; a shard's task parameters carry symbols, dates and the flow's non-secret
    overrides only."""

    task_runner: Literal["threads", "dask"] = Field(
        default="threads",
        description="threads: in the flow run's process; dask: prefect-dask's DaskTaskRunner, on the "
        "cluster at dask_address or on a LocalCluster the run starts and stops",
    )
    dask_address: str = Field(
        default="",
        description="scheduler of an existing Dask cluster (e.g. tcp://dask-scheduler:8786); empty = a "
        "LocalCluster of n_workers processes x threads_per_worker threads for the run",
    )
    n_workers: PositiveInt = Field(default=2, description="worker processes of the LocalCluster (no dask_address)")
    threads_per_worker: PositiveInt = Field(default=1, description="threads per LocalCluster worker process")
    symbols_per_shard: PositiveInt = Field(
        default=50,
        description="symbols per task (one read of their history, one kernel call, one write): large enough "
        "to amortise a task's overhead, small enough to retry",
    )

    @field_validator("dask_address")
    @classmethod
    def _scheduler_address(cls, value: str) -> str:
        if value and not re.fullmatch(r"(tcp|tls)://[^\s/:]+:[0-9]{1,5}", value):
            raise ValueError(
                "a Dask scheduler address is tcp://HOST:PORT or tls://HOST:PORT (e.g. tcp://dask-scheduler:8786); "
                "leave it empty for a LocalCluster per run"
            )
        return value


class EmbeddingSettings(_Section):
    """The sentence-embedding model of news search (features/embeddings.py)."""

    enabled: bool = Field(
        default=True,
        description="the news flow embeds each new or changed story as it stores it; false stores news "
        "without vectors (a machine without the model)",
    )
    model: str = Field(
        default="minilm-l6-v2-static-fit",
        description="minilm-l6-v2-static-fit (a static token table distilled from all-MiniLM-L6-v2 and fitted to "
        "it: ~12,000 texts per CPU-second, as good on whole news articles, weaker on short queries; the news path "
        "keeps up with a backfill on one core), all-minilm-l6-v2-int8 (the network itself as int8 ONNX, 384-d, "
        "offline: ~90 texts/s on one core) or an import path 'pkg.module:factory' of a model with name, dim and "
        "embed(texts). Vectors of different models are never compared: after a change, `marketpipe news embed` "
        "re-embeds the stored stories",
    )
    batch_size: PositiveInt = Field(default=32, description="texts per forward pass of the built-in model")
    cache_dir: Path | None = Field(
        default=None,
        description="where minilm-l6-v2-static-fit keeps its distilled table (23 MB, built by `make install` or "
        "on first use in ~20-45 s of CPU); default $XDG_CACHE_HOME/marketpipe or ~/.cache/marketpipe",
    )


class NewsSettings(_Section):
    """News and posts (quality/dedup.py, features/sentiment.py, tasks/news.py)."""

    sentiment_model: str = Field(
        default="vader-lm",
        description="vader-lm (VADER with the Loughran-McDonald words), vader, or an import path "
        "'pkg.module:factory' of a model with name and score(texts)",
    )
    dedup_threshold: float = Field(
        default=0.5,
        gt=0.0,
        lt=1.0,
        description="estimated Jaccard similarity of two items of one story (the LSH banding of "
        "quality.dedup.DedupConfig is tuned for 0.5)",
    )
    dedup_window_hours: float = Field(default=72.0, gt=0.0, description="how far apart two items of one story may be")


class Settings(BaseSettings):
    """Everything marketpipe can be told. See the module docstring for where values come from."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
        env_file=None,
    )

    state_dir: Path = Path(".state")
    log_level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    debug: bool = False
    startup_timeout_seconds: PositiveFloat = 60.0

    collection: CollectionSettings = CollectionSettings()
    rate_limits: dict[str, RateLimit] = Field(default_factory=_default_rate_limits)
    storage: StorageSettings = StorageSettings()
    streaming: StreamingSettings = StreamingSettings()
    quality: QualitySettings = QualitySettings()
    options: OptionSettings = OptionSettings()

    database: DatabaseSettings = DatabaseSettings()
    lake: LakeSettings = LakeSettings()
    prefect: PrefectSettings = PrefectSettings()
    sandbox: SandboxSettings = SandboxSettings()
    pipeline: PipelineSettings = PipelineSettings()
    features: FeatureSettings = FeatureSettings()
    compute: ComputeSettings = ComputeSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    news: NewsSettings = NewsSettings()
    vendors: dict[str, VendorSettings] = Field(default_factory=_default_vendors)
    sources: dict[str, str] = Field(
        default_factory=dict,
        description="plugin sources: name -> import path of a BaseSource subclass ('pkg.module:Class')",
    )

    @field_validator("rate_limits")
    @classmethod
    def _merge_rate_limit_defaults(cls, value: dict[str, RateLimit]) -> dict[str, RateLimit]:
        return {**_default_rate_limits(), **value}

    @field_validator("vendors")
    @classmethod
    def _merge_vendor_defaults(cls, value: dict[str, VendorSettings]) -> dict[str, VendorSettings]:
        return {**_default_vendors(), **value}

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: CLI flags (init) > environment > .env > YAML > defaults.
        yaml_source = _YamlSource(settings_cls, _YAML_PATH.get())
        dotenv = _PrefixedDotEnvSource(settings_cls, env_file=getattr(dotenv_settings, "env_file", None))
        return (init_settings, env_settings, dotenv, yaml_source)

    def secret_values(self) -> list[str]:
        """Every secret's plain value, for the log redactor."""
        secrets = [self.database.password, self.lake.secret_key, self.prefect.auth_string]
        secrets.append(self.database.read_replica.replication_password)
        for vendor in self.vendors.values():
            secrets += [vendor.api_key, vendor.secret_key]
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]

    def require_secrets(self) -> None:
        """The embedded stack needs its secrets; say exactly how to provide them."""
        missing = []
        if self.database.password is None:
            missing.append(("database.password", "MARKETPIPE_DATABASE__PASSWORD"))
        if self.lake.secret_key is None:
            missing.append(("lake.secret_key", "MARKETPIPE_LAKE__SECRET_KEY"))
        if self.prefect.embedded and self.prefect.auth_string is None:
            missing.append(("prefect.auth_string", "MARKETPIPE_PREFECT__AUTH_STRING"))
        if missing:
            names = ", ".join(f"{key} ({env})" for key, env in missing)
            raise ConfigurationError(
                f"missing secret(s): {names}; set them in the environment or in a .env file "
                "(`make install` writes .env with random values and adds the keys an older .env lacks)"
            )


# The YAML path is chosen at the entry point; pydantic-settings builds its sources inside
# __init__, so the path travels through a context variable for one load_settings() call.
_YAML_PATH: ContextVar[Path | None] = ContextVar("marketpipe_yaml_path", default=None)


class _PrefixedDotEnvSource(DotEnvSettingsSource):
    """The .env file is shared with docker compose, so it may hold other programs' variables:
    only ``MARKETPIPE_`` lines are ours (and an unknown one of those is still an error)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        prefix = ENV_PREFIX.lower()
        return {k: v for k, v in super()._load_env_vars().items() if k.lower().startswith(prefix)}


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the seed-style YAML file; its keys may be nested under ``data_pipeline:``."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.data = read_yaml_config(path) if path is not None else {}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def read_yaml_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read config file {path}: {exc.strerror}; pass an existing file with --config"
        ) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    if set(data) == {"data_pipeline"}:
        data = data["data_pipeline"] or {}
    elif "data_pipeline" in data:
        inner = data.pop("data_pipeline") or {}
        data = {**inner, **data}
    return data


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Turn ``--set a.b=c`` flags into a nested dict; values are parsed as YAML scalars."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(
                f"--set expects KEY=VALUE with a dotted key (e.g. collection.batch_size=100), got {pair!r}"
            )
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigurationError(f"--set {pair!r} conflicts with another --set for {part!r}")
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[parts[-1]] = raw
    return result


def load_settings(
    config_path: Path | None = None,
    env_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings object; every invalid value becomes one clear ConfigurationError.

    ``config_path`` None means ``MARKETPIPE_CONFIG`` or, when present, the default YAML file.
    """
    env = os.environ
    if config_path is None and env.get("MARKETPIPE_CONFIG"):
        config_path = Path(env["MARKETPIPE_CONFIG"])
    elif config_path is None and DEFAULT_CONFIG_PATH.exists():
        config_path = DEFAULT_CONFIG_PATH
    if env_file is None and env.get("MARKETPIPE_ENV_FILE"):
        env_file = Path(env["MARKETPIPE_ENV_FILE"])
    elif env_file is None:
        env_file = Path(".env")
    if env_file is not None and not env_file.exists():
        env_file = None

    token = _YAML_PATH.set(config_path)
    try:
        return Settings(_env_file=env_file, **dict(overrides or {}))  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc, config_path)) from None
    finally:
        _YAML_PATH.reset(token)


def describe_validation_error(exc: ValidationError, config_path: Path | None) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p).upper() for p in error["loc"])
        value = error.get("input")
        if error["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key!r} (value {_show(key, value)}): remove it or fix its spelling")
            continue
        if error["type"] == "missing":
            lines.append(f"setting {key!r} is required")
            continue
        lines.append(
            f"invalid setting {key} = {_show(key, value)}: {error['msg']} "
            f"(set it in {config_path or DEFAULT_CONFIG_PATH}, as {env_name}, or with --set {key}=...)"
        )
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _show(key: str, value: Any) -> str:
    if any(word in key for word in ("password", "secret", "api_key", "token", "auth_string")):
        return "'**********'"
    return repr(value)
