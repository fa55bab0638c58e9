"""The coordinator process: wires store, registry, dispatch, engine and the gRPC services.

Extension points for other packages (telemetry's OTLP receiver, the web UI):
``Coordinator(config, hooks=[...])`` where each hook is a ``ServerHook``: ``configure`` runs
before the gRPC server starts (add servicers there) and ``start`` after (start a side server;
return an async closer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2_grpc as agent_grpc
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2 as stream_pb
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2_grpc as stream_grpc
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from contracts.errors import UnreachableError
from contracts.metrics import MetricsServer
from contracts.private_files import secure_directory
from coordinator.api.agent_service import AgentGatewayService
from coordinator.api.agent_stream import AgentStreamService
from coordinator.api.auth import AuthInterceptor, current_principal
from coordinator.api.coordinator_service import CoordinatorService
from coordinator.api.edge import EdgeInterceptor
from coordinator.checks import Checks
from coordinator.config import CoordinatorConfig
from coordinator.dispatch import Dispatcher, queue_label
from coordinator.engine import Engine
from coordinator.engine.schedules import Scheduler, wall_clock_ms
from coordinator.engine.state import Transition
from coordinator.events import EventBus, InMemoryEventBus
from coordinator.events.service import EventService
from coordinator.registry import Registry
from coordinator.registry.teams import Teams
from coordinator.store.base import ReportsReachability, Store
from coordinator.store.records import ATTEMPT_TERMINAL, RunRecord
from coordinator.store.retention import resolve as resolve_retention
from coordinator.store.retention import retention_interval, run_retention
from coordinator.store.sqlite import SqliteStore
from coordinator.telemetry.hook import TelemetryHook
from coordinator.telemetry.logging import ClientGoneFilter, JsonFormatter, TextFormatter, TraceContextFilter
from coordinator.telemetry.metrics import BUCKETS, CoordinatorMetrics
from coordinator.telemetry.propagation import TraceContextServerInterceptor
from coordinator.telemetry.sink import SpanSink, TelemetrySink
from coordinator.tls import CertificateFiles
from coordinator.tokens import TokenAuthority

logger = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[None]]


class ServerHook(Protocol):
    def configure(self, server: grpc.aio.Server, coordinator: Coordinator) -> None: ...
    async def start(self, coordinator: Coordinator) -> Closer | None: ...


@dataclass
class Coordinator:
    config: CoordinatorConfig
    hooks: list[ServerHook] = field(default_factory=list)
    store: Store | None = None
    span_sink: SpanSink | None = None
    # set by start()
    address: str = ""
    admin_token_created: str | None = None
    # set by the web UI's hook when it serves; written to coordinator.json as "ui"
    ui_address: str = ""
    # the TLS files (--tls-cert ...), read again when they change; None: plaintext
    certificates: CertificateFiles | None = None
    # False while the store's database cannot be reached (gRPC health: NOT_SERVING)
    store_reachable: bool = True
    # The schedules' clock (unix ms): the wall clock, or a test clock moved on by hand.
    schedule_clock: Callable[[], int] | None = None

    async def start(self) -> str:
        config = self.config
        # The database, its WAL, coordinator.json and admin.token hold payloads and secrets:
        # ACCORD_HOME is owner-only, a looser existing one is tightened (docs/production.md).
        await asyncio.to_thread(secure_directory, config.home)
        self.store = self.store or new_store(config)
        await self.store.open()
        self._health_updates: set[asyncio.Task[None]] = set()
        if isinstance(self.store, ReportsReachability):
            self.store.subscribe_reachability(self._store_reachability)
        self.authority = TokenAuthority()
        self.teams = Teams(self.store, self.authority)
        token = await self.teams.load()
        if token is not None:
            _write_private(config.admin_token_file, token + "\n")
            self.admin_token_created = token
        elif not config.admin_token_file.exists():
            # Another coordinator on the same database made it (at the same time as this one, or
            # before, with another ACCORD_HOME): the database holds only its hash.
            logger.info(
                "the admin token of this database was created by another coordinator (or an earlier"
                " start with another ACCORD_HOME); only its hash is stored, so %s is not written:"
                " use the admin.token that coordinator wrote",
                config.admin_token_file,
            )
        self.registry = Registry(self.store, checks=Checks(config.check_budget_s))
        self.registry.autonomy_rows = config.autonomy_rows
        try:
            await self.registry.warn_unsupported_patterns()
        except Exception as exc:  # a warning only: never a reason not to start
            logger.warning("could not list the registered schema patterns RE2 cannot run: %s", exc)
        await self.registry.log_unknown_schema_keywords()
        self.dispatcher = Dispatcher(agent_alive_s=config.engine.agent_alive_s)
        # Retention (coordinator/store/retention.py): the flag, else the database's own default.
        self.retention, notes = await resolve_retention(
            self.store, config.retention, config.span_retention, config.audit_retention
        )
        for note in notes:
            logger.warning(note)
        # Metrics (docs/production.md, "Metrics"): /metrics for Prometheus, OTLP by OTEL_*.
        self.metrics_server = MetricsServer("accord-coordinator", config.metrics_listen, os.environ, BUCKETS)
        self.metrics_address = self.metrics_server.address
        self.metrics = CoordinatorMetrics(self.metrics_server.meter("accord.coordinator"))
        # Tracing: the engine's span sink (store + OTLP forwarder), the OTLP receiver. Spans are
        # pruned with the rest by retention, in batches (never longer than their runs).
        self.telemetry = TelemetryHook(
            env=os.environ, span_retention=config.span_retention, principal=current_principal, prune=False
        )
        sink = self.span_sink or self.telemetry.sink(self.store)
        if isinstance(sink, TelemetrySink):
            # Spans are scrubbed of what a run's flows make sensitive for the versions it pinned.
            sink.sensitivity.flows = self.registry.run_flows
        self.engine = Engine(
            self.store,
            self.registry,
            self.dispatcher,
            sink,
            config.engine,
            sampling_env=self.telemetry.env,
        )
        if isinstance(sink, TelemetrySink):
            sink.sensitivity.known_run = self.engine.known_run
        if self.metrics_server.exporting:
            self.engine.on_commit = self._observe_transition
            store_kind = "postgresql" if self.store.shared else "sqlite"
            self.store.on_commit = lambda seconds: self.metrics.committed(store_kind, seconds)
        await self.engine.start()
        self.bus = new_event_bus(config, self.retention.runs_s)
        self.events = EventService(self.store, self.registry, self.engine, self.bus)
        try:
            await self.events.start()  # NATS not there: UnreachableError naming it (exit 3)
        except BaseException:
            await self.stop()
            raise
        self.scheduler = Scheduler(
            self.store,
            self.engine,
            self.registry,
            clock=self.schedule_clock or wall_clock_ms,
        )
        await self.scheduler.sync_all()
        if self.schedule_clock is None:
            self.scheduler.start()
        self.coordinator_service = CoordinatorService(
            self.store,
            self.teams,
            self.registry,
            self.engine,
            self.events,
            max_payload=config.max_payload,
            scheduler=self.scheduler,
            authority=self.authority,
        )

        self.edge = EdgeInterceptor(config.max_inflight)
        if self.metrics_server.exporting:
            self.edge.on_refused = self.metrics.refused_request
        # A request may carry a payload of --max-payload and its envelope; the server's limit sits
        # well above that, so the edge, not gRPC, refuses a larger payload (naming its field).
        receive_limit = max(32 * 1024 * 1024, 4 * config.max_payload)
        server = grpc.aio.server(
            interceptors=[
                self.edge,
                AuthInterceptor(self.authority, self.teams.refresh),
                TraceContextServerInterceptor(),
            ],
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", receive_limit),
                # gRPC cancels, without a word, calls that wait for the server to pick them up
                # beyond 3,000 or 30 s; let them wait instead, so the edge answers each one
                # (RESOURCE_EXHAUSTED with a retry hint when too many run at once).
                ("grpc.server.max_pending_requests", 100_000),
                ("grpc.server.max_pending_requests_hard_limit", 100_000),
                ("grpc.server_max_unrequested_time_in_server", 300),
            ],
        )
        pb_grpc.add_CoordinatorServiceServicer_to_server(self.coordinator_service, server)
        agent_grpc.add_AgentGatewayServiceServicer_to_server(
            AgentGatewayService(self.engine, config.engine, self.authority, max_payload=config.max_payload),
            server,
        )
        self.agent_streams = AgentStreamService(
            self.engine, config.engine, self.authority, max_payload=config.max_payload
        )
        if config.agent_streams:
            stream_grpc.add_AgentStreamServiceServicer_to_server(self.agent_streams, server)
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        service_names = [
            pb.DESCRIPTOR.services_by_name["CoordinatorService"].full_name,
            agent_pb.DESCRIPTOR.services_by_name["AgentGatewayService"].full_name,
            *(
                [stream_pb.DESCRIPTOR.services_by_name["AgentStreamService"].full_name]
                if config.agent_streams
                else []
            ),
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            # served by the telemetry hook's OTLP receiver (configured below)
            trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
            reflection.SERVICE_NAME,
        ]
        if config.tls is not None:
            self.certificates = CertificateFiles(config.tls)
        for hook in [self.telemetry, *self.hooks]:
            hook.configure(server, self)
        reflection.enable_server_reflection(service_names, server)
        if self.certificates is not None:
            port = server.add_secure_port(config.listen, self.certificates.grpc_credentials())
        else:
            port = server.add_insecure_port(config.listen)
        if port == 0:
            raise OSError(f"cannot listen on {config.listen}")
        host = config.listen.rsplit(":", 1)[0]
        self.address = f"{host}:{port}"
        await server.start()
        self.server = server
        # "" is the server as a whole; each service by its full name too (grpc_health_probe -service).
        self._health_names = ["", *service_names]
        await self._update_health()
        # The telemetry hook's closer is kept apart: it must run after the engine's last spans.
        self._telemetry_closer = await self.telemetry.start(self)
        self._closers: list[Closer] = [self._start_refresh(), self._start_retention()]
        if self.metrics_server.exporting:
            self._closers.append(self._start_gauges())
        for hook in self.hooks:
            closer = await hook.start(self)
            if closer is not None:
                self._closers.append(closer)
        state: dict[str, object] = {"grpc": self.address, "pid": os.getpid()}
        if self.ui_address:
            state["ui"] = self.ui_address
        if self.certificates is not None:
            state["tls"] = True
        if self.metrics_address:
            state["metrics"] = self.metrics_address
        _write_private(config.state_file, json.dumps(state) + "\n")
        return self.address

    def _store_reachability(self, reachable: bool) -> None:
        """The store lost its database, or has it again (it logs that itself): health follows,
        and agents get a heartbeat period from now before a lease they could not renew meanwhile
        is held against them."""
        self.store_reachable = reachable
        if reachable and hasattr(self, "engine"):
            self.engine.store_reachable_again()
        if hasattr(self, "_health_names"):
            task = asyncio.get_running_loop().create_task(self._update_health(), name="health")
            self._health_updates.add(task)
            task.add_done_callback(self._health_updates.discard)

    async def _update_health(self) -> None:
        # Always the latest state, however the updates interleave.
        for name in self._health_names:
            await _set_health(self.health, name, self.store_reachable)

    def _observe_transition(self, run: RunRecord, tr: Transition) -> None:
        if tr.new_run:
            self.metrics.run_started(run.workflow)
        if tr.finished:
            self.metrics.run_finished(run.workflow, run.status)
        for attempt in tr.attempts.values():
            if attempt.status in ATTEMPT_TERMINAL and attempt.finished_ms == tr.now:
                began = attempt.started_ms or attempt.scheduled_ms
                self.metrics.attempt_ended(attempt.contract, attempt.status, (tr.now - began) / 1000)

    def _start_retention(self) -> Closer:
        task = asyncio.create_task(
            run_retention(
                self.store,  # type: ignore[arg-type]
                self.retention,
                interval_s=retention_interval(self.retention, self.config.retention_interval_s),
                on_pass=lambda result: self.metrics.retention_pass(result.deleted),
            ),
            name="retention",
        )
        return _cancelling(task)

    def _start_gauges(self) -> Closer:
        task = asyncio.create_task(_refresh_gauges(self, GAUGES_EVERY_S), name="metrics-gauges")
        return _cancelling(task)

    def _start_refresh(self) -> Closer:
        task = asyncio.create_task(
            _refresh_caches(self, self.config.engine.cache_refresh_s), name="refresh-caches"
        )

        async def close() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        return close

    async def stop(self, grace: float = 2.0) -> None:
        """Stop serving and close everything, in order. Each stage gets ``_STOP_STAGE_S`` at
        the most: a stage that hangs (a connection that never answers) is logged by name and
        left behind, so SIGTERM always ends the process; nothing acknowledged depends on it."""
        for closer in reversed(getattr(self, "_closers", [])):
            await _stage("a server hook", _close(closer))
        if hasattr(self, "scheduler"):
            await _stage("the scheduler", self.scheduler.stop())
        if hasattr(self, "agent_streams"):
            # Agents on v2 streams move to another coordinator (or wait for this one) at once.
            await _stage("the agents' streams", self.agent_streams.close_all("the coordinator is stopping"))
        if hasattr(self, "server"):
            # agents' last OTLP exports are still taken meanwhile
            await _stage("the gRPC server", self.server.stop(grace))
        if hasattr(self, "events"):
            # Before the engine: the bus's consumer starts runs. What it had not acknowledged
            # is delivered again, to this coordinator's next start or to another one.
            await _stage("the event bus", self.events.close())
        if hasattr(self, "engine"):
            await _stage("the engine", self.engine.stop())  # flushes its buffered spans into the sink...
        telemetry_closer = getattr(self, "_telemetry_closer", None)
        if telemetry_closer is not None:
            # ...which forwards them before the forwarder stops
            await _stage("the telemetry forwarder", _close(telemetry_closer))
        if hasattr(self, "registry"):
            self.registry.checks.close()
        if self.store is not None:
            await _stage("the store", self.store.close())
        if hasattr(self, "metrics_server"):
            await _stage("the metrics", asyncio.to_thread(self.metrics_server.close))
        try:
            state = json.loads(self.config.state_file.read_text())
            if state.get("pid") == os.getpid():
                self.config.state_file.unlink()
        except (OSError, ValueError):
            pass


# How long one stage of a shutdown may take (Coordinator.stop).
_STOP_STAGE_S = 10.0


async def _stage(what: str, work: Awaitable[None]) -> None:
    try:
        await asyncio.wait_for(work, _STOP_STAGE_S)
    except TimeoutError:
        logger.error("shutting down: %s did not stop within %.0fs; going on without it", what, _STOP_STAGE_S)


# How often the gauges (queue depth and age, agents per team) are read (metrics).
GAUGES_EVERY_S = 5.0


def _cancelling(task: asyncio.Task[None]) -> Closer:
    async def close() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return close


async def _refresh_gauges(coordinator: Coordinator, every_s: float) -> None:
    """Read what the gauges show, on the event loop, for the exporters' threads to take."""
    gauges = coordinator.metrics.gauges
    while True:
        try:
            now_ms = time.time() * 1000
            stats = await coordinator.store.queue_stats()  # type: ignore[union-attr]
            depth: dict[tuple[str, ...], int] = {}
            oldest: dict[tuple[str, ...], float] = {}
            for contract, major, count, first_ms in stats:
                key = (queue_label((contract, major)),)
                depth[key] = count
                oldest[key] = max(0.0, (now_ms - first_ms) / 1000)
            gauges.queue_depth, gauges.queue_oldest_s = depth, oldest
            backlog = await coordinator.store.event_backlog()  # type: ignore[union-attr]
            gauges.events_waiting = {(contract,): count for contract, count, _ in backlog}
            gauges.event_lag_s = {
                (contract,): max(0.0, (now_ms - first_ms) / 1000) for contract, _, first_ms in backlog
            }
            gauges.agents = {(team,): n for team, n in coordinator.dispatcher.alive_per_team().items()}
        except UnreachableError as exc:
            logger.debug("reading the gauges failed: %s", exc)
        except Exception:
            logger.exception("reading the gauges failed; trying again in %.1fs", every_s)
        await asyncio.sleep(every_s)


