"""The ``prefect`` engine: runs a task as one flow run of a Prefect 3 deployment, through
Prefect's REST API (httpx; the agent needs no Prefect library). See docs/engines/prefect.md.

1. find the deployment: ``GET /deployments/name/{flow}/{deployment}`` (or ``GET
   /deployments/{id}`` for an id) when the agent loads its config: a missing one, or refused
   credentials, stop the agent naming the binding's field (an unreachable Prefect does not: the
   first submit looks again, and fails that task if the deployment is missing);
2. ``POST /deployments/{id}/create_flow_run`` with the task input as ``parameters``, the caller's
   ``traceparent`` in the run's ``labels`` under ``__OTEL_TRACEPARENT`` (the label Prefect's own
   run telemetry continues a trace from) and an ``idempotency_key`` derived from the step's:
   Prefect answers 200 with the run it already made for a re-delivered task, 201 for a new one;
3. poll ``GET /flow_runs/{id}`` with backoff until its state type is terminal;
4. ``COMPLETED``: the output is the JSON data of the artifact the flow published under the key
   ``output_artifact`` (``POST /artifacts/filter``); ``FAILED``/``CRASHED``/``CANCELLED`` fail
   with Prefect's own state message. Task runs (``POST /task_runs/filter``) become spans.

``with:`` keys::

    api_url: http://127.0.0.1:4200/api      # required: the API root (PREFECT_API_URL)
    deployment: charge-card/accord          # required: "flow name/deployment name", or an id
    api_key: ...                            # Prefect Cloud (Bearer), or ...
    auth_string: admin:pass                 # ... a self-hosted server's PREFECT_SERVER_API_AUTH_STRING
    output: artifact                        # or "summary": the run's id, name and state
    output_artifact: accord-output          # the artifact key the flow publishes its output under
    input_parameter: payload                # optional: pass the whole input as this one parameter
    non_retryable_errors: [CardDeclined]    # exception types whose FAILED run is not retried
    poll_interval: 1s                       # first poll interval; grows by 1.5x ...
    max_poll_interval: 15s                  # ... up to this
    scheduled_timeout: 10m                  # fail (and cancel) a run no worker picked up (optional)
    timeout: 30s                            # per HTTP request
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from opentelemetry import trace

from team_agent.engines._http_util import (
    TRANSIENT_STATUSES,
    Backoff,
    ConfigReader,
    error_detail,
    outgoing_trace_context,
    transport_failure,
    unexpected_status,
)
from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

#: The flow-run label Prefect's run telemetry (prefect/telemetry/run_telemetry.py) starts the
#: flow run's span under; a flow reads it as ``FlowRunContext.get().flow_run.labels[...]``.
TRACEPARENT_LABEL = "__OTEL_TRACEPARENT"
DEFAULT_OUTPUT_ARTIFACT = "accord-output"

# Prefect's StateType values.
_TERMINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
_NOT_STARTED = ("SCHEDULED", "PENDING")
# Artifact keys: "only lowercase letters, numbers, and dashes" (prefect.artifacts.Artifact).
_ARTIFACT_KEY = re.compile(r"^[a-z0-9-]+$")
# The message of a flow run that raised: "Flow run encountered an exception: ValueError: ...".
_EXCEPTION_TYPE = re.compile(r"encountered an exception: ([A-Za-z_][\w.]*)(?::|$)")
_MAX_ATTEMPTS = 7  # waits 0.5 + 1 + 2 + 4 + 8 + 8 s: about as long as Prefect's own client
_KNOWN_KEYS = {
    "api_url",
    "deployment",
    "api_key",
    "auth_string",
    "output",
    "output_artifact",
    "input_parameter",
    "non_retryable_errors",
    "poll_interval",
    "max_poll_interval",
    "scheduled_timeout",
    "timeout",
}


@dataclass(frozen=True)
class PrefectConfig:
    api_url: str
    deployment: str
    deployment_id: str | None  # when ``deployment`` is an id
    flow_name: str
    deployment_name: str
    api_key: str | None
    auth_string: str | None
    output: str
    output_artifact: str
    input_parameter: str | None
    non_retryable_errors: tuple[str, ...]
    poll_interval: float
    max_poll_interval: float
    scheduled_timeout: float | None
    timeout: float

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> PrefectConfig:
        r = ConfigReader("prefect", config, _KNOWN_KEYS)
        api_url = r.url("api_url")
        deployment = (r.string("deployment", required=True) or "").strip()
        deployment_id: str | None = None
        flow_name = deployment_name = ""
        if deployment:
            try:
                deployment_id = str(uuid.UUID(deployment))
            except ValueError:
                parts = deployment.split("/")
                if len(parts) != 2 or not all(p.strip() for p in parts):
                    r.problem(
                        "deployment",
                        f"must be 'flow name/deployment name' (as `prefect deployment ls` shows it) "
                        f"or a deployment id, got {deployment!r}",
                    )
                else:
                    flow_name, deployment_name = parts
        api_key = r.string("api_key")
        auth_string = r.string("auth_string")
        if api_key and auth_string:
            r.problem(
                "api_key", "give api_key (Prefect Cloud) or auth_string (a self-hosted server), not both"
            )
        if auth_string and ":" not in auth_string:
            r.problem("auth_string", "must be 'user:password', as in PREFECT_SERVER_API_AUTH_STRING")
        output_artifact = r.string("output_artifact", default=DEFAULT_OUTPUT_ARTIFACT) or ""
        if not _ARTIFACT_KEY.match(output_artifact):
            r.problem(
                "output_artifact",
                f"must be a Prefect artifact key (lowercase letters, digits and dashes), got {output_artifact!r}",
            )
        errors = r.config.get("non_retryable_errors", [])
        if not isinstance(errors, list) or not all(isinstance(e, str) and e for e in errors):
            r.problem("non_retryable_errors", "must be a list of exception type names, e.g. [CardDeclined]")
            errors = []
        cfg = cls(
            api_url=api_url,
            deployment=deployment,
            deployment_id=deployment_id,
            flow_name=flow_name,
            deployment_name=deployment_name,
            api_key=api_key,
            auth_string=auth_string,
            output=r.choice("output", ("artifact", "summary"), "artifact"),
            output_artifact=output_artifact,
            input_parameter=r.string("input_parameter"),
            non_retryable_errors=tuple(errors),
            poll_interval=r.duration("poll_interval", 1.0) or 1.0,
            max_poll_interval=r.duration("max_poll_interval", 15.0) or 15.0,
            scheduled_timeout=r.duration("scheduled_timeout", None),
            timeout=r.duration("timeout", 30.0) or 30.0,
        )
        r.raise_if_problems()
        return cfg


def idempotency_key_for(deployment_name: str, key: str, generation: int = 1) -> str:
    """The flow run's idempotency key for a step's. Prefect keeps one flow run per (flow,
    idempotency key), so the same step key always finds its run; the deployment's name (unique
    within its flow, and kept when the deployment is re-created under a new id) is part of the
    key so that two deployments of one flow never share a run, and ``generation`` > 1 names the
    runs of later attempts started after earlier ones failed."""
    suffix = "" if generation <= 1 else f":{generation}"
    return f"accord:{deployment_name}:{key}{suffix}"


def _unix_ns(value: Any) -> int | None:
    """A Prefect timestamp (ISO 8601) as ns since the epoch; None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1_000


