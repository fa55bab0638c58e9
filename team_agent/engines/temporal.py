"""The ``temporal`` engine: runs a task as one Temporal workflow execution, through Temporal's own
Python SDK (``temporalio``, the ``temporal`` extra: ``pip install 'accord[temporal]'``).

One task is one workflow execution (docs/engines/temporal.md):

1. start the configured workflow type on the configured task queue, with the task input as its
   single argument and the step's idempotency key as the workflow id. The id conflict policy
   ``USE_EXISTING`` makes a re-delivered task attach to the execution that is still running, and
   the reuse policy ``REJECT_DUPLICATE`` makes it attach to one that already closed; a later
   attempt after a failed (or cancelled, terminated, timed-out) execution starts the next id of
   the step (``<key>#2``, ...), so each attempt has an execution of its own;
2. the caller's trace context travels in the workflow's headers through Temporal's
   OpenTelemetry ``TracingInterceptor``: a worker with the same interceptor continues the trace;
3. await the result (the SDK long-polls the history), watching meanwhile for a workflow task
   that keeps failing (an unregistered workflow type, a bug in the workflow code), which would
   otherwise leave the execution running for ever;
4. map the outcome: the result as JSON; an ``ApplicationError`` with ``non_retryable`` to a
   failure Accord does not retry (its ``type`` becomes the failure's type); timeouts and other
   failures to retryable ones; a termination or cancellation from outside Accord to a failure
   that is not retried. Temporal's own message is kept in every case;
5. record the execution and its activities as spans, from the times in its history.

``with:`` keys::

    target_host: 127.0.0.1:7233          # required: the frontend's host:port
    namespace: default
    task_queue: payments                  # required
    workflow_type: ChargeCard             # required: the workflow's registered name
    args: ["${input}"]                    # the workflow's arguments: references into the input
    api_key: ${secret:TEMPORAL_API_KEY}   # optional (Temporal Cloud); turns TLS on
    tls: true                             # or {ca_cert, client_cert, client_key, server_name}
    execution_timeout: 1h                 # optional, the workflow's own execution timeout
    workflow_task_failure: fail           # or wait: leave a failing workflow task to be fixed
    poll_interval: 1s                     # first interval of the workflow-task watch ...
    max_poll_interval: 15s                # ... growing up to this
    check_namespace: true                 # check at agent start that the namespace exists
    timeout: 10s                          # connecting and the start check
    web_url: http://127.0.0.1:8233        # optional: links to the Web UI in failures
    terminate_after: 1m                   # optional: terminate a cancelled workflow still running then
    trace_history: true                   # record the execution and its activities as spans
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import quote

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

try:
    import temporalio.api.enums.v1 as temporal_enums
    import temporalio.api.taskqueue.v1 as temporal_taskqueue
    import temporalio.api.workflowservice.v1 as temporal_service
    from temporalio.client import (
        Client,
        WorkflowExecutionStatus,
        WorkflowFailureError,
        WorkflowHandle,
    )
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.contrib.opentelemetry import TracingInterceptor
    from temporalio.exceptions import (
        ActivityError,
        ApplicationError,
        CancelledError,
        ChildWorkflowError,
        FailureError,
        TerminatedError,
        WorkflowAlreadyStartedError,
    )
    from temporalio.exceptions import (
        TimeoutError as TemporalTimeoutError,  # not the builtin
    )
    from temporalio.service import RPCError, RPCStatusCode, TLSConfig
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"the temporal engine needs Temporal's Python SDK: pip install 'accord[temporal]' ({exc})"
    ) from exc

from team_agent.engines._http_util import Backoff, ConfigReader
from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

_KNOWN_KEYS = {
    "target_host",
    "namespace",
    "task_queue",
    "workflow_type",
    "api_key",
    "tls",
    "execution_timeout",
    "workflow_task_failure",
    "poll_interval",
    "max_poll_interval",
    "check_namespace",
    "timeout",
    "web_url",
    "trace_history",
    "args",
    "terminate_after",
}
_ARG_REFERENCE = re.compile(r"^\$\{input((?:\.[^.}]+)*)\}$")
_TLS_KEYS = ("ca_cert", "client_cert", "client_key", "server_name")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")
# Temporal's default limit on a workflow id (limit.maxIDLength).
_WORKFLOW_ID_MAX = 1000
# How the SDKs word a workflow type their worker does not have: Python ("Workflow class X is not
# registered on this worker"), Go ("unable to find workflow type: X"), Java ("Unknown workflow type").
_UNREGISTERED = re.compile(r"not registered|unable to find workflow type|unknown workflow type", re.I)
# Statuses of a closed execution whose attempt failed: a later attempt starts a new execution.
_FAILED_STATUSES = frozenset(
    {
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.CANCELED,
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.TIMED_OUT,
    }
)
_UNAVAILABLE = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
        RPCStatusCode.CANCELLED,
    }
)


_EventType = temporal_enums.EventType
_CLOSE_EVENTS = {
    _EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED: "Completed",
    _EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED: "Failed",
    _EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT: "TimedOut",
    _EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED: "Canceled",
    _EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED: "Terminated",
    _EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "ContinuedAsNew",
}
# Event type -> (its attributes field, the outcome it means).
_ACTIVITY_CLOSE = {
    _EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: ("activity_task_completed_event_attributes", "Completed"),
    _EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: ("activity_task_failed_event_attributes", "Failed"),
    _EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: ("activity_task_timed_out_event_attributes", "TimedOut"),
    _EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: ("activity_task_canceled_event_attributes", "Canceled"),
}
_CHILD_CLOSE = {
    _EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_COMPLETED: (
        "child_workflow_execution_completed_event_attributes",
        "Completed",
    ),
    _EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "child_workflow_execution_failed_event_attributes",
        "Failed",
    ),
    _EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TIMED_OUT: (
        "child_workflow_execution_timed_out_event_attributes",
        "TimedOut",
    ),
    _EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_CANCELED: (
        "child_workflow_execution_canceled_event_attributes",
        "Canceled",
    ),
    _EventType.EVENT_TYPE_CHILD_WORKFLOW_EXECUTION_TERMINATED: (
        "child_workflow_execution_terminated_event_attributes",
        "Terminated",
    ),
    _EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_FAILED: (
        "start_child_workflow_execution_failed_event_attributes",
        "StartFailed",
    ),
}


@dataclass(frozen=True)
class TemporalTls:
    """PEM texts (secrets resolve to the file's content) for a TLS connection."""

    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    server_name: str | None = None

    def sdk_config(self) -> TLSConfig:
        def pem(text: str | None) -> bytes | None:
            return text.encode() if text else None

        return TLSConfig(
            server_root_ca_cert=pem(self.ca_cert),
            client_cert=pem(self.client_cert),
            client_private_key=pem(self.client_key),
            domain=self.server_name or None,
        )


@dataclass(frozen=True)
class TemporalConfig:
    target_host: str
    namespace: str
    task_queue: str
    workflow_type: str
    api_key: str | None
    tls: TemporalTls | None
    execution_timeout: float | None
    fail_on_workflow_task_failure: bool
    poll_interval: float
    max_poll_interval: float
    check_namespace: bool
    timeout: float
    web_url: str | None
    trace_history: bool
    args: tuple[Any, ...]
    terminate_after: float | None

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> TemporalConfig:
        r = ConfigReader("temporal", config, _KNOWN_KEYS)
        target_host = r.string("target_host", required=True) or ""
        if target_host and not _HOST_PORT.match(target_host):
            r.problem(
                "target_host",
                f"must be the frontend's host:port such as 127.0.0.1:7233 (no scheme), got {target_host!r}",
            )
        api_key = r.string("api_key")
        web_url = r.string("web_url")
        if web_url and not re.match(r"^https?://[^/\s]+", web_url):
            r.problem("web_url", "must be an http:// or https:// URL (Temporal's Web UI)")
        cfg = cls(
            target_host=target_host,
            namespace=r.string("namespace", default="default") or "default",
            task_queue=r.string("task_queue", required=True) or "",
            workflow_type=r.string("workflow_type", required=True) or "",
            api_key=api_key,
            tls=_read_tls(r, default_on=api_key is not None),
            execution_timeout=r.duration("execution_timeout", None),
            fail_on_workflow_task_failure=r.choice("workflow_task_failure", ("fail", "wait"), "fail")
            == "fail",
            poll_interval=r.duration("poll_interval", 1.0) or 1.0,
            max_poll_interval=r.duration("max_poll_interval", 15.0) or 15.0,
            check_namespace=r.boolean("check_namespace", True),
            timeout=r.duration("timeout", 10.0) or 10.0,
            web_url=web_url.rstrip("/") if web_url else None,
            trace_history=r.boolean("trace_history", True),
            args=_read_args(r),
            terminate_after=r.duration("terminate_after", None),
        )
        r.raise_if_problems()
        return cfg


def _read_tls(r: ConfigReader, *, default_on: bool) -> TemporalTls | None:
    raw = r.config.get("tls")
    if raw is None:
        return TemporalTls() if default_on else None
    if isinstance(raw, bool):
        return TemporalTls() if raw else None
    if not isinstance(raw, Mapping):
        r.problem("tls", "must be true, false, or a mapping of ca_cert, client_cert, client_key, server_name")
        return None
    values: dict[str, str | None] = {}
    for key in sorted(set(raw) - set(_TLS_KEYS), key=str):
        r.problem(f"tls.{key}", f"unknown key (known keys: {', '.join(_TLS_KEYS)})")
    for key in _TLS_KEYS:
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            r.problem(f"tls.{key}", "must be a non-empty string")
            value = None
        elif value is not None and key != "server_name" and "-----BEGIN" not in value:
            # Never echo the value: it may be a key that was pasted wrongly.
            r.problem(
                f"tls.{key}", "must be PEM text (-----BEGIN ...), e.g. ${secret:NAME} of a file provider"
            )
            value = None
        values[key] = value
    if bool(values["client_cert"]) != bool(values["client_key"]):
        r.problem(
            "tls.client_key" if values["client_cert"] else "tls.client_cert",
            "client_cert and client_key go together",
        )
    return TemporalTls(**values)


def _read_args(r: ConfigReader) -> tuple[Any, ...]:
    raw = r.config.get("args")
    if raw is None:
        return ("${input}",)
    if not isinstance(raw, list):
        r.problem("args", 'must be a list such as ["${input.order_id}", "${input.amount_cents}"]')
        return ("${input}",)
    for index, item in enumerate(raw):
        if isinstance(item, str) and "${" in item and not _ARG_REFERENCE.match(item):
            r.problem(
                f"args.{index}",
                f"{item!r}: an argument is a whole reference, ${{input}} or ${{input.a.b}}, or a literal",
            )
    return tuple(raw)


def workflow_arguments(args: tuple[Any, ...], input: Any) -> list[Any]:
    """The workflow's arguments for a task input: each ``${input...}`` reference replaced by the
    value it names (whole JSON values, not text), literals as they are."""
    values: list[Any] = []
    for item in args:
        match = _ARG_REFERENCE.match(item) if isinstance(item, str) else None
        if match is None:
            values.append(item)
            continue
        value = input
        for part in match.group(1).split(".")[1:]:
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                raise EngineFailure(
                    f"the binding's args reference {item}, which the task input does not have",
                    type="ArgumentMappingError",
                    retryable=False,
                    details={"reference": item},
                )
        values.append(value)
    return values


def workflow_id_for(idempotency_key: str, generation: int = 1) -> str:
    """The workflow id of a step's execution: the idempotency key itself, and ``<key>#N`` for the
    execution of a later attempt started after the earlier ones failed. A key too long for
    Temporal is shortened with a hash, so two keys never share an id."""
    suffix = "" if generation <= 1 else f"#{generation}"
    if len(idempotency_key) + len(suffix) <= _WORKFLOW_ID_MAX:
        return idempotency_key + suffix
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
    return f"{idempotency_key[: _WORKFLOW_ID_MAX - len(suffix) - 17]}-{digest}{suffix}"


def _trace_context_for(task: TaskContext) -> otel_context.Context:
    """The context the workflow's start continues: the agent's span for this task when there is
    one, else the trace context the task arrived with."""
    current = otel_context.get_current()
    if trace.get_current_span(current).get_span_context().is_valid:
        return current
    carrier = {k: v for k, v in task.trace_context.items() if k in ("traceparent", "tracestate")}
    return TraceContextTextMapPropagator().extract(carrier)


def _failure_chain(error: BaseException | None) -> list[BaseException]:
    chain: list[BaseException] = []
    while error is not None and len(chain) < 20:
        chain.append(error)
        error = error.cause if isinstance(error, FailureError) else error.__cause__
    return chain


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


class TemporalEngine:
    """Engine adapter for Temporal (see the module docstring)."""

    name: ClassVar[str] = "temporal"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = TemporalConfig.from_mapping(config)
        self._client: Client | None = None
        self._connect_lock = asyncio.Lock()
        if self.config.check_namespace:
            self._check_at_start()

    # -- the start check ----------------------------------------------------------------------

    def _check_at_start(self) -> None:
        """Refuse a namespace the server does not have, and credentials it refuses, when the
        binding is built (agent start, config reload: both off the agent's event loop). An
        unreachable server is only a warning: the agent may start before Temporal does, and its
        tasks then fail retryably. The workflow type is not checked: only workers know it."""
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="temporal-check") as pool:
            problem = pool.submit(asyncio.run, self._probe()).result()
        if problem is not None:
            raise EngineConfigError([problem])

    async def _probe(self) -> tuple[str, str] | None:
        cfg = self.config
        try:
            client = await asyncio.wait_for(self._connect(tracing=False), cfg.timeout)
            await client.workflow_service.describe_namespace(
                temporal_service.DescribeNamespaceRequest(namespace=cfg.namespace),
                timeout=timedelta(seconds=cfg.timeout),
            )
            queue = await client.workflow_service.describe_task_queue(
                temporal_service.DescribeTaskQueueRequest(
                    namespace=cfg.namespace,
                    task_queue=temporal_taskqueue.TaskQueue(name=cfg.task_queue),
                    task_queue_type=temporal_enums.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                ),
                timeout=timedelta(seconds=cfg.timeout),
            )
            if not queue.pollers:
                # Not an error: workers may start after the agent. But say it, since a workflow
                # started now waits for one.
                logger.warning(
                    "no Temporal worker has polled task queue %r of namespace %r at %s lately: "
                    "workflows of type %r wait until one does",
                    cfg.task_queue,
                    cfg.namespace,
                    cfg.target_host,
                    cfg.workflow_type,
                )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return (
                    "namespace",
                    f"temporal: namespace {cfg.namespace!r} does not exist at {cfg.target_host} "
                    f"(Temporal: {exc.message}); create it (temporal operator namespace create) "
                    "or fix the binding's namespace",
                )
            if exc.status == RPCStatusCode.UNAUTHENTICATED:
                field = "api_key" if cfg.api_key else "tls"
                return field, f"temporal: {cfg.target_host} refused the credentials: {exc.message}"
            logger.warning(
                "could not check Temporal namespace %r at %s: %s", cfg.namespace, cfg.target_host, exc.message
            )
        except Exception as exc:
            logger.warning(
                "could not reach Temporal at %s to check namespace %r: %s: %s",
                cfg.target_host,
                cfg.namespace,
                type(exc).__name__,
                exc,
            )
        return None

    # -- the adapter interface --------------------------------------------------------------

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        cfg = self.config
        span = trace.get_current_span()
        span.set_attribute("temporal.namespace", cfg.namespace)
        span.set_attribute("temporal.workflow_type", cfg.workflow_type)
        client = await self._connected()
        token = otel_context.attach(_trace_context_for(task))
        try:
            with tracer.start_as_current_span("temporal.start") as start_span:
                start_span.set_attribute("temporal.task_queue", cfg.task_queue)
                start_span.set_attribute("temporal.workflow_type", cfg.workflow_type)
                workflow_id, run_id, attached = await self._start_or_attach(client, task, input)
                start_span.set_attribute("temporal.workflow_id", workflow_id)
                start_span.set_attribute("temporal.run_id", run_id)
                start_span.set_attribute("temporal.attached", attached)
        finally:
            otel_context.detach(token)
        span.set_attribute("temporal.workflow_id", workflow_id)
        span.set_attribute("temporal.run_id", run_id)
        details: dict[str, Any] = {
            "engine": "temporal",
            "namespace": cfg.namespace,
            "workflow_type": cfg.workflow_type,
            "workflow_id": workflow_id,
            "run_id": run_id,
        }
        if cfg.web_url:
            details["temporal_url"] = self.workflow_url(workflow_id, run_id)
        return Handle(
            details=details, state={"workflow_id": workflow_id, "run_id": run_id, "attached": attached}
        )

    async def wait(self, handle: Handle) -> Any:
        workflow_id: str = handle.state["workflow_id"]
        run_id: str = handle.state["run_id"]
        client = await self._connected()
        workflow = client.get_workflow_handle(workflow_id, run_id=run_id)
        failure: EngineFailure | None = None
        output: Any = None
        with tracer.start_as_current_span("temporal.result") as result_span:
            result_span.set_attribute("temporal.workflow_id", workflow_id)
            result_span.set_attribute("temporal.run_id", run_id)
            try:
                output = await self._result(workflow)
            except WorkflowFailureError as exc:
                failure = self._run_failure(workflow_id, run_id, exc)
                failure.__cause__ = exc
            except EngineFailure as exc:
                failure = exc
            result_span.set_attribute("temporal.outcome", failure.type if failure else "completed")
        await self._trace_history(workflow)
        if failure is not None:
            raise failure
        try:
            json.dumps(output)
        except (TypeError, ValueError) as exc:
            raise EngineFailure(
                f"Temporal workflow {workflow_id} returned a {type(output).__name__}, which is not JSON: "
                "return JSON types (a dict of str/int/float/bool/list/dict)",
                type="OutputNotJson",
                retryable=False,
                details=self._details(workflow_id, run_id),
            ) from exc
        return output

    async def _result(self, workflow: WorkflowHandle[Any, Any]) -> Any:
        """The execution's result, unless the workflow-task watch finds it stuck first."""
        result = asyncio.ensure_future(workflow.result())
        watch = asyncio.ensure_future(self._watch_workflow_task(workflow))
        try:
            done, _ = await asyncio.wait({result, watch}, return_when=asyncio.FIRST_COMPLETED)
            if watch in done:
                result.cancel()
                raise await self._end_stuck_workflow(workflow, watch.result())
            return result.result()
        except RPCError as exc:
            raise self._rpc_failure(f"awaiting workflow {workflow.id}", exc) from exc
        finally:
            for pending in (result, watch):
                pending.cancel()
            await asyncio.gather(result, watch, return_exceptions=True)

    async def cancel(self, handle: Handle) -> None:
        workflow_id = handle.state.get("workflow_id")
        if not workflow_id:
            return
        client = await self._connected()
        workflow = client.get_workflow_handle(workflow_id, run_id=handle.state.get("run_id"))
        try:
            await workflow.cancel()
        except RPCError as exc:
            # NOT_FOUND: the execution is gone or already closed; nothing to cancel.
            if exc.status not in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                raise self._rpc_failure(f"cancelling workflow {workflow_id}", exc) from exc
            return
        logger.info(
            "requested cancellation of Temporal workflow",
            extra={"workflow_id": workflow_id, "namespace": self.config.namespace},
        )
        if self.config.terminate_after is not None:
            await self._terminate_unless_closed(workflow, self.config.terminate_after)

    async def _terminate_unless_closed(self, workflow: WorkflowHandle[Any, Any], patience: float) -> None:
        """Give a cancelled workflow ``patience`` seconds to close (it may clean up, or ignore
        the request), then terminate it."""
        deadline = asyncio.get_running_loop().time() + patience
        backoff = Backoff(min(0.2, patience), 2.0)
        while True:
            try:
                described = await workflow.describe()
            except RPCError as exc:
                logger.warning(
                    "could not describe cancelled Temporal workflow %s: %s", workflow.id, exc.message
                )
                return
            if described.status != WorkflowExecutionStatus.RUNNING:
                return
            if asyncio.get_running_loop().time() >= deadline:
                break
            await backoff.sleep()
        try:
            await workflow.terminate(
                reason=f"Accord: the task was cancelled and the workflow still ran {patience:g}s later"
            )
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise self._rpc_failure(f"terminating workflow {workflow.id}", exc) from exc
            return
        logger.info("terminated cancelled Temporal workflow", extra={"workflow_id": workflow.id})

    async def close(self) -> None:
        # The SDK's client has no close: its connection goes when the last reference does.
        self._client = None

    # -- connecting -------------------------------------------------------------------------

    async def _connect(self, *, tracing: bool = True) -> Client:
        cfg = self.config
        return await Client.connect(
            cfg.target_host,
            namespace=cfg.namespace,
            api_key=cfg.api_key,
            tls=cfg.tls.sdk_config() if cfg.tls is not None else False,
            interceptors=[TracingInterceptor()] if tracing else [],
        )

    async def _connected(self) -> Client:
        if self._client is not None:
            return self._client
        async with self._connect_lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(self._connect(), self.config.timeout)
                except RPCError as exc:
                    raise self._rpc_failure(f"connecting to {self.config.target_host}", exc) from exc
                except (TimeoutError, RuntimeError, OSError) as exc:
                    raise EngineFailure(
                        f"Temporal at {self.config.target_host} could not be reached: {type(exc).__name__}: {exc}",
                        type="EngineUnavailable",
                        retryable=True,
                        details={"target_host": self.config.target_host},
                    ) from exc
            return self._client

    # -- steps ------------------------------------------------------------------------------

    async def _start_or_attach(self, client: Client, task: TaskContext, input: Any) -> tuple[str, str, bool]:
        """Start this task's execution, or attach to the one a previous delivery started.

        ``USE_EXISTING`` attaches to a running execution of the same id; ``REJECT_DUPLICATE``
        answers ``WorkflowAlreadyStartedError`` for a closed one, which this attempt attaches to
        unless it failed and belongs to an earlier attempt (``task.attempt`` > generation): then
        the next id is tried."""
        cfg = self.config
        arguments = workflow_arguments(cfg.args, input)
        generation = 1
        nonce = uuid.uuid4().hex  # tells this start from an earlier delivery's
        while True:
            workflow_id = workflow_id_for(task.idempotency_key, generation)
            try:
                started: WorkflowHandle[Any, Any] = await client.start_workflow(
                    cfg.workflow_type,
                    args=arguments,
                    id=workflow_id,
                    task_queue=cfg.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    execution_timeout=timedelta(seconds=cfg.execution_timeout)
                    if cfg.execution_timeout
                    else None,
                    memo={
                        "accord.task_id": task.task_id,
                        "accord.attempt": task.attempt,
                        "accord.start": nonce,
                    },
                )
            except WorkflowAlreadyStartedError as exc:
                described = await self._describe(client.get_workflow_handle(workflow_id))
                if described.status in _FAILED_STATUSES and generation < task.attempt:
                    generation += 1
                    continue
                logger.info(
                    "attached to closed Temporal workflow",
                    extra={
                        "workflow_id": workflow_id,
                        "status": str(described.status),
                        "task_id": task.task_id,
                    },
                )
                return workflow_id, exc.run_id or described.run_id, True
            except RPCError as exc:
                raise self._start_failure(exc) from exc
            run_id = started.result_run_id or ""
            # The id conflict policy answers a running execution as if it had just started it.
            attached = await self._started_before(started, nonce)
            logger.info(
                "attached to running Temporal workflow" if attached else "started Temporal workflow",
                extra={"workflow_id": workflow_id, "run_id": run_id, "task_id": task.task_id},
            )
            return workflow_id, run_id, attached

    async def _started_before(self, started: WorkflowHandle[Any, Any], nonce: str) -> bool:
        """Whether the running execution this start answered with was started by an earlier
        delivery of the task (its memo holds another start's nonce)."""
        try:
            described = await started.describe()
            memo = await described.memo()
        except (RPCError, ValueError, TypeError):
            return False
        return memo.get("accord.start") not in (None, nonce)

    async def _describe(self, workflow: WorkflowHandle[Any, Any]) -> Any:
        try:
            return await workflow.describe()
        except RPCError as exc:
            raise self._rpc_failure(f"describing workflow {workflow.id}", exc) from exc

    async def _watch_workflow_task(self, workflow: WorkflowHandle[Any, Any]) -> EngineFailure:
        """Return the failure of a workflow task that failed (its retry attempt is above 1 and
        the last workflow task event is a failure): Temporal retries it until someone deploys a
        fix, leaving the execution running without progress, so the step fails now with
        Temporal's message. With ``workflow_task_failure: wait`` this watch never returns."""
        cfg = self.config
        if not cfg.fail_on_workflow_task_failure:
            await asyncio.Event().wait()
        delay = cfg.poll_interval
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, cfg.max_poll_interval)
            try:
                described = await workflow.describe()
            except RPCError as exc:
                logger.warning("could not describe Temporal workflow %s: %s", workflow.id, exc.message)
                continue
            pending = described.raw_description.pending_workflow_task
            if described.status != WorkflowExecutionStatus.RUNNING or pending.attempt < 2:
                continue
            message, failure_type = await self._last_workflow_task_failure(workflow)
            if message is None:
                continue  # the task timed out (a worker went away): that is Temporal's to retry
            unregistered = bool(_UNREGISTERED.search(message))
            kind = "WorkflowTypeNotRegistered" if unregistered else "WorkflowTaskFailed"
            text = (
                f"no worker on task queue {cfg.task_queue!r} knows workflow type {cfg.workflow_type!r}: "
                if unregistered
                else f"Temporal workflow {workflow.id}'s workflow task failed ({failure_type}): "
            ) + message
            return EngineFailure(
                text,
                type=kind,
                retryable=not unregistered,
                details={**self._details(workflow.id, workflow.run_id or ""), "attempts": pending.attempt},
            )

    async def _end_stuck_workflow(
        self, workflow: WorkflowHandle[Any, Any], failure: EngineFailure
    ) -> EngineFailure:
        """Terminate an execution whose workflow task keeps failing, so a retry starts afresh
        (a later attempt moves on to the step's next workflow id); ``failure`` says why."""
        try:
            await workflow.terminate(reason=f"Accord: {failure.message}"[:1000])
        except RPCError as exc:
            logger.warning("could not terminate Temporal workflow %s: %s", workflow.id, exc.message)
        return failure

    async def _last_workflow_task_failure(self, workflow: WorkflowHandle[Any, Any]) -> tuple[str | None, str]:
        last: Any = None
        failed_type = temporal_enums.EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        task_events = {
            failed_type,
            temporal_enums.EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
            temporal_enums.EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
        }
        async for event in workflow.fetch_history_events():
            if event.event_type in task_events:
                last = event
        if last is None or last.event_type != failed_type:
            return None, ""
        failure = last.workflow_task_failed_event_attributes.failure
        return failure.message or "(no message)", failure.application_failure_info.type or "failure"

    # -- tracing ----------------------------------------------------------------------------

    async def _trace_history(self, workflow: WorkflowHandle[Any, Any]) -> None:
        """Spans of the execution and of its activities and child workflows, from the times in
        its history, under the current span (the agent's engine span, inside the attempt)
        (docs/engines/temporal.md, "Tracing"). They show what ran on the team's side even when
        its worker exports no spans. Never fails the task."""
        if not self.config.trace_history:
            return
        try:
            events = [event async for event in workflow.fetch_history_events()]
        except RPCError as exc:
            logger.warning("could not read the history of Temporal workflow %s: %s", workflow.id, exc.message)
            return
        try:
            self._record_history_spans(workflow.id, workflow.run_id or "", events)
        except Exception:  # a history this code does not understand must not fail the task
            logger.exception("could not trace the history of Temporal workflow %s", workflow.id)

    def _record_history_spans(self, workflow_id: str, run_id: str, events: list[Any]) -> None:
        if not events:
            return
        start = events[0].event_time.ToNanoseconds()
        end = max(start, events[-1].event_time.ToNanoseconds())
        closing = events[-1]
        status = _CLOSE_EVENTS.get(closing.event_type, "Running")
        attributes: dict[str, Any] = {
            "temporal.namespace": self.config.namespace,
            "temporal.workflow_type": self.config.workflow_type,
            "temporal.workflow_id": workflow_id,
            "temporal.run_id": run_id,
            "temporal.workflow.status": status,
            "temporal.history_length": len(events),
        }
        if self.config.web_url:
            attributes["temporal.workflow.url"] = self.workflow_url(workflow_id, run_id)
        root = tracer.start_span(
            f"temporal.workflow {self.config.workflow_type}", start_time=start, attributes=attributes
        )
        if status in ("Failed", "TimedOut", "Terminated"):
            root.set_status(trace.Status(trace.StatusCode.ERROR, f"workflow {status.lower()}"))
        parent = trace.set_span_in_context(root)
        scheduled: dict[int, Any] = {}
        started: dict[int, Any] = {}
        for event in events:
            kind = event.event_type
            if kind == _EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                scheduled[event.event_id] = event
            elif kind == _EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                started[event.activity_task_started_event_attributes.scheduled_event_id] = event
            elif kind == _EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
                scheduled[event.event_id] = event
            elif kind in _ACTIVITY_CLOSE or kind in _CHILD_CLOSE:
                attrs_name, outcome = (_ACTIVITY_CLOSE | _CHILD_CLOSE)[kind]
                closed = getattr(event, attrs_name)
                opened_id = (
                    closed.scheduled_event_id if kind in _ACTIVITY_CLOSE else closed.initiated_event_id
                )
                opened = scheduled.pop(opened_id, None)
                if opened is None:
                    continue
                self._record_step_span(parent, opened, started.pop(opened_id, None), event, outcome, closed)
        # Still open when the execution closed (cancelled, terminated): they end with it.
        for opened_id, opened in scheduled.items():
            self._record_step_span(parent, opened, started.get(opened_id), None, "Unfinished", None, end)
        root.end(end_time=end)

    def _record_step_span(
        self,
        parent: otel_context.Context,
        opened: Any,
        started: Any,
        closing: Any,
        outcome: str,
        closed: Any,
        end: int | None = None,
    ) -> None:
        begin = (started or opened).event_time.ToNanoseconds()
        finish = closing.event_time.ToNanoseconds() if closing is not None else (end or begin)
        if opened.event_type == _EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            info = opened.activity_task_scheduled_event_attributes
            name = f"temporal.activity {info.activity_type.name}"
            attributes: dict[str, Any] = {
                "temporal.activity_type": info.activity_type.name,
                "temporal.activity_id": info.activity_id,
                "temporal.activity.status": outcome,
            }
            if started is not None:
                attributes["temporal.activity.attempt"] = (
                    started.activity_task_started_event_attributes.attempt
                )
        else:
            info = opened.start_child_workflow_execution_initiated_event_attributes
            name = f"temporal.child_workflow {info.workflow_type.name}"
            attributes = {
                "temporal.workflow_type": info.workflow_type.name,
                "temporal.workflow_id": info.workflow_id,
                "temporal.child_workflow.status": outcome,
            }
        span = tracer.start_span(name, context=parent, start_time=begin, attributes=attributes)
        failure = getattr(closed, "failure", None) if closed is not None else None
        if outcome not in ("Completed", "Unfinished"):
            message = failure.message if failure is not None and failure.message else outcome.lower()
            span.set_status(trace.Status(trace.StatusCode.ERROR, message[:500]))
        span.end(end_time=max(finish, begin))

    # -- failures ---------------------------------------------------------------------------

    def workflow_url(self, workflow_id: str, run_id: str) -> str:
        """Where a person sees the execution in Temporal's Web UI (``web_url`` must be set)."""
        ns, wid, run = (quote(v, safe="") for v in (self.config.namespace, workflow_id, run_id))
        return f"{self.config.web_url}/namespaces/{ns}/workflows/{wid}/{run}/history"

    def _details(self, workflow_id: str, run_id: str) -> dict[str, Any]:
        details: dict[str, Any] = {
            "namespace": self.config.namespace,
            "workflow_type": self.config.workflow_type,
            "workflow_id": workflow_id,
            "run_id": run_id,
        }
        if self.config.web_url:
            details["temporal_url"] = self.workflow_url(workflow_id, run_id)
        return details

    def _run_failure(self, workflow_id: str, run_id: str, exc: WorkflowFailureError) -> EngineFailure:
        """Map a closed execution's failure (docs/engines/temporal.md, "Failures")."""
        details = self._details(workflow_id, run_id)
        chain = _failure_chain(exc.cause)
        details["causes"] = [
            {"class": type(e).__name__, "message": getattr(e, "message", str(e))}
            | ({"type": e.type} if isinstance(e, ApplicationError) and e.type else {})
            for e in chain
        ]
        text = " <- ".join(
            f"{e.type}: {e.message}"
            if isinstance(e, ApplicationError) and e.type
            else getattr(e, "message", str(e))
            for e in chain
        )
        prefix = f"Temporal workflow {workflow_id} ({self.config.workflow_type})"
        top = chain[0] if chain else None
        if isinstance(top, TerminatedError):
            return EngineFailure(
                f"{prefix} was terminated outside Accord: {text}",
                type="WorkflowTerminated",
                retryable=False,
                details=details,
            )
        if isinstance(top, CancelledError):
            return EngineFailure(
                f"{prefix} was cancelled: {text}", type="WorkflowCancelled", retryable=False, details=details
            )
        if isinstance(top, TemporalTimeoutError):
            return EngineFailure(
                f"{prefix} timed out: {text}", type="WorkflowTimedOut", retryable=True, details=details
            )
        # The innermost application error decides: a workflow that failed because an activity
        # (or a child workflow) raised a non-retryable error is not retried either.
        application = next((e for e in reversed(chain) if isinstance(e, ApplicationError)), None)
        if application is not None:
            details["application_error_type"] = application.type
            if application.details:
                details["application_error_details"] = _jsonable(list(application.details))
            retryable = not application.non_retryable
        else:
            retryable = True
        # The application error's own type is the failure's, so a contract's retry.non_retryable
        # can name it (CardDeclined); an untyped failure is a WorkflowFailed.
        kind = application.type if application is not None and application.type else "WorkflowFailed"
        if isinstance(top, ActivityError | ChildWorkflowError):
            details["failed_in"] = type(top).__name__
        return EngineFailure(f"{prefix} failed: {text}", type=kind, retryable=retryable, details=details)

    def _start_failure(self, exc: RPCError) -> EngineFailure:
        cfg = self.config
        if exc.status == RPCStatusCode.NOT_FOUND:
            return EngineFailure(
                f"Temporal namespace {cfg.namespace!r} does not exist at {cfg.target_host}: {exc.message}",
                type="NamespaceNotFound",
                retryable=False,
                details={"namespace": cfg.namespace},
            )
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            return EngineFailure(
                f"Temporal refused to start workflow {cfg.workflow_type!r}: {exc.message}",
                type="WorkflowStartRejected",
                retryable=False,
                details={"workflow_type": cfg.workflow_type, "task_queue": cfg.task_queue},
            )
        return self._rpc_failure(f"starting workflow {cfg.workflow_type}", exc)

    def _rpc_failure(self, what: str, exc: RPCError) -> EngineFailure:
        cfg = self.config
        retryable = exc.status in _UNAVAILABLE
        if exc.status == RPCStatusCode.UNAUTHENTICATED:
            kind = "EngineAuthError"
        elif exc.status == RPCStatusCode.PERMISSION_DENIED:
            kind = "EnginePermissionDenied"
        elif retryable:
            kind = "EngineUnavailable"
        else:
            kind = "EngineError"
        return EngineFailure(
            f"temporal: {what} at {cfg.target_host} failed ({exc.status.name}): {exc.message}",
            type=kind,
            retryable=retryable,
            details={"target_host": cfg.target_host, "namespace": cfg.namespace, "status": exc.status.name},
        )