async def _refresh_caches(coordinator: Coordinator, every_s: float) -> None:
    """Read again what another coordinator sharing the store may change: token hashes (a revoked
    token is refused here within ``every_s``), the teams' defaults and the registered agents."""
    while True:
        await asyncio.sleep(every_s)
        try:
            teams = await coordinator.teams.refresh()
            coordinator.engine.cache_team_defaults(teams)
            await coordinator.engine.load_team_limits()
            for agent in await coordinator.store.list_agents():  # type: ignore[union-attr]
                if coordinator.dispatcher.agent(agent.agent_id) != agent:
                    coordinator.dispatcher.register_agent(agent, seen=False)
        except UnreachableError as exc:  # the store logs the outage once; this tries again
            logger.debug("reading the shared caches again failed: %s", exc)
        except Exception:
            logger.exception("reading the shared caches again failed; trying again in %.1fs", every_s)


def new_store(config: CoordinatorConfig) -> Store:
    """The store the config names: PostgreSQL for a ``store_url``, else the SQLite file."""
    if config.store_url:
        # Imported only here: psycopg is the optional ``postgres`` extra.
        from coordinator.store.postgres import PostgresStore

        return PostgresStore(
            config.store_url, pool_size=config.store_pool, retry_budget_s=config.store_retry_s
        )
    return SqliteStore(config.database)


