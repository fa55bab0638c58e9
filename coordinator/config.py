"""Typed configuration of the coordinator process, built once at the entry point."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:7440"
DEFAULT_STORE_POOL = 10
# How long a call keeps trying while PostgreSQL cannot be reached before it is answered
# UNAVAILABLE (coordinator/store/pg_retry.py).
DEFAULT_STORE_RETRY = "30s"
# How long one parsing, compatibility or composition check of a large input may run in a worker
# process before it is answered FAILED_PRECONDITION (coordinator/checks.py).
DEFAULT_CHECK_BUDGET = "10s"
# The largest run input, event payload, task result or contract/workflow file a request may carry
# (--max-payload; docs/production.md, "Limits on requests").
DEFAULT_MAX_PAYLOAD = 1024 * 1024
# Unary calls one coordinator serves at once; beyond them a call is answered RESOURCE_EXHAUSTED
# with a retry-after-ms hint (--max-inflight; coordinator/api/edge.py).
DEFAULT_MAX_INFLIGHT = 256
# The most audit entries, runs and run digests (each) an autonomy report reads (docs/governance.md).
DEFAULT_AUTONOMY_ROWS = 200_000
# Retention (docs/production.md, "Retention"): the audit log's own; runs' default is the database's.
DEFAULT_AUDIT_RETENTION = "400d"
# Where metrics are served for Prometheus (--metrics; docs/production.md, "Metrics").
DEFAULT_METRICS = "127.0.0.1:9464"

# The JetStream stream (and subject prefix) of --events nats://...; how long it keeps events is
# --events-retention, by default the run retention (--retention).
DEFAULT_EVENTS_STREAM = "ACCORD"
# What --ui (ACCORD_UI) takes to turn the tracing UI off.
UI_OFF = ("", "off", "none", "no", "false", "0")


def ui_enabled(listen: str | None) -> bool:
    """Whether ``--ui``'s value serves the UI (anything but a word of ``UI_OFF``)."""
    return (listen or "").strip().lower() not in UI_OFF


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str, what: str) -> int:
    """Bytes in ``text``: ``1048576``, ``512KiB``, ``1MiB``, ``2MB``. Raises ValueError naming ``what``."""
    value = text.strip().lower()
    number = value.rstrip("kmgib")
    unit = value[len(number) :]
    if not number.isdigit() or unit not in _SIZE_UNITS or len(number) > 15:
        raise ValueError(f"{what} {text!r}: expected a number of bytes such as 1048576, 512KiB or 1MiB")
    return int(number) * _SIZE_UNITS[unit]


def accord_home() -> Path:
    """``$ACCORD_HOME`` or ``~/.accord``: where the coordinator keeps its state."""
    return Path(os.environ.get("ACCORD_HOME") or Path.home() / ".accord").expanduser()


@dataclass(frozen=True)
class EngineSettings:
    """Knobs of the run engine (tests shorten them)."""

    # How long an agent counts as "alive" after its last poll or heartbeat.
    agent_alive_s: float = 30.0
    # Suggested long-poll wait handed to agents.
    poll_wait_ms: int = 20_000
    # Default fan-out concurrency when a for_each step does not set one.
    default_fan_out: int = 16
    # How often the timer processor looks at the store's timers at the least (it also wakes for
    # every timer this process arms, and at the earliest due one): timers armed by another process.
    timer_poll_s: float = 1.0
    # How often token hashes, teams' defaults and agents are read again from the store (changed
    # through another coordinator sharing it: a revoked token is refused here within this).
    cache_refresh_s: float = 0.5
    # With other coordinators on the same store (PostgreSQL): how often a waiting agent poll or
    # run watcher reads the store again by itself. Other coordinators' commits wake them at once
    # (hints, see docs/architecture.md "Several coordinators"); this is the fallback should a hint
    # be lost.
    replica_poll_s: float = 2.0


@dataclass(frozen=True)
class ServerTlsFiles:
    """The coordinator's TLS files (``--tls-cert``, ``--tls-key``, ``--tls-client-ca``), read
    again when they change (``coordinator.tls``)."""

    cert: Path  # PEM: the certificate, then any intermediates
    key: Path  # PEM: its private key
    client_ca: Path | None = None  # PEM: the CA(s) a client's certificate must be signed by (mutual TLS)


@dataclass(frozen=True)
class CoordinatorConfig:
    home: Path
    listen: str = DEFAULT_LISTEN
    db_path: Path | None = None  # the SQLite file (--db, or --store sqlite:///PATH)
    # A PostgreSQL connection URL (--store postgresql://...), passed to libpq as it is; "" for
    # the SQLite store at ``database``.
    store_url: str = ""
    store_pool: int = DEFAULT_STORE_POOL  # connections to PostgreSQL at the most
    store_retry_s: float = 30.0  # --store-retry: a call's retries while PostgreSQL is unreachable
    check_budget_s: float = 10.0  # --check-budget: one check of a large input in a worker process
    log_level: str = "INFO"
    log_format: str = "text"  # "text" | "json"
    ui_listen: str | None = None  # HOST:PORT of the tracing UI, when enabled
    span_retention: str = "7d"  # spans older than this are pruned (telemetry.retention)
    # --retention: runs finished longer ago are deleted; None: the database's own default
    # ("off" for a database in use before retention existed; coordinator/store/retention.py)
    retention: str | None = None
    audit_retention: str = DEFAULT_AUDIT_RETENTION
    retention_interval_s: float = 60.0  # between retention passes (tests shorten it)
    metrics_listen: str = ""  # --metrics HOST:PORT for Prometheus; "" = not served
    tls: ServerTlsFiles | None = None  # None: gRPC and the UI in plaintext
    max_payload: int = DEFAULT_MAX_PAYLOAD  # --max-payload, bytes
    max_inflight: int = DEFAULT_MAX_INFLIGHT  # --max-inflight, unary calls at once
    autonomy_rows: int = DEFAULT_AUTONOMY_ROWS  # --autonomy-rows, read by one autonomy report
    # --agent-streams: serve the v2 agent API (one stream per agent) beside v1; off, agents fall
    # back to the v1 unary calls (docs/agent.md, "The wire").
    agent_streams: bool = True
    # --events: NATS server URL(s) (nats://HOST:4222, tls://..., comma-separated); "" for the
    # in-process bus. --events-stream: the JetStream stream and subject prefix. --events-retention:
    # how long the stream keeps events (None: as long as runs are kept, --retention; the store
    # keeps them as well). --events-creds: a NATS credentials file.
    events_url: str = ""
    events_stream: str = DEFAULT_EVENTS_STREAM
    events_retention_s: float | None = None
    events_credentials: Path | None = None
    engine: EngineSettings = field(default_factory=EngineSettings)

    @property
    def database(self) -> Path:
        return self.db_path or self.home / "coordinator.db"

    @property
    def state_file(self) -> Path:
        return self.home / "coordinator.json"

    @property
    def admin_token_file(self) -> Path:
        return self.home / "admin.token"
