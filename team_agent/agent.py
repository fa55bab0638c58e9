"""The agent's worker: register, long-poll, run tasks on their engines, report, reload, stop.

Life of a task (one ``_Runner``): receive → fetch the pinned contract (cached by exact version)
→ validate input → ``adapter.submit`` / ``adapter.wait`` while heartbeating → validate output →
write the result to the outbox → deliver it (retrying with jittered backoff until the
coordinator answers). A heartbeat answer may cancel the task (run cancelled) or stop it silently
(lease lost); the task's deadline and a shutdown past its grace period stop it too.

A task failing on its engine is data: it becomes a FailTask, never an exception in a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.trace import Status, StatusCode, Tracer

from contracts.errors import (
    FileProblemsError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RemoteError,
    TlsError,
    UnauthenticatedError,
    UnreachableError,
    Violation,
)
from contracts.jsontext import loads
from contracts.model import PLATFORM_TIMEOUTS, Contract
from contracts.validation import validate_payload
from team_agent.client import (
    AgentStream,
    AgentTask,
    BindingInfo,
    GatewayClient,
    HeartbeatAnswer,
    Registration,
    StreamResult,
    StreamUnsupported,
    TaskFailure,
    new_request_id,
    registration_request,
    stream_hello,
)
from team_agent.config import (
    AgentConfig,
    BindingConfig,
    LoadedConfig,
    load_config,
    resolve_token,
    token_follows_provider,
)
from team_agent.engines.base import EngineAdapter, EngineFailure, Handle, TaskContext
from team_agent.logs import OutageLog
from team_agent.metrics import AgentMetrics
from team_agent.outbox import Outbox, OutboxEntry
from team_agent.redact import Redactor
from team_agent.tracing import extract_context, inject_context

logger = logging.getLogger(__name__)

# What a task's outbox entry says of how it ended (metrics).
_OUTCOMES = {"complete": "succeeded", "fail": "failed", "release": "released"}
HEARTBEAT_FRACTION = 0.3  # heartbeat every 30% of the task's heartbeat timeout
MIN_HEARTBEAT_INTERVAL = 0.1
DEFAULT_POLL_WAIT = 20.0
MAX_DELIVERY_BACKOFF = 2.0
MAX_REGISTER_BACKOFF = 2.0
SHUTDOWN_DELIVERY_WAIT = 10.0
# A running agent whose token is refused says so as an error at most this often (seconds).
REFUSED_TOKEN_LOG_EVERY = 60.0
# v2: results are written to the outbox as one file per batch (one write and its fsyncs), at most
# OUTBOX_BATCH each: those that end while the previous batch is being written, or within
# OUTBOX_LINGER seconds of each other; a result that ends while no other task runs and no write is
# under way is written at once (docs/agent.md, "The wire").
OUTBOX_LINGER = 0.001
OUTBOX_BATCH = 64
# A stream that lived this long before it broke reconnects after the shortest backoff.
STREAM_HEALTHY_AFTER = 5.0
# A task still running after this long is logged at INFO (``running attempt ...``); one that ends
# sooner logs only its result's delivery (one INFO line per task; at DEBUG, both at once).
RUNNING_LOG_AFTER = 1.0


@dataclass
class AgentOptions:
    """How this agent process runs (from the command line), as opposed to what it serves."""

    agent_id: str
    state_dir: Path
    grace: float = 30.0
    reload_interval: float = 1.0
    poll_wait: float = DEFAULT_POLL_WAIT  # upper bound; the coordinator may suggest less


@dataclass
class _Binding:
    config: BindingConfig
    adapter: EngineAdapter
    inflight: int = 0
    dropped: bool = False


@dataclass
class _Control:
    """Why a running task must stop early (set by heartbeats or shutdown). Made on the loop."""

    # Done once the task must stop (a future, not an Event: the engine's wait races it directly,
    # with no task of its own waiting on an Event).
    stopped: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    reason: str = ""  # "cancel" | "lease_lost" | "shutdown"
    details: dict[str, Any] = field(default_factory=dict)

    def stop(self, reason: str) -> None:
        if not self.stopped.done():
            self.reason = reason
            self.stopped.set_result(None)


def _same_binding(a: BindingConfig, b: BindingConfig) -> bool:
    return a.engine == b.engine and a.options == b.options


def _is_sensitive(path: str, sensitive: tuple[str, ...], side: str) -> bool:
    for field_path in sensitive:
        head, _, rest = field_path.partition(".")
        if head != side:
            continue
        prefix = "$." + rest
        if path == prefix or path.startswith((prefix + ".", prefix + "[")):
            return True
    return False


def _log_running(level: int, task: AgentTask, engine: str, began: float) -> None:
    logger.log(
        level,
        "running attempt %s (%s/%s #%d) on %s, started %.1fs ago",
        task.attempt_id,
        task.run_id,
        task.step_id,
        task.attempt,
        engine,
        time.monotonic() - began,
    )


def _violations_payload(violations: list[Violation], contract: Contract, side: str) -> list[dict[str, str]]:
    """Violations as sent to the coordinator; messages about sensitive fields (which quote the
    value) are replaced."""
    out = []
    for violation in violations:
        message = violation.message
        if _is_sensitive(violation.path, contract.sensitive, side):
            message = "does not match the schema (value hidden: sensitive field)"
        out.append({"path": violation.path, "message": message})
    return out


class Agent:
    """One agent process. Build it in the entry point; ``run`` until ``stop`` is set."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        config_path: str | Path,
        options: AgentOptions,
        client: GatewayClient,
        tracer: Tracer,
        redactor: Redactor,
        loader: Callable[[str | Path], LoadedConfig] = load_config,
        meter: Meter | None = None,
    ) -> None:
        """``meter``: where the agent's metrics go (team_agent.metrics); None: nowhere."""
        self._config: AgentConfig = loaded.config
        self._secrets = loaded.secrets
        self._token_problem = ""  # the last problem re-reading the token, logged once
        self._token_check: asyncio.Task[bool] | None = None
        self._ever_registered = False
        self._refusal_logged_at = -REFUSED_TOKEN_LOG_EVERY
        self._bindings: dict[str, _Binding] = {
            key: _Binding(loaded.config.bindings[key], adapter) for key, adapter in loaded.adapters.items()
        }
        self._config_path = Path(config_path)
        self._options = options
        self._client = client
        self._tracer = tracer
        self._redactor = redactor
        self._loader = loader
        self._outbox = Outbox(options.state_dir / "outbox", owner=options.agent_id)
        self._contracts: dict[str, Contract] = {}
        self._random = random.Random()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._controls: dict[str, _Control] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._pollers: list[asyncio.Task[None]] = []
        self._polling = 0
        self._capacity_changed = asyncio.Event()
        self._registered = asyncio.Event()
        self._register_task: asyncio.Task[None] | None = None
        self._poll_wait = options.poll_wait
        self._stopping = False
        self._closing: set[asyncio.Task[None]] = set()
        self._outage = OutageLog(logger, lambda: self._config.coordinator)
        # The agent API in use: "v2" (one stream) unless the config says v1 or the coordinator
        # serves only v1. The stream, while one is open; free slots granted on it and not yet
        # used by an offer; results waiting to be written to the outbox as one batch.
        self._protocol = loaded.config.protocol
        self._stream: AgentStream | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._stream_ready = asyncio.Event()
        self._granted = 0
        # Tasks whose engine is done and whose result is out (their runner waits for the outbox
        # write): their slots are free again for the coordinator's offers.
        self._finishing: set[str] = set()
        self._batch: list[tuple[OutboxEntry, asyncio.Future[None]]] = []
        self._batch_timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        # Set when the coordinator refused to register this agent (wrong token, another team's
        # contracts): retrying cannot help, so ``run`` stops and raises it (exit 3).
        self.refusal: RemoteError | None = None
        self._metrics = (
            None
            if meter is None
            else AgentMetrics(
                meter, running=self._running_per_contract, undelivered=lambda: len(self._deliveries)
            )
        )

    def _running_per_contract(self) -> dict[str, int]:
        return {key: binding.inflight for key, binding in list(self._bindings.items())}

    # -- public -------------------------------------------------------------------------------

    @property
    def config(self) -> AgentConfig:
        return self._config

    @property
    def agent_id(self) -> str:
        return self._options.agent_id

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down gracefully. Raises UnauthenticatedError or
        PermissionDeniedError (after shutting down) when the coordinator refuses to register it."""
        self._stop = stop
        logger.info(
            "agent %s of team %s starting: %s",
            self.agent_id,
            self._config.team,
            ", ".join(f"{k} ({b.config.engine})" for k, b in self._bindings.items()),
        )
        watcher = asyncio.create_task(self._watch_config())
        # Results left by a previous run go first.
        for entry in await self._outbox.pending():
            logger.info("delivering %s of attempt %s left in the outbox", entry.kind, entry.attempt_id)
            self._spawn_delivery(entry)
        if self._protocol == "v2":
            self._stream_task = asyncio.create_task(self._stream_loop())
        else:
            self._request_registration()
            self._restart_pollers()
        try:
            await stop.wait()
        finally:
            watcher.cancel()
            await self._shutdown()
        if self.refusal is not None:
            raise self.refusal

    # -- registration and polling -------------------------------------------------------------

    def _binding_infos(self) -> list[BindingInfo]:
        return [
            BindingInfo(
                contract=b.config.contract,
                major=b.config.major,
                engine=b.config.engine,
                fingerprint=b.config.fingerprint,
            )
            for b in self._bindings.values()
        ]

    async def _connect_failed(self, exc: RemoteError, delay: float, what: str) -> float | None:
        """After a failed registration or stream open: the delay before the next try, or None
        when the agent stops trying (its token, certificate or team refused, overload)."""
        if isinstance(exc, UnauthenticatedError):
            return await self._token_refused(exc, delay)
        if isinstance(exc, PermissionDeniedError | TlsError):
            self._refused(exc)
            return None
        if isinstance(exc, OverloadedError):
            self._overloaded(exc)
            return None
        level = logging.DEBUG if isinstance(exc, UnreachableError) else logging.ERROR
        logger.log(level, "%s, retrying in %.1fs: %s", what, delay, exc)
        if isinstance(exc, UnreachableError):
            self._outage.failed(exc)
        await asyncio.sleep(self._jitter(delay))
        return min(delay * 2, MAX_REGISTER_BACKOFF)

    def _request_registration(self) -> None:
        self._registered.clear()
        if self._register_task is not None and not self._register_task.done():
            self._register_task.cancel()
        self._register_task = asyncio.create_task(self._register())

    async def _register(self) -> None:
        delay = 0.2
        while not self._stopping:
            try:
                registration = await self._client.register(
                    agent_id=self.agent_id,
                    bindings=self._binding_infos(),
                    concurrency=self._config.concurrency,
                    team_retry=self._config.retry,
                    team_timeouts=self._config.timeouts,
                    overrides=self._config.overrides,
                )
            except RemoteError as exc:
                retry = await self._connect_failed(exc, delay, "registration failed")
                if retry is None:
                    return
                delay = retry
                continue
            self._outage.recovered()
            for warning in registration.warnings:
                logger.warning("coordinator: %s", warning)
            if registration.poll_wait > 0:
                self._poll_wait = min(self._options.poll_wait, registration.poll_wait)
            logger.info("registered %d binding(s) with the coordinator", len(self._bindings))
            self._ever_registered = True
            self._registered.set()
            return

    async def _token_refused(self, exc: UnauthenticatedError, delay: float) -> float | None:
        """The coordinator refused the token: stop (None) or the next backoff to retry with."""
        if not self._ever_registered or not self._follows_token():
            self._refused(exc)
            return None
        # A running agent whose token is read from a secret file: the token was rotated
        # or revoked; keep the tasks in hand and wait for the file to change.
        if await self.check_token():
            return delay
        # An error once a minute at the most, not at every retry.
        now = time.monotonic()
        loud = now - self._refusal_logged_at >= REFUSED_TOKEN_LOG_EVERY
        if loud:
            self._refusal_logged_at = now
        logger.log(
            logging.ERROR if loud else logging.DEBUG,
            "the coordinator refuses this agent's token (%s): keeping %d running task(s) and"
            " %d undelivered result(s), reading the token's secret again; retrying in %.1fs",
            exc,
            len(self._running),
            len(self._deliveries),
            delay,
        )
        await asyncio.sleep(self._jitter(delay))
        return min(delay * 2, MAX_REGISTER_BACKOFF)

    # -- the v2 stream ------------------------------------------------------------------------

    def _registration(self) -> Any:
        return registration_request(
            agent_id=self.agent_id,
            bindings=self._binding_infos(),
            concurrency=self._config.concurrency,
            team_retry=self._config.retry,
            team_timeouts=self._config.timeouts,
            overrides=self._config.overrides,
        )

    def _use_v1(self) -> None:
        self._protocol = "v1"
        self._stream_ready.set()  # deliveries waiting for a stream take the unary calls
        self._request_registration()
        self._restart_pollers()

    async def _stream_loop(self) -> None:
        """Keep one stream open (reconnecting with backoff, across the ``coordinator:`` list)."""
        delay = 0.2
        while not self._stopping:
            self._granted = max(0, self._config.concurrency - len(self._running))
            try:
                stream, registration = await self._client.open_stream(
                    self._registration(),
                    contracts=sorted(self._bindings),
                    credit=self._granted,
                    on_task=self._on_stream_task,
                )
            except StreamUnsupported as exc:
                logger.info("%s (an older coordinator): using the v1 agent API", exc)
                self._granted = 0
                self._use_v1()
                return
            except RemoteError as exc:
                retry = await self._connect_failed(exc, delay, "connecting to the coordinator failed")
                if retry is None:
                    return
                delay = retry
                continue
            self._outage.recovered()
            self._registered_with(registration)
            stream.registered = self._registered_with
            self._stream = stream
            self._stream_ready.set()
            self._top_up()
            if self._stopping:
                stream.drain()
            began = time.monotonic()
            error = await stream.wait_closed()
            self._stream_ready.clear()
            self._stream = None
            self._granted = 0
            await stream.close()
            if self._stopping:
                return
            if time.monotonic() - began > STREAM_HEALTHY_AFTER:
                delay = 0.2
            if isinstance(error, UnauthenticatedError):
                retry = await self._token_refused(error, delay)
                if retry is None:
                    return
                delay = retry
                continue
            if isinstance(error, PermissionDeniedError):
                self._refused(error)
                return
            if isinstance(error, UnreachableError):
                self._client.unreachable(stream.address, error)
                self._outage.failed(error)
                logger.debug("the stream to the coordinator ended, reconnecting in %.1fs: %s", delay, error)
            else:
                logger.warning("the stream to the coordinator ended, reconnecting in %.1fs: %s", delay, error)
            await asyncio.sleep(self._jitter(delay))
            delay = min(delay * 2, MAX_REGISTER_BACKOFF)

    def _registered_with(self, registration: Registration) -> None:
        for warning in registration.warnings:
            logger.warning("coordinator: %s", warning)
        logger.info("registered %d binding(s) with the coordinator (agent API v2)", len(self._bindings))
        self._ever_registered = True
        self._registered.set()

    def _on_stream_task(self, task: AgentTask) -> None:
        self._granted -= 1
        if self._stopping:  # offered as the agent stops: handed back at once
            entry = self._entry(task, "release", reason="agent shutting down")
            written = asyncio.ensure_future(self._outbox.put(entry))
            self._spawn_delivery(entry, written)
            return
        self._start_task(task)

    def _top_up(self) -> None:
        """Grant the coordinator the slots free now (never more than concurrency in all)."""
        stream = self._stream
        if stream is None or not stream.open or self._stopping:
            return
        busy = len(self._running) - len(self._finishing)
        free = self._config.concurrency - busy - self._granted
        if free > 0:
            self._granted += free
            stream.grant(free)

    async def _open_stream(self) -> AgentStream | None:
        """The open stream (waiting for one); None once the agent speaks v1."""
        while self._protocol == "v2":
            stream = self._stream
            if stream is not None and stream.open:
                return stream
            self._stream_ready.clear()
            await self._stream_ready.wait()
        return None

    def _write_batched(self, entry: OutboxEntry) -> asyncio.Future[None]:
        """Write ``entry`` to the outbox with the others that end within ``OUTBOX_LINGER``."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batch.append((entry, future))
        if self._writing is not None:
            return future  # written with the others when the write under way is done
        # The runners of the batch's entries are still running (they wait for the write).
        others = len(self._running) - len(self._batch)
        if len(self._batch) >= OUTBOX_BATCH or others <= 0:
            self._flush_batch()
        elif self._batch_timer is None:
            self._batch_timer = asyncio.get_running_loop().call_later(OUTBOX_LINGER, self._flush_batch)
        return future

    def _flush_batch(self) -> None:
        if self._batch_timer is not None:
            self._batch_timer.cancel()
            self._batch_timer = None
        if self._writing is None and self._batch:
            self._writing = asyncio.create_task(self._write_batches())

    async def _write_batches(self) -> None:
        """Write the batch, then whatever gathered meanwhile, until none is left (one at a time:
        group commit)."""
        try:
            while self._batch:
                batch, self._batch = self._batch[:OUTBOX_BATCH], self._batch[OUTBOX_BATCH:]
                try:
                    await self._outbox.put_batch([entry for entry, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
        finally:
            self._writing = None

    def _refused(self, exc: RemoteError) -> None:
        if isinstance(exc, TlsError):  # says which side speaks TLS and what to set
            self.refusal = exc
            if self._stop is not None:
                self._stop.set()
            return
        where = f"the coordinator at {self._config.coordinator} refused agent {self.agent_id} of team {self._config.team}"
        if isinstance(exc, UnauthenticatedError):
            hint = f"check the token in {self._config_path} (accord team rotate-token {self._config.team} gives a new one)"
        else:
            hint = (
                f"check that the token in {self._config_path} is team {self._config.team}'s "
                f"and that implements: lists only team {self._config.team}'s contracts"
            )
        # Not logged here: the entry point prints it once, as the reason for exit 3.
        self.refusal = type(exc)(message=f"{where}: {exc}; {hint}")
        if self._stop is not None:
            self._stop.set()

    def _overloaded(self, exc: OverloadedError) -> None:
        """One call was refused as overloaded for the whole ``overload_patience`` (the client
        retried it after every hint): stop and exit 3 rather than retry an overloaded coordinator
        forever. Undelivered results stay in the outbox for the next start."""
        if self.refusal is not None:
            return
        self.refusal = OverloadedError(
            message=(
                f"agent {self.agent_id} of team {self._config.team} stops: {exc} (overload_patience"
                f" {self._config.overload_patience:g}s in {self._config_path}); undelivered results"
                f" wait in {self._outbox.directory} for the next start; raise the coordinator's"
                " --max-inflight or add coordinators if this happens under normal load"
            )
        )
        if self._stop is not None:
            self._stop.set()

    def _restart_pollers(self) -> None:
        for poller in self._pollers:
            poller.cancel()
        self._pollers = [asyncio.create_task(self._poll_loop()) for _ in range(self._config.concurrency)]

    def _has_capacity(self) -> bool:
        return len(self._running) + self._polling < self._config.concurrency

    async def _poll_loop(self) -> None:
        delay = 0.2
        while not self._stopping:
            await self._registered.wait()
            while not self._has_capacity():
                self._capacity_changed.clear()
                await self._capacity_changed.wait()
            self._polling += 1
            contracts = sorted(self._bindings)
            try:
                task = await self._client.poll(
                    agent_id=self.agent_id, wait=self._poll_wait, contracts=contracts
                )
            except OverloadedError as exc:
                self._overloaded(exc)
                return
            except RemoteError as exc:
                if isinstance(exc, UnauthenticatedError) and await self.check_token():
                    continue  # the token was rotated: poll again with the new one at once
                # After an outage the coordinator may not know us any more: register again.
                level = logging.DEBUG if isinstance(exc, UnreachableError) else logging.WARNING
                logger.log(level, "poll failed, retrying in %.1fs: %s", delay, exc)
                if isinstance(exc, UnreachableError) and self._registered.is_set():
                    self._outage.failed(exc)
                if self._registered.is_set():
                    self._request_registration()
                await asyncio.sleep(self._jitter(delay))
                delay = min(delay * 2, MAX_REGISTER_BACKOFF)
                continue
            finally:
                self._polling -= 1
                self._capacity_changed.set()
            delay = 0.2
            if task is not None:
                self._start_task(task)

    def _start_task(self, task: AgentTask) -> None:
        control = _Control()
        self._controls[task.attempt_id] = control
        runner = asyncio.create_task(self._run_task(task, control))
        self._running[task.attempt_id] = runner

        def finished(_: asyncio.Task[None]) -> None:
            self._running.pop(task.attempt_id, None)
            self._finishing.discard(task.attempt_id)
            self._controls.pop(task.attempt_id, None)
            self._capacity_changed.set()
            self._top_up()

        runner.add_done_callback(finished)

    # -- one task -----------------------------------------------------------------------------

    async def _run_task(self, task: AgentTask, control: _Control) -> None:
        binding = self._bindings.get(task.binding_key)
        entry: OutboxEntry | None
        if binding is None or binding.dropped:
            logger.warning(
                "received %s for %s, which this agent no longer serves: handing it back",
                task.attempt_id,
                task.binding_key,
            )
            entry = self._entry(task, "release", reason=f"agent no longer serves {task.binding_key}")
        else:
            binding.inflight += 1
            began = time.monotonic()
            # One INFO line per task (its result's delivery, below): a task still running after
            # RUNNING_LOG_AFTER says so then; at DEBUG every task says so as it starts.
            engine = binding.config.engine
            running_line: asyncio.TimerHandle | None = None
            if logger.isEnabledFor(logging.DEBUG):
                _log_running(logging.DEBUG, task, engine, began)
            else:
                running_line = asyncio.get_running_loop().call_later(
                    RUNNING_LOG_AFTER, _log_running, logging.INFO, task, engine, began
                )
            entry = None
            try:
                entry = await self._execute(task, binding, control)
            except Exception as exc:  # a bug, not a task failure: still report it as one
                logger.exception("task %s crashed in the agent", task.attempt_id)
                entry = self._failure_entry(
                    task, TaskFailure(type(exc).__name__, f"agent error: {exc}", retryable=True)
                )
            finally:
                if running_line is not None:
                    running_line.cancel()
                binding.inflight -= 1
                if self._metrics is not None:
                    outcome = _OUTCOMES.get(entry.kind, entry.kind) if entry is not None else "stopped"
                    self._metrics.task_ended(task.binding_key, outcome, time.monotonic() - began)
                if binding.dropped and binding.inflight == 0:
                    self._close_adapter_later(binding)
        if entry is not None:
            # The first delivery goes out while the entry is being made durable (two fsyncs, often
            # several ms): no crash window is added, since a result lost before the write completes
            # was lost before too, and the entry is removed only once both the write and the
            # delivery are done. Awaiting the write here keeps shutdown waiting for it.
            if self._protocol == "v2":
                written = self._write_batched(entry)
                # The slot is free: granted again in the same message as the result goes in.
                self._finishing.add(task.attempt_id)
                self._top_up()
            else:
                written = asyncio.ensure_future(self._outbox.put(entry))
            self._spawn_delivery(entry, written)
            await written

    def _entry(self, task: AgentTask, kind: str, **fields: Any) -> OutboxEntry:
        return OutboxEntry(
            kind=kind,
            agent_id=self.agent_id,
            attempt_id=task.attempt_id,
            request_id=new_request_id(),
            run_id=task.run_id,
            step_id=task.step_id,
            **fields,
        )

    def _failure_entry(self, task: AgentTask, failure: TaskFailure) -> OutboxEntry:
        logger.warning(
            "attempt %s of %s/%s failed: %s: %s",
            task.attempt,
            task.run_id,
            task.step_id,
            failure.type,
            failure.message,
            extra={"accord_run_id": task.run_id, "accord_step_id": task.step_id},
        )
        return self._entry(
            task,
            "fail",
            failure={
                "type": failure.type,
                "message": self._redactor.text(failure.message),
                "retryable": failure.retryable,
                "details": self._redactor.value(dict(failure.details)),
            },
        )

    async def _contract(self, ref: str) -> Contract:
        contract = self._contracts.get(ref)
        if contract is None:
            delay = 0.2
            for attempt in range(5):
                try:
                    contract = await self._client.get_contract(ref)
                    break
                except UnreachableError:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(self._jitter(delay))
                    delay *= 2
            assert contract is not None
            self._contracts[ref] = contract
        return contract

    def _span_attributes(self, task: AgentTask) -> dict[str, Any]:
        return {
            "accord.run_id": task.run_id,
            "accord.step_id": task.step_id,
            "accord.attempt": task.attempt,
            "accord.attempt_id": task.attempt_id,
            "accord.contract": task.contract,  # the coordinator's form: name, version beside it
            "accord.contract_version": task.contract_version,
            "accord.team": self._config.team,
            "accord.agent_id": self.agent_id,
        }

    async def _execute(self, task: AgentTask, binding: _Binding, control: _Control) -> OutboxEntry | None:
        attributes = self._span_attributes(task)
        # The first heartbeat is due only after an interval: its task is made then (most tasks
        # end before, and need none), from a timer cancelled when the task ends.
        heartbeats: list[asyncio.Task[None]] = []
        timer = asyncio.get_running_loop().call_later(
            self._heartbeat_interval(task),
            lambda: heartbeats.append(asyncio.create_task(self._heartbeat_loop(task, control))),
        )
        try:
            with self._tracer.start_as_current_span(
                "agent.receive", context=extract_context(task.trace_context), attributes=attributes
            ) as receive_span:
                entry = await self._execute_in_span(task, binding, control, attributes)
                if entry is not None and entry.kind == "fail":
                    receive_span.set_status(Status(StatusCode.ERROR, entry.failure.get("message", "")))
                    receive_span.set_attribute("accord.error_type", entry.failure.get("type", ""))
                return entry
        finally:
            timer.cancel()
            for heartbeat in heartbeats:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat

    async def _execute_in_span(
        self, task: AgentTask, binding: _Binding, control: _Control, attributes: dict[str, Any]
    ) -> OutboxEntry | None:
        ref = f"{task.contract}@{task.contract_version}"
        try:
            contract = await self._contract(ref)
        except RemoteError as exc:
            return self._failure_entry(
                task,
                TaskFailure("ContractUnavailable", f"cannot fetch contract {ref}: {exc}", retryable=True),
            )

        # A check that passes leaves no span (two spans fewer per task: a third of the agent's
        # tracing work); one that fails is an error span of its own, naming what broke.
        try:
            value = loads(task.input_json) if task.input_json else None
        except ValueError:
            self._failed_check("agent.validate_input", attributes, "input is not JSON")
            return self._failure_entry(
                task, TaskFailure("ContractViolation", f"the input of {ref} is not JSON", retryable=False)
            )
        violations = validate_payload(contract.input_schema, value, "input")
        if violations:
            return self._check_failed(
                task, contract, violations, "input", f"input breaks contract {ref}", attributes, {}
            )

        engine = binding.config.engine
        with self._tracer.start_as_current_span(
            f"engine.{engine}", attributes={**attributes, "accord.engine": engine}
        ) as engine_span:
            context = TaskContext(
                task_id=task.task_id,
                attempt_id=task.attempt_id,
                attempt=task.attempt,
                run_id=task.run_id,
                step_id=task.step_id,
                workflow=task.workflow,
                contract=task.contract,
                contract_version=task.contract_version,
                idempotency_key=task.idempotency_key,
                trace_context=inject_context(),
                deadline=self._deadline(task),
            )
            outcome = await self._drive(binding.adapter, context, value, control)
            if isinstance(outcome, TaskFailure):
                engine_span.set_status(Status(StatusCode.ERROR, outcome.message))
                engine_span.set_attribute("accord.error_type", outcome.type)
                if outcome.type == "_released":
                    return self._entry(task, "release", reason=outcome.message)
                if outcome.type == "_lease_lost":
                    logger.info("lease of %s lost: its result is dropped", task.attempt_id)
                    return None
                return self._failure_entry(task, outcome)
            output = outcome

        violations = validate_payload(contract.output_schema, output, "output")
        if violations:
            what = f"the {engine} engine's output breaks contract {ref}"
            return self._check_failed(task, contract, violations, "output", what, attributes, control.details)
        return self._entry(
            task,
            "complete",
            output_json=self._redactor.json(output),
            details=self._redactor.value(control.details),
        )

    def _check_failed(
        self,
        task: AgentTask,
        contract: Contract,
        violations: list[Violation],
        side: str,
        what: str,
        attributes: dict[str, Any],
        details: Mapping[str, Any],
    ) -> OutboxEntry:
        """The non-retryable failure of a payload (``side``: input or output) that breaks the
        contract (``what`` says so), with its error span ``agent.validate_<side>``."""
        payload = _violations_payload(violations, contract, side)
        message = f"{what}: " + "; ".join(f"{v['path']}: {v['message']}" for v in payload)
        self._failed_check(f"agent.validate_{side}", attributes, message)
        failure = TaskFailure(
            "ContractViolation", message, retryable=False, details={f"{side}_violations": payload, **details}
        )
        return self._failure_entry(task, failure)

    def _failed_check(self, name: str, attributes: dict[str, Any], message: str) -> None:
        """An error span ``name`` (a child of the current one) saying why a check failed."""
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            span.set_status(Status(StatusCode.ERROR, message))

    def _deadline(self, task: AgentTask) -> float | None:
        if task.deadline:
            return task.deadline
        start_to_close = task.timeouts.start_to_close or self._config.timeouts.start_to_close
        return time.time() + start_to_close if start_to_close else None

    async def _drive(
        self, adapter: EngineAdapter, context: TaskContext, value: Any, control: _Control
    ) -> Any | TaskFailure:
        """Run the engine until it answers or something stops it; an output, or a failure."""
        try:
            handle: Handle = await adapter.submit(context, value)
        except EngineFailure as failure:
            return TaskFailure(failure.type, failure.message, failure.retryable, failure.details)
        except Exception as exc:
            return TaskFailure(
                type(exc).__name__, f"the engine could not start the task: {exc}", retryable=True
            )
        control.details = handle.details
        waiter = asyncio.create_task(adapter.wait(handle))
        timeout = None if context.deadline is None else max(context.deadline - time.time(), 0.0)
        try:
            done, _ = await asyncio.wait(
                {waiter, control.stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            waiter.cancel()
            await adapter.cancel(handle)
            raise
        if waiter in done:
            try:
                return waiter.result()
            except EngineFailure as failure:
                return TaskFailure(
                    failure.type, failure.message, failure.retryable, {**handle.details, **failure.details}
                )
            except Exception as exc:
                return TaskFailure(type(exc).__name__, f"engine error: {exc}", True, handle.details)
        # Stopped early: stop the engine's work too.
        try:
            await adapter.cancel(handle)
        except Exception:
            logger.exception("cancelling %s on its engine failed", context.attempt_id)
        waiter.cancel()
        with contextlib.suppress(BaseException):
            await waiter
        reason = control.reason or "timeout"
        if reason == "cancel":
            return TaskFailure(
                "Cancelled", "the run was cancelled; the engine's work was stopped", False, handle.details
            )
        if reason == "lease_lost":
            return TaskFailure("_lease_lost", "lease lost", False)
        if reason == "shutdown":
            return TaskFailure("_released", "agent shutting down: grace period over", True)
        return TaskFailure(
            "Timeout", "the task ran past its deadline; the engine's work was stopped", True, handle.details
        )

    def _heartbeat_interval(self, task: AgentTask) -> float:
        timeout = (
            task.timeouts.heartbeat or self._config.timeouts.heartbeat or PLATFORM_TIMEOUTS.heartbeat or 30.0
        )
        return max(timeout * HEARTBEAT_FRACTION, MIN_HEARTBEAT_INTERVAL)

    async def _heartbeat_loop(self, task: AgentTask, control: _Control) -> None:
        """Heartbeats every interval from the first one's due time (when it is started)."""
        interval = self._heartbeat_interval(task)
        first = True
        while True:
            if not first:
                await asyncio.sleep(interval)
            first = False
            try:
                answer = await self._heartbeat(task.attempt_id, control.details)
            except NotFoundError:
                control.stop("lease_lost")
                return
            except RemoteError as exc:
                # Keep working through an outage; the result waits in the outbox if need be.
                logger.debug("heartbeat of %s failed: %s", task.attempt_id, exc)
                if isinstance(exc, UnauthenticatedError):
                    await self.check_token()
                continue
            if answer.lease_lost:
                control.stop("lease_lost")
                return
            if answer.cancel_requested:
                control.stop("cancel")
                return

    async def _heartbeat(self, attempt_id: str, details: dict[str, Any]) -> HeartbeatAnswer:
        if self._protocol == "v2":
            stream = self._stream
            if stream is None or not stream.open:
                raise UnreachableError("no stream to the coordinator is open now")
            return await stream.heartbeat(attempt_id, details)
        return await self._client.heartbeat(agent_id=self.agent_id, attempt_id=attempt_id, details=details)

    # -- delivery -----------------------------------------------------------------------------

    def _jitter(self, delay: float) -> float:
        return delay * self._random.uniform(0.5, 1.5)

    def _spawn_delivery(self, entry: OutboxEntry, written: asyncio.Future[None] | None = None) -> None:
        delivery = asyncio.create_task(self._deliver(entry, written))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)

    async def _send(self, entry: OutboxEntry) -> bool:
        stream = await self._open_stream() if self._protocol == "v2" else None
        if stream is not None:
            failure = None
            if entry.kind == "fail":
                failure = TaskFailure(
                    type=entry.failure["type"],
                    message=entry.failure["message"],
                    retryable=entry.failure["retryable"],
                    details=entry.failure.get("details") or {},
                )
            return await stream.report(
                StreamResult(
                    kind=entry.kind,
                    agent_id=entry.agent_id,
                    attempt_id=entry.attempt_id,
                    request_id=entry.request_id,
                    output_json=entry.output_json,
                    details=entry.details,
                    failure=failure,
                    reason=entry.reason,
                )
            )
        client = self._client
        if entry.kind == "complete":
            return await client.complete(
                agent_id=entry.agent_id,
                attempt_id=entry.attempt_id,
                output_json=entry.output_json,
                request_id=entry.request_id,
                details=entry.details,
            )
        if entry.kind == "fail":
            failure = TaskFailure(
                type=entry.failure["type"],
                message=entry.failure["message"],
                retryable=entry.failure["retryable"],
                details=entry.failure.get("details") or {},
            )
            return await client.fail(
                agent_id=entry.agent_id,
                attempt_id=entry.attempt_id,
                failure=failure,
                request_id=entry.request_id,
            )
        return await client.release(
            agent_id=entry.agent_id,
            attempt_id=entry.attempt_id,
            reason=entry.reason,
            request_id=entry.request_id,
        )

    def _refused_output_entry(self, entry: OutboxEntry, exc: RemoteError) -> OutboxEntry:
        reason = "; ".join([exc.message, *exc.details]) or type(exc).__name__
        return dataclasses.replace(
            entry,
            kind="fail",
            request_id=new_request_id(),
            output_json="",
            details={},
            failure={
                "type": "OutputRefused",
                "message": self._redactor.text(f"the coordinator refused this attempt's output: {reason}"),
                "retryable": False,
                "details": {},
            },
            created=time.time(),
        )

    async def _deliver(self, entry: OutboxEntry, written: asyncio.Future[None] | None = None) -> None:
        delay = 0.2
        while True:
            try:
                accepted = await self._send(entry)
            except (NotFoundError, InvalidArgumentError, PermissionDeniedError) as exc:
                if entry.kind == "complete" and isinstance(exc, InvalidArgumentError):
                    # Never dropped silently (the run would wait for a heartbeat timeout): the
                    # attempt fails, non-retryable, saying why the coordinator refused it.
                    refused = self._refused_output_entry(entry, exc)
                    await self._outbox.put(refused)
                    self._spawn_delivery(refused)
                    logger.error(
                        "coordinator refused the output of attempt %s (%s): reporting it as a"
                        " non-retryable failure",
                        entry.attempt_id,
                        exc,
                    )
                else:
                    logger.error(
                        "coordinator refused %s of attempt %s, dropping it: %s",
                        entry.kind,
                        entry.attempt_id,
                        exc,
                    )
                break
            except UnauthenticatedError as exc:
                if await self.check_token():
                    continue  # rotated: send it again with the new token at once
                logger.error(
                    "coordinator refused our token for %s of %s (kept in the outbox, retrying): %s",
                    entry.kind,
                    entry.attempt_id,
                    exc,
                )
            except RemoteError as exc:
                if isinstance(exc, OverloadedError):
                    self._overloaded(exc)  # the entry stays in the outbox for the next start
                    return
                logger.debug("delivery of %s for %s failed: %s", entry.kind, entry.attempt_id, exc)
            else:
                if accepted:
                    logger.info(
                        "%s of attempt %s (%s/%s) delivered",
                        entry.kind,
                        entry.attempt_id,
                        entry.run_id,
                        entry.step_id,
                    )
                else:
                    logger.info(
                        "%s of attempt %s ignored: the attempt is no longer current",
                        entry.kind,
                        entry.attempt_id,
                    )
                break
            await asyncio.sleep(self._jitter(delay))
            delay = min(delay * 2, MAX_DELIVERY_BACKOFF)
        if written is not None:
            try:
                await asyncio.shield(written)  # never remove a file that is still being written
            except Exception:
                return  # the write failed (logged by the runner): there is nothing to remove
        await self._outbox.remove(entry)

    # -- reload -------------------------------------------------------------------------------

    def _follows_token(self) -> bool:
        return token_follows_provider(self._config, self._secrets)

    async def check_token(self) -> bool:
        """Read the token from its secret again (when it comes from a provider whose values
        change, e.g. a secret file); True when it changed. From then on every call uses the new
        token: in-flight tasks keep running, and results refused with the old one are sent again.
        Concurrent callers share one read."""
        if not self._follows_token():
            return False
        if self._token_check is None or self._token_check.done():
            self._token_check = asyncio.create_task(self._reread_token())
        return await asyncio.shield(self._token_check)

    async def _reread_token(self) -> bool:
        config, provider = self._config, self._secrets
        assert provider is not None
        try:
            token = await asyncio.to_thread(resolve_token, config, provider)
        except Exception as exc:  # a missing file, a provider error: keep the token in use
            problem = (
                f"cannot read the token again from the {config.secrets_provider} secrets provider: {exc}"
            )
            if problem != self._token_problem:
                logger.warning("%s; keeping the token in use", problem)
                self._token_problem = problem
            return False
        self._token_problem = ""
        if token == self._config.token or self._config is not config:
            return False  # unchanged, or a config reload took over meanwhile
        self._redactor.add([token])
        self._config = dataclasses.replace(config, token=token, secret_values=config.secret_values | {token})
        logger.info(
            "token reloaded from the %s secrets provider: the next calls use it (%d task(s) running on)",
            config.secrets_provider,
            len(self._running),
        )
        return True

    async def _watch_config(self) -> None:
        seen = self._config.digest
        while True:
            await asyncio.sleep(self._options.reload_interval)
            await self.check_token()
            try:
                data = await asyncio.to_thread(self._config_path.read_bytes)
            except OSError as exc:
                logger.warning("cannot read %s for reload: %s", self._config_path, exc)
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest == seen:
                continue
            seen = digest
            try:
                loaded = await asyncio.to_thread(self._loader, self._config_path)
            except FileProblemsError as exc:
                for problem in exc.problems:
                    logger.error("config change not applied, keeping the running config: %s", problem)
                continue
            await self._apply(loaded)

    async def _apply(self, loaded: LoadedConfig) -> None:
        new = loaded.config
        self._redactor.add(new.secret_values)
        old = self._config
        if new.team != old.team or new.coordinator != old.coordinator or new.tls != old.tls:
            logger.error(
                "config change not applied: changing team, coordinator or tls needs a restart (%s)",
                new.source,
            )
            for adapter in loaded.adapters.values():
                await adapter.close()
            return
        bindings: dict[str, _Binding] = {}
        added: list[str] = []
        changed: list[str] = []
        for key, adapter in loaded.adapters.items():
            current = self._bindings.get(key)
            if current is not None and _same_binding(current.config, new.bindings[key]):
                bindings[key] = current
                await adapter.close()
            else:
                bindings[key] = _Binding(new.bindings[key], adapter)
                (changed if current is not None else added).append(key)
        removed = [key for key in self._bindings if key not in bindings]
        for key, binding in self._bindings.items():
            if bindings.get(key) is not binding:
                binding.dropped = True
                if binding.inflight == 0:
                    self._close_adapter_later(binding)
        self._bindings = bindings
        self._config = new
        self._client.overload_patience = new.overload_patience
        self._secrets = loaded.secrets
        logger.info(
            "config reloaded: added %s, changed %s, removed %s, concurrency %d",
            added or "none",
            changed or "none",
            removed or "none",
            new.concurrency,
        )
        if new.protocol != old.protocol:
            logger.error("protocol: %s takes effect at the next start (%s)", new.protocol, new.source)
        if self._protocol == "v2":
            stream = self._stream
            if stream is not None and stream.open:
                stream.hello(stream_hello(self._registration(), sorted(self._bindings)))
                self._top_up()
            # else: the next stream opened registers the new config
        else:
            self._request_registration()
            self._restart_pollers()

    def _close_adapter_later(self, binding: _Binding) -> None:
        async def close() -> None:
            try:
                await binding.adapter.close()
            except Exception:
                logger.exception(
                    "closing the %s adapter of %s failed", binding.config.engine, binding.config.key
                )

        closing = asyncio.create_task(close())
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    # -- shutdown -----------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        self._stopping = True
        if self._stream is not None:
            self._stream.drain()  # no more offers
        for poller in self._pollers:
            poller.cancel()
        if self._register_task is not None:
            self._register_task.cancel()
        running = list(self._running.values())
        if running:
            logger.info("stopping: waiting up to %gs for %d task(s)", self._options.grace, len(running))
            _, pending = await asyncio.wait(running, timeout=self._options.grace)
            if pending:
                logger.warning("grace period over: handing %d task(s) back", len(pending))
                for control in list(self._controls.values()):
                    control.stop("shutdown")
                await asyncio.wait(pending, timeout=SHUTDOWN_DELIVERY_WAIT)
        if self._deliveries:
            # Whatever is not delivered by then is on disk and goes first at the next start.
            wait = min(SHUTDOWN_DELIVERY_WAIT, max(self._options.grace, 1.0))
            _, undelivered = await asyncio.wait(list(self._deliveries), timeout=wait)
            for delivery in undelivered:
                delivery.cancel()
            if undelivered:
                logger.warning("%d result(s) stay in the outbox for the next start", len(undelivered))
        for binding in self._bindings.values():
            with contextlib.suppress(Exception):
                await binding.adapter.close()
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=5)
        await asyncio.gather(*self._pollers, return_exceptions=True)
        if self._stream_task is not None:
            self._stream_task.cancel()
            await asyncio.gather(self._stream_task, return_exceptions=True)
        if self._stream is not None:
            await self._stream.close()
        logger.info("agent %s stopped", self.agent_id)