def new_event_bus(config: CoordinatorConfig, run_retention_s: float | None = None) -> EventBus:
    """The event bus the config names: NATS JetStream for an ``events_url``, else in-process.
    The stream keeps events for ``--events-retention``, else as long as runs are kept
    (``run_retention_s``; None: retention off, kept until deleted by hand)."""
    if config.events_url:
        # Imported only here: nats-py is the optional ``nats`` extra.
        from coordinator.events.jetstream import JetStreamEventBus

        return JetStreamEventBus(
            config.events_url,
            config.events_stream,
            config.events_retention_s if config.events_retention_s is not None else (run_retention_s or 0.0),
            credentials=config.events_credentials,
        )
    return InMemoryEventBus()


async def _close(closer: Closer) -> None:
    try:
        await closer()
    except Exception:
        logger.exception("closing a server hook failed")


async def _set_health(servicer: object, service: str, serving: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    result = servicer.set(service, status)  # type: ignore[attr-defined]
    if asyncio.iscoroutine(result):
        await result


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(TraceContextFilter())  # trace_id/span_id of the current span on every record
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # psycopg and its pool warn once per connection they lose or fail to make, many times while
    # PostgreSQL is away; the store says so itself, once (coordinator/store/pg_retry.py).
    quiet = logging.DEBUG if root.level <= logging.DEBUG else logging.ERROR
    for name in ("psycopg", "psycopg.pool"):
        logging.getLogger(name).setLevel(quiet)
    logging.getLogger("grpc._cython.cygrpc").addFilter(ClientGoneFilter())


async def serve(
    config: CoordinatorConfig,
    hooks: list[ServerHook] | None = None,
    on_started: Callable[[Coordinator], None] | None = None,
) -> None:
    """Run until SIGTERM/SIGINT, then shut down cleanly."""
    coordinator = Coordinator(config, hooks=list(hooks or []))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    await coordinator.start()
    try:
        if on_started is not None:
            on_started(coordinator)
        await stop.wait()
        logger.info("shutting down")
    finally:
        await coordinator.stop()