def _retry_after(response: httpx.Response) -> float | None:
    """A 429's ``Retry-After`` in seconds (capped at 30), if it gives one."""
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return min(max(value, 0.0), 30.0)


def _state(run: Mapping[str, Any]) -> tuple[str, str, str]:
    """(type, name, message) of a flow or task run's state."""
    state = run.get("state") or {}
    return (
        str(state.get("type") or run.get("state_type") or ""),
        str(state.get("name") or run.get("state_name") or ""),
        str(state.get("message") or ""),
    )


class PrefectEngine:
    """Engine adapter for Prefect 3's REST API (see the module docstring)."""

    name: ClassVar[str] = "prefect"

    def __init__(self, config: Mapping[str, Any], *, check: bool = True) -> None:
        self.config = PrefectConfig.from_mapping(config)
        self._headers: dict[str, str] = {}
        if self.config.api_key:
            self._headers["Authorization"] = f"Bearer {self.config.api_key}"
        elif self.config.auth_string:
            token = base64.b64encode(self.config.auth_string.encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._timeout = httpx.Timeout(self.config.timeout, connect=min(self.config.timeout, 10.0))
        self._deployment: dict[str, Any] | None = None
        if check:
            self._check_deployment()
        self._client = httpx.AsyncClient(
            base_url=self.config.api_url,
            headers=self._headers,
            follow_redirects=False,
            timeout=self._timeout,
        )
        self._deployment_lock = asyncio.Lock()

    # -- the adapter interface --------------------------------------------------------------

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        cfg = self.config
        span = trace.get_current_span()
        span.set_attribute("prefect.deployment", cfg.deployment)
        with tracer.start_as_current_span("prefect.create_flow_run") as create_span:
            body = self._run_body(task, input)
            deployment = await self._resolve_deployment()
            try:
                run = await self._create_or_attach(task, deployment, body)
            except EngineFailure as failure:
                if failure.type != "DeploymentNotFound":
                    raise
                # Deleted since it was read, perhaps re-created under a new id: look it up again.
                deployment = await self._resolve_deployment()
                run = await self._create_or_attach(task, deployment, body)
            create_span.set_attribute("prefect.deployment.id", str(deployment["id"]))
            flow_run_id = str(run["id"])
            create_span.set_attribute("prefect.flow_run.id", flow_run_id)
            create_span.set_attribute("prefect.flow_run.state", _state(run)[0])
            create_span.set_attribute("prefect.flow_run.attached", bool(run.get("_attached")))
        span.set_attribute("prefect.flow_run.id", flow_run_id)
        return Handle(
            details={
                "engine": "prefect",
                "deployment": cfg.deployment,
                "flow_run_id": flow_run_id,
                "flow_run_name": run.get("name"),
                "prefect_run_url": self.run_url(flow_run_id),
            },
            state={"flow_run_id": flow_run_id, "attached": bool(run.get("_attached"))},
        )

    async def wait(self, handle: Handle) -> Any:
        cfg = self.config
        flow_run_id: str = handle.state["flow_run_id"]
        span = trace.get_current_span()
        span.set_attribute("prefect.flow_run.id", flow_run_id)
        with tracer.start_as_current_span("prefect.poll") as poll_span:
            poll_span.set_attribute("prefect.flow_run.id", flow_run_id)
            run = await self._poll_until_terminal(flow_run_id, poll_span)
            state_type, state_name, _ = _state(run)
            poll_span.set_attribute("prefect.flow_run.state", state_type)
        try:
            task_runs: list[dict[str, Any]] = await self._settled_task_runs(flow_run_id)
        except EngineFailure as exc:
            logger.warning("could not list the task runs of flow run %s: %s", flow_run_id, exc.message)
            task_runs = []
        self._trace_run(run, task_runs)
        if state_type != "COMPLETED":
            raise self._run_failure(run, task_runs)
        if cfg.output == "summary":
            return {"flow_run_id": flow_run_id, "name": run.get("name"), "state": state_name or state_type}
        with tracer.start_as_current_span("prefect.fetch_output") as out_span:
            out_span.set_attribute("prefect.flow_run.id", flow_run_id)
            out_span.set_attribute("prefect.artifact.key", cfg.output_artifact)
            return await self._fetch_output(flow_run_id)

    async def cancel(self, handle: Handle) -> None:
        flow_run_id = handle.state.get("flow_run_id")
        if not flow_run_id:
            return
        response = await self._request("GET", f"/flow_runs/{flow_run_id}")
        if response.status_code == 404:
            return
        if response.status_code != 200:
            raise unexpected_status("prefect", f"reading flow run {flow_run_id} to cancel it", response)
        state_type = _state(response.json())[0]
        if state_type in _TERMINAL or state_type == "CANCELLING":
            return
        # A run no worker has picked up has nothing to stop: it goes straight to CANCELLED. A
        # running one goes to CANCELLING; its worker (or flow.serve() runner) kills the process
        # and sets CANCELLED.
        target = "CANCELLED" if state_type == "SCHEDULED" else "CANCELLING"
        await self._set_state(flow_run_id, target, "Cancelled by Accord (task cancelled).")
        logger.info(
            "cancelled Prefect flow run",
            extra={"flow_run_id": flow_run_id, "from_state": state_type, "to_state": target},
        )

    async def close(self) -> None:
        await self._client.aclose()

    # -- URLs -------------------------------------------------------------------------------

    def run_url(self, flow_run_id: str) -> str:
        """Where a person looks at the flow run in Prefect's UI (a self-hosted server serves it
        beside the API; Prefect Cloud's API URL ends in /accounts/.../workspaces/...)."""
        base = self.config.api_url
        cloud = re.match(r"^(https://api\.prefect\.cloud)/api/(accounts/[^/]+/workspaces/[^/]+)$", base)
        if cloud:
            return f"https://app.prefect.cloud/{cloud.group(2)}/runs/flow-run/{flow_run_id}"
        root = base[: -len("/api")] if base.endswith("/api") else base
        return f"{root}/runs/flow-run/{flow_run_id}"

    # -- HTTP -------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call. Like Prefect's own client, a transport error, 502/503/504 and 429 are
        retried with backoff (up to ~25 s; a 429's ``Retry-After`` is honoured): a Prefect
        server on SQLite answers 503 "Service Unavailable" while its database is locked, and
        Prefect Cloud rate-limits with 429. Every call made here is safe to repeat (a flow run
        is created under its step's fixed idempotency key)."""
        backoff = Backoff(0.5, 8.0, 2.0)
        attempts = 0
        while True:
            attempts += 1
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                if attempts < _MAX_ATTEMPTS:
                    await backoff.sleep()
                    continue
                raise transport_failure("Prefect", exc, self.config.api_url) from exc
            status = response.status_code
            if (status in TRANSIENT_STATUSES or status == 429) and attempts < _MAX_ATTEMPTS:
                retry_after = _retry_after(response)
                if retry_after is not None:
                    await asyncio.sleep(retry_after)
                else:
                    await backoff.sleep()
                continue
            if response.status_code == 401:
                raise EngineFailure(
                    f"Prefect at {self.config.api_url} refused the agent's credentials (HTTP 401); "
                    "check the binding's api_key or auth_string",
                    type="EngineAuthError",
                    retryable=False,
                )
            return response

    # -- agent start ------------------------------------------------------------------------

    def _deployment_path(self) -> str:
        cfg = self.config
        if cfg.deployment_id:
            return f"/deployments/{cfg.deployment_id}"
        return f"/deployments/name/{quote(cfg.flow_name, safe='')}/{quote(cfg.deployment_name, safe='')}"

    def _check_deployment(self) -> None:
        """Read the deployment once when the agent loads its config (a blocking call, like the
        argo and stepfunctions engines' checks: config loading runs before the agent's event
        loop, and off it on a reload). An unknown deployment or refused credentials are
        configuration errors naming the field; a Prefect that cannot be reached is not (it may
        come up later): the deployment is then looked up by the first submit."""
        cfg = self.config
        try:
            with httpx.Client(base_url=cfg.api_url, headers=self._headers, timeout=self._timeout) as client:
                response = client.get(self._deployment_path())
        except httpx.HTTPError as exc:
            logger.warning(
                "prefect: could not check deployment %s at %s (%s: %s); it is looked up again when "
                "the first task is submitted",
                cfg.deployment,
                cfg.api_url,
                type(exc).__name__,
                exc,
            )
            return
        status = response.status_code
        if status == 200:
            self._deployment = response.json()
            return
        credentials = "api_key" if cfg.api_key else "auth_string"
        if status == 404:
            problem = (
                "deployment",
                f"prefect: no deployment {cfg.deployment!r} at {cfg.api_url}; give it as 'flow "
                "name/deployment name' (as `prefect deployment ls` lists it) or as a deployment id, "
                "and create it first (flow.serve(), flow.deploy() or `prefect deploy`)",
            )
        elif status == 401:
            problem = (
                credentials,
                f"prefect: {cfg.api_url} refused the agent's credentials (HTTP 401): "
                + (
                    f"check {credentials}"
                    if cfg.api_key or cfg.auth_string
                    else "it needs auth_string or api_key"
                ),
            )
        elif status == 403:
            problem = (
                credentials,
                f"prefect: the credentials may not read deployment {cfg.deployment!r} (HTTP 403: "
                f"{error_detail(response)})",
            )
        else:
            logger.warning(
                "prefect: checking deployment %s answered HTTP %s (%s); it is looked up again when "
                "the first task is submitted",
                cfg.deployment,
                status,
                error_detail(response),
            )
            return
        raise EngineConfigError([problem])

    # -- steps ------------------------------------------------------------------------------

    async def _resolve_deployment(self) -> dict[str, Any]:
        """The deployment, read once per binding (its id does not change under its name)."""
        async with self._deployment_lock:
            if self._deployment is not None:
                return self._deployment
            cfg = self.config
            response = await self._request("GET", self._deployment_path())
            if response.status_code == 404:
                raise EngineFailure(
                    f"Prefect has no deployment {cfg.deployment!r} at {cfg.api_url}: check the "
                    "binding's with.deployment ('flow name/deployment name' as `prefect deployment "
                    "ls` lists it, or a deployment id) and that the deployment was created "
                    "(flow.serve(), flow.deploy() or `prefect deploy`)",
                    type="DeploymentNotFound",
                    retryable=False,
                    details={"deployment": cfg.deployment, "field": "with.deployment"},
                )
            if response.status_code != 200:
                raise unexpected_status("prefect", f"reading deployment {cfg.deployment}", response)
            deployment: dict[str, Any] = response.json()
            self._deployment = deployment
            return deployment

    def _run_body(self, task: TaskContext, input: Any) -> dict[str, Any]:
        cfg = self.config
        if cfg.input_parameter:
            parameters: dict[str, Any] = {cfg.input_parameter: input}
        elif isinstance(input, Mapping):
            parameters = dict(input)
        else:
            parameters = {"input": input}
        labels = {
            "accord.run_id": task.run_id,
            "accord.step_id": task.step_id,
            "accord.task_id": task.task_id,
            "accord.contract": f"{task.contract}@{task.contract_version}",
        }
        carrier = outgoing_trace_context(task)
        if carrier.get("traceparent"):
            labels[TRACEPARENT_LABEL] = carrier["traceparent"]
        return {
            "parameters": parameters,
            "labels": labels,
            "tags": ["accord"],
        }

    async def _create_or_attach(
        self, task: TaskContext, deployment: Mapping[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        """Create the flow run for this task, or attach to the one a previous delivery created.

        Prefect answers 201 for a new run and 200 with the existing one when a run of the flow
        already has the idempotency key. A run of ours that failed, crashed or was cancelled
        belongs to an earlier attempt, so a later attempt (``task.attempt`` > generation) moves
        on to the next generation's key."""
        deployment_id = deployment["id"]
        generation = 1
        while True:
            key = idempotency_key_for(str(deployment["name"]), task.idempotency_key, generation)
            response = await self._request(
                "POST",
                f"/deployments/{deployment_id}/create_flow_run",
                json={**body, "idempotency_key": key},
            )
            if response.status_code == 201:
                run: dict[str, Any] = response.json()
                logger.info(
                    "created Prefect flow run",
                    extra={
                        "flow_run_id": run.get("id"),
                        "deployment": self.config.deployment,
                        "task_id": task.task_id,
                    },
                )
                return run
            if response.status_code == 200:
                existing: dict[str, Any] = response.json()
                if _state(existing)[0] in ("FAILED", "CRASHED", "CANCELLED") and generation < task.attempt:
                    generation += 1
                    continue
                logger.info(
                    "attached to existing Prefect flow run",
                    extra={
                        "flow_run_id": existing.get("id"),
                        "state": _state(existing)[0],
                        "task_id": task.task_id,
                    },
                )
                existing["_attached"] = True
                return existing
            raise self._create_failure(response)

    def _create_failure(self, response: httpx.Response) -> EngineFailure:
        cfg = self.config
        status = response.status_code
        detail = error_detail(response)
        if status == 404:
            self._deployment = None  # deleted since it was read: look it up again next time
            return EngineFailure(
                f"Prefect deployment {cfg.deployment!r} no longer exists: {detail}",
                type="DeploymentNotFound",
                retryable=False,
                details={"deployment": cfg.deployment, "field": "with.deployment"},
            )
        if status in (400, 409, 422):
            # 409 "Error creating flow run: Validation failed for field ..." when the parameters
            # break the deployment's enforced parameter schema; 422 for a malformed body.
            return EngineFailure(
                f"Prefect refused to create a flow run of {cfg.deployment!r} (HTTP {status}): {detail}",
                type="FlowRunRejected",
                retryable=False,
                details={"status": status, "deployment": cfg.deployment},
            )
        return unexpected_status("prefect", f"creating a flow run of {cfg.deployment}", response)

    async def _get_run(self, flow_run_id: str) -> dict[str, Any]:
        response = await self._request("GET", f"/flow_runs/{flow_run_id}")
        if response.status_code == 404:
            raise EngineFailure(
                f"Prefect flow run {flow_run_id} no longer exists (deleted in Prefect?)",
                type="FlowRunNotFound",
                retryable=True,
                details={"flow_run_id": flow_run_id},
            )
        if response.status_code != 200:
            raise unexpected_status("prefect", f"reading flow run {flow_run_id}", response)
        run: dict[str, Any] = response.json()
        return run

    async def _poll_until_terminal(self, flow_run_id: str, span: trace.Span) -> dict[str, Any]:
        cfg = self.config
        backoff = Backoff(cfg.poll_interval, cfg.max_poll_interval)
        waiting_since = time.monotonic()
        polls = 0
        transient_errors = 0
        while True:
            polls += 1
            span.set_attribute("prefect.polls", polls)
            try:
                run = await self._get_run(flow_run_id)
                transient_errors = 0
            except EngineFailure as failure:
                # Ride out a short outage (a restarting server); the task's timeout bounds a long one.
                transient_errors += 1
                if not failure.retryable or failure.type == "FlowRunNotFound" or transient_errors >= 10:
                    raise
                logger.warning("polling Prefect failed, will retry: %s", failure.message)
                await backoff.sleep()
                continue
            state_type, state_name, _ = _state(run)
            if state_type in _TERMINAL:
                return run
            if state_type not in _NOT_STARTED:
                waiting_since = time.monotonic()
            elif (
                cfg.scheduled_timeout is not None and time.monotonic() - waiting_since > cfg.scheduled_timeout
            ):
                # Cancel it, or a worker that comes back later would still run it.
                await self._set_state(
                    flow_run_id, "CANCELLED", "No worker picked up the run in time (Accord)."
                )
                raise EngineFailure(
                    f"Prefect flow run {flow_run_id} stayed {state_name or state_type} for more than "
                    f"{cfg.scheduled_timeout:g}s, so it was cancelled: is a worker (or flow.serve()) "
                    f"polling the work pool of deployment {cfg.deployment!r}?",
                    type="FlowRunNotPickedUp",
                    retryable=True,
                    details=self._details(run),
                )
            await backoff.sleep()

    async def _set_state(self, flow_run_id: str, state_type: str, message: str) -> None:
        response = await self._request(
            "POST",
            f"/flow_runs/{flow_run_id}/set_state",
            json={"state": {"type": state_type, "message": message}},
        )
        if response.status_code == 404:
            return
        if response.status_code not in (200, 201):
            raise unexpected_status("prefect", f"setting flow run {flow_run_id} to {state_type}", response)
        result = response.json()
        if result.get("status") != "ACCEPT":
            reason = (result.get("details") or {}).get("reason") or ""
            logger.warning(
                "Prefect did not accept state %s for flow run %s: %s %s",
                state_type,
                flow_run_id,
                result.get("status"),
                reason,
            )

    async def _settled_task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        """The flow run's task runs, for its spans and its failure's details. Prefect 3 records
        task runs from the events the flow's process sends, which may reach the server just
        after the flow run's own final state: a list with a task run not yet finished is read
        again a few times (0.5 s apart), an empty one once."""
        task_runs = await self._task_runs(flow_run_id)
        for attempt in range(4):
            unfinished = not task_runs or any(_state(t)[0] not in _TERMINAL for t in task_runs)
            if not unfinished or (not task_runs and attempt >= 1):
                break
            await asyncio.sleep(0.5)
            task_runs = await self._task_runs(flow_run_id)
        return task_runs

    async def _task_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = await self._request(
                "POST",
                "/task_runs/filter",
                json={
                    "task_runs": {"flow_run_id": {"any_": [flow_run_id]}},
                    "sort": "EXPECTED_START_TIME_ASC",
                    "limit": 200,
                    "offset": offset,
                },
            )
            if response.status_code != 200:
                raise unexpected_status("prefect", f"listing task runs of flow run {flow_run_id}", response)
            batch = response.json()
            runs.extend(batch)
            offset += len(batch)
            if len(batch) < 200:
                return runs

    def _details(self, run: Mapping[str, Any], failed_tasks: list[str] | None = None) -> dict[str, Any]:
        flow_run_id = str(run.get("id") or "")
        state_type, state_name, _ = _state(run)
        details: dict[str, Any] = {
            "flow_run_id": flow_run_id,
            "flow_run_name": run.get("name"),
            "state": state_type,
            "state_name": state_name,
            "prefect_run_url": self.run_url(flow_run_id),
        }
        if failed_tasks:
            details["failed_tasks"] = failed_tasks
        return details

    def _run_failure(self, run: Mapping[str, Any], task_runs: list[dict[str, Any]]) -> EngineFailure:
        """FAILED: the flow's code raised (or returned a failed state): retryable, unless the
        exception type Prefect names is listed in ``non_retryable_errors``. CRASHED: the
        infrastructure failed (the process was killed, the worker lost it): retryable.
        CANCELLED: someone cancelled the run in Prefect: not retried."""
        cfg = self.config
        flow_run_id = str(run.get("id") or "")
        state_type, _, message = _state(run)
        failed = [str(t.get("name")) for t in task_runs if _state(t)[0] in ("FAILED", "CRASHED")]
        details = self._details(run, failed)
        said = message or "(Prefect gave no message)"
        text = f"Prefect flow run {run.get('name')!r} ({flow_run_id}) of {cfg.deployment!r} "
        if state_type == "CANCELLED":
            return EngineFailure(
                text + f"was cancelled in Prefect: {said}",
                type="FlowRunCancelled",
                retryable=False,
                details=details,
            )
        if state_type == "CRASHED":
            return EngineFailure(
                text + f"crashed: {said}", type="FlowRunCrashed", retryable=True, details=details
            )
        match = _EXCEPTION_TYPE.search(message)
        exception_type = match.group(1) if match else None
        if exception_type:
            details["exception_type"] = exception_type
        retryable = not (
            exception_type
            and (
                exception_type in cfg.non_retryable_errors
                or exception_type.rsplit(".", 1)[-1] in cfg.non_retryable_errors
            )
        )
        if failed:
            said += f" (failed task runs: {', '.join(failed)})"
        return EngineFailure(
            text + f"failed: {said}",
            # Like the python engine: the exception's type, so a contract's retry.non_retryable
            # can name it (the example contract lists CardDeclined).
            type=exception_type.rsplit(".", 1)[-1] if exception_type else "FlowRunFailed",
            retryable=retryable,
            details=details,
        )

    async def _fetch_output(self, flow_run_id: str) -> Any:
        cfg = self.config
        response = await self._request(
            "POST",
            "/artifacts/filter",
            json={
                "artifacts": {
                    "flow_run_id": {"any_": [flow_run_id]},
                    "key": {"any_": [cfg.output_artifact]},
                },
                "sort": "CREATED_DESC",
                "limit": 1,
            },
        )
        if response.status_code != 200:
            raise unexpected_status(
                "prefect", f"reading the output artifact of flow run {flow_run_id}", response
            )
        found = response.json()
        if not found:
            raise EngineFailure(
                f"Prefect flow run {flow_run_id} completed but published no artifact with key "
                f"{cfg.output_artifact!r}; make the flow publish its output, e.g. "
                f"Artifact(type='json', key={cfg.output_artifact!r}, data=output).create() "
                "(docs/engines/prefect.md, 'Writing the flow')",
                type="OutputMissing",
                retryable=False,
                details={"flow_run_id": flow_run_id, "prefect_run_url": self.run_url(flow_run_id)},
            )
        data = found[0].get("data")
        if isinstance(data, str):
            # prefect.artifacts.Artifact stores json.dumps(data); a markdown artifact holds text.
            try:
                return json.loads(data)
            except ValueError:
                raise EngineFailure(
                    f"the artifact {cfg.output_artifact!r} of Prefect flow run {flow_run_id} is not "
                    f"JSON (it starts {data[:60]!r}); publish the output with "
                    "Artifact(type='json', ...), not a markdown or link artifact",
                    type="OutputNotJson",
                    retryable=False,
                    details={"flow_run_id": flow_run_id},
                ) from None
        return data

    def _trace_run(self, run: Mapping[str, Any], task_runs: list[dict[str, Any]]) -> None:
        """Spans of the flow run and of each task run that ran, from what Prefect's API says
        (start, end, state), under the current span (the agent's engine span, inside the
        attempt). Never fails the task: a run without times gets no spans."""
        start = _unix_ns(run.get("start_time")) or _unix_ns(run.get("expected_start_time"))
        if start is None:
            return
        flow_run_id = str(run.get("id") or "")
        end = _unix_ns(run.get("end_time")) or time.time_ns()
        state_type, state_name, message = _state(run)
        flow_span = tracer.start_span(
            f"prefect.flow_run {run.get('name')}",
            start_time=start,
            attributes={
                "prefect.deployment": self.config.deployment,
                "prefect.flow_run.id": flow_run_id,
                "prefect.flow_run.name": str(run.get("name") or ""),
                "prefect.flow_run.state": state_type,
                "prefect.flow_run.state_name": state_name,
                "prefect.flow_run.url": self.run_url(flow_run_id),
            },
        )
        if state_type != "COMPLETED":
            flow_span.set_status(trace.Status(trace.StatusCode.ERROR, message or state_type))
        parent = trace.set_span_in_context(flow_span)
        for task_run in task_runs:
            task_start = _unix_ns(task_run.get("start_time"))
            if task_start is None:  # never ran
                continue
            task_type, task_state_name, task_message = _state(task_run)
            span = tracer.start_span(
                f"prefect.task_run {task_run.get('name')}",
                context=parent,
                start_time=task_start,
                attributes={
                    "prefect.task_run.id": str(task_run.get("id") or ""),
                    "prefect.task_run.name": str(task_run.get("name") or ""),
                    "prefect.task_run.task_key": str(task_run.get("task_key") or ""),
                    "prefect.task_run.state": task_type,
                    "prefect.task_run.state_name": task_state_name,
                    "prefect.task_run.run_count": int(task_run.get("run_count") or 0),
                },
            )
            if task_type in ("FAILED", "CRASHED"):
                span.set_status(trace.Status(trace.StatusCode.ERROR, task_message or task_type))
            span.end(end_time=max(_unix_ns(task_run.get("end_time")) or end, task_start))
        flow_span.end(end_time=max(end, start))
