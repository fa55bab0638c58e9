"""The ``argo`` engine: runs a task as one Argo Workflow submitted from a WorkflowTemplate,
through the Argo Server's REST API (docs/engines/argo.md).

1. At agent start the binding's WorkflowTemplate is read
   (``GET /api/v1/workflow-templates/{ns}/{name}``): an unknown one (404), a token refused
   (401/403) are configuration errors naming the binding's field.
2. Every workflow is named ``accord-<sha256(idempotency key)[:24]>`` (``-<n>`` for the n-th
   attempt after earlier ones failed) and labelled ``accord.io/task=<that hash>``. A re-delivered
   task finds the workflow it already submitted by that label
   (``GET /api/v1/workflows/{ns}?listOptions.labelSelector=...``) and attaches to it; a submit
   racing another one gets 409 AlreadyExists and attaches too.
3. ``POST /api/v1/workflows/{ns}/submit`` with ``resourceKind: WorkflowTemplate``, the task's
   input as parameters, the trace context as the ``accord.io/traceparent`` annotation (and as the
   ``traceparent`` parameter when the template declares it).
4. ``GET /api/v1/workflows/{ns}/{name}`` with backoff until ``Succeeded``, ``Failed`` or
   ``Error``. The output is the output parameter ``output_parameter`` of the workflow
   (``status.outputs.parameters``), a JSON text.
5. ``Failed`` (a step of the team's workflow failed, after the template's own retryStrategy) is
   not retried unless ``retry_failed: true``; ``Error`` (Argo could not run it: a pod deleted or
   never scheduled, a controller error) is retryable. Both carry ``status.message`` and the
   failed nodes' messages.
6. Cancel: ``PUT .../{name}/stop``, then wait until the workflow has stopped.

``with:`` keys::

    base_url: https://argo-server.argo:2746  # required
    namespace: payments                      # required
    workflow_template: charge-card           # required
    token: "${secret:ARGO_TOKEN}"            # the Bearer token (a leading "Bearer " is accepted)
    parameters: {order_id: "${input.order_id}"}   # optional; default: the input's top-level fields
    output_parameter: result                 # optional; without it, the workflow summary
    traceparent_parameter: traceparent       # "" to never pass it as a parameter
    retry_failed: false
    poll_interval: 2s
    max_poll_interval: 30s
    stop_timeout: 60s
    timeout: 30s                             # per HTTP request
    verify_tls: true
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from opentelemetry import trace

from team_agent.engines._http_util import (
    TRANSIENT_STATUSES,
    Backoff,
    ConfigReader,
    outgoing_trace_context,
    transport_failure,
)
from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

TASK_LABEL = "accord.io/task"
GENERATION_LABEL = "accord.io/generation"
TRACEPARENT_ANNOTATION = "accord.io/traceparent"
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_TERMINAL = ("Succeeded", "Failed", "Error")
_FAILED = ("Failed", "Error")
# A Kubernetes name: a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.').
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_KNOWN_KEYS = {
    "base_url",
    "namespace",
    "workflow_template",
    "token",
    "parameters",
    "output_parameter",
    "traceparent_parameter",
    "retry_failed",
    "poll_interval",
    "max_poll_interval",
    "stop_timeout",
    "timeout",
    "verify_tls",
}


@dataclass(frozen=True)
class ArgoConfig:
    base_url: str
    namespace: str
    workflow_template: str
    token: str | None
    parameters: Mapping[str, Any] | None
    output_parameter: str | None
    traceparent_parameter: str
    retry_failed: bool
    poll_interval: float
    max_poll_interval: float
    stop_timeout: float
    timeout: float
    verify_tls: bool

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> ArgoConfig:
        r = ConfigReader("argo", config, _KNOWN_KEYS)
        base_url = r.url("base_url")
        namespace = r.string("namespace", required=True) or ""
        if namespace and not _K8S_NAME.match(namespace):
            r.problem("namespace", f"must be a Kubernetes namespace name, got {namespace!r}")
        template = r.string("workflow_template", required=True) or ""
        if template and not _K8S_NAME.match(template):
            r.problem("workflow_template", f"must be a WorkflowTemplate's name, got {template!r}")
        token = r.string("token")
        if token and token.lower().startswith("bearer "):
            token = token[7:].strip()
        parameters = r.config.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
                r.problem("parameters", 'must map parameter names to values, e.g. {order_id: "${input.id}"}')
                parameters = None
            else:
                for name, value in parameters.items():
                    for ref in _REFERENCE.findall(value) if isinstance(value, str) else []:
                        if not (ref == "input" or ref.startswith("input.")):
                            r.problem(
                                f"parameters.{name}",
                                f"references ${{{ref}}}; only ${{input}} and ${{input.path}} are available",
                            )
        traceparent_parameter = r.string("traceparent_parameter", default="traceparent") or ""
        if r.config.get("traceparent_parameter") == "":
            traceparent_parameter = ""
        cfg = cls(
            base_url=base_url,
            namespace=namespace,
            workflow_template=template,
            token=token,
            parameters=parameters,
            output_parameter=r.string("output_parameter"),
            traceparent_parameter=traceparent_parameter,
            retry_failed=r.boolean("retry_failed", False),
            poll_interval=r.duration("poll_interval", 2.0) or 2.0,
            max_poll_interval=r.duration("max_poll_interval", 30.0) or 30.0,
            stop_timeout=r.duration("stop_timeout", 60.0) or 60.0,
            timeout=r.duration("timeout", 30.0) or 30.0,
            verify_tls=r.boolean("verify_tls", True),
        )
        r.raise_if_problems()
        return cfg


def task_hash(idempotency_key: str) -> str:
    """The ``accord.io/task`` label of a step's workflows (a label value: at most 63 characters)."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def workflow_name(idempotency_key: str, generation: int = 1) -> str:
    """The workflow's name for a step's idempotency key (``generation`` > 1 for the workflows
    of later attempts started after earlier ones failed)."""
    return f"accord-{task_hash(idempotency_key)}" + ("" if generation <= 1 else f"-{generation}")


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _lookup(value: Any, path: list[str], whole: str) -> Any:
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise EngineFailure(
                f"argo parameters: ${{{whole}}} is not in the task input",
                type="ParameterMappingError",
                retryable=False,
            )
    return value


def build_parameters(mapping: Mapping[str, Any] | None, input: Any) -> dict[str, str]:
    """Workflow parameters for a task input: from the configured mapping (``${input.x}``
    references, rendered as text; objects and lists as JSON), or by default every top-level field
    of the input (non-strings as JSON)."""
    if mapping is None:
        if not isinstance(input, Mapping):
            return {"input": _render(input)}
        return {str(k): _render(v) for k, v in input.items()}
    params: dict[str, str] = {}
    for name, template in mapping.items():
        if not isinstance(template, str):
            params[name] = _render(template)
            continue
        params[name] = _REFERENCE.sub(
            lambda m: _render(_lookup(input, m.group(1).split(".")[1:], m.group(1))), template
        )
    return params


def _unix_ns(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1_000_000_000)
    except ValueError:
        return None


def _error_message(response: httpx.Response) -> str:
    """The Argo Server's error text: grpc-gateway's ``{"code": N, "message": "..."}``."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, Mapping) and body.get("message"):
        return str(body["message"])[:500]
    return json.dumps(body)[:300]


class ArgoEngine:
    """Engine adapter for the Argo Server's REST API (see the module docstring)."""

    name: ClassVar[str] = "argo"

    def __init__(self, config: Mapping[str, Any], *, check: bool = True) -> None:
        self.config = ArgoConfig.from_mapping(config)
        headers = {"Accept": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        timeout = httpx.Timeout(self.config.timeout, connect=min(self.config.timeout, 10.0))
        self._headers = headers
        self._timeout = timeout
        self._declared: set[str] | None = None  # the template's parameters, once read
        if check:
            self._check_template()
        self._client = httpx.AsyncClient(
            base_url=self.config.base_url,
            headers=headers,
            timeout=timeout,
            verify=self.config.verify_tls,
            follow_redirects=False,
        )

    # -- paths -------------------------------------------------------------------------------

    @property
    def _workflows(self) -> str:
        return f"/api/v1/workflows/{quote(self.config.namespace, safe='')}"

    def _workflow(self, name: str) -> str:
        return f"{self._workflows}/{quote(name, safe='')}"

    def workflow_url(self, name: str) -> str:
        """The workflow in the Argo UI."""
        return f"{self.config.base_url}/workflows/{self.config.namespace}/{name}"

    @property
    def _template_path(self) -> str:
        cfg = self.config
        return f"/api/v1/workflow-templates/{quote(cfg.namespace, safe='')}/{quote(cfg.workflow_template, safe='')}"

    # -- agent start -------------------------------------------------------------------------

    def _remember_parameters(self, response: httpx.Response) -> None:
        try:
            spec = response.json().get("spec") or {}
            declared = (spec.get("arguments") or {}).get("parameters") or []
            self._declared = {str(p.get("name")) for p in declared if isinstance(p, Mapping)}
        except (ValueError, AttributeError):
            self._declared = set()

    async def _declared_parameters(self) -> set[str]:
        """The template's declared parameters; read now when the check at agent start could not
        (the Argo Server was unreachable then)."""
        if self._declared is None:
            response = await self._request("GET", self._template_path)
            if response.status_code == 404:
                raise self._template_missing(response)
            if response.status_code != 200:
                raise self._unexpected(f"reading WorkflowTemplate {self.config.workflow_template}", response)
            self._remember_parameters(response)
        return self._declared or set()

    def _template_missing(self, response: httpx.Response) -> EngineFailure:
        cfg = self.config
        return EngineFailure(
            f"Argo WorkflowTemplate {cfg.workflow_template!r} does not exist in namespace "
            f"{cfg.namespace!r} ({_error_message(response)}); check the binding's workflow_template",
            type="WorkflowTemplateNotFound",
            retryable=False,
            details={"workflow_template": cfg.workflow_template},
        )

    def _check_template(self) -> None:
        """Read the WorkflowTemplate once when the agent loads its config (a blocking call: config
        loading runs before the agent's event loop, and off it on a reload). An unknown template
        or a refused token is a configuration error; an Argo Server that cannot be reached is
        not (it may come up later): the template is then checked by the first submit."""
        cfg = self.config
        path = self._template_path
        try:
            with httpx.Client(
                base_url=cfg.base_url, headers=self._headers, timeout=self._timeout, verify=cfg.verify_tls
            ) as client:
                response = client.get(path)
        except httpx.HTTPError as exc:
            logger.warning(
                "argo: could not check WorkflowTemplate %s/%s at %s (%s: %s); it is checked again "
                "when the first task is submitted",
                cfg.namespace,
                cfg.workflow_template,
                cfg.base_url,
                type(exc).__name__,
                exc,
            )
            return
        status = response.status_code
        if status == 200:
            self._remember_parameters(response)
            return
        message = _error_message(response)
        if status == 404:
            raise EngineConfigError(
                [
                    (
                        "workflow_template",
                        f"argo: WorkflowTemplate {cfg.workflow_template!r} does not exist in namespace "
                        f"{cfg.namespace!r} at {cfg.base_url} ({message}); check workflow_template "
                        "and namespace, or create it (kubectl apply -f the template)",
                    )
                ]
            )
        if status == 401:
            raise EngineConfigError(
                [
                    (
                        "token",
                        f"argo: the Argo Server refused the token (HTTP 401: {message}); give a valid one",
                    )
                ]
            )
        if status == 403:
            raise EngineConfigError(
                [
                    (
                        "namespace",
                        f"argo: the token may not read WorkflowTemplates in namespace {cfg.namespace!r} "
                        f"(HTTP 403: {message}); grant its service account access, or fix namespace",
                    )
                ]
            )
        logger.warning(
            "argo: checking WorkflowTemplate %s/%s answered HTTP %s: %s; it is checked again when "
            "the first task is submitted",
            cfg.namespace,
            cfg.workflow_template,
            status,
            message,
        )

    # -- the adapter interface --------------------------------------------------------------

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        cfg = self.config
        params = build_parameters(cfg.parameters, input)
        carrier = outgoing_trace_context(task)
        traceparent = carrier.get("traceparent", "")
        if (
            traceparent
            and cfg.traceparent_parameter
            and cfg.traceparent_parameter in await self._declared_parameters()
        ):
            params[cfg.traceparent_parameter] = traceparent
        span = trace.get_current_span()
        span.set_attribute("argo.namespace", cfg.namespace)
        span.set_attribute("argo.workflow_template", cfg.workflow_template)
        with tracer.start_as_current_span("argo.submit") as submit_span:
            label = task_hash(task.idempotency_key)
            existing = await self._existing(label)
            generation = 1
            while True:
                name = workflow_name(task.idempotency_key, generation)
                found = existing.get(name)
                if found is not None and found in _FAILED and generation < task.attempt:
                    generation += 1  # that workflow was an earlier, failed attempt
                    continue
                break
            if found is not None:
                attached = True
                logger.info("attached to existing Argo workflow", extra={"workflow": name, "phase": found})
            else:
                attached = await self._submit(name, label, generation, params, traceparent, task)
            submit_span.set_attribute("argo.workflow.name", name)
            submit_span.set_attribute("argo.attached", attached)
        span.set_attribute("argo.workflow.name", name)
        return Handle(
            details={
                "engine": "argo",
                "namespace": cfg.namespace,
                "workflow_template": cfg.workflow_template,
                "workflow": name,
                "argo_workflow_url": self.workflow_url(name),
            },
            state={"workflow": name, "attached": attached},
        )

    async def wait(self, handle: Handle) -> Any:
        cfg = self.config
        name: str = handle.state["workflow"]
        with tracer.start_as_current_span("argo.poll") as poll_span:
            poll_span.set_attribute("argo.workflow.name", name)
            workflow = await self._poll(name)
            phase = str((workflow.get("status") or {}).get("phase"))
            poll_span.set_attribute("argo.workflow.phase", phase)
        self._trace_workflow(workflow)
        status = workflow.get("status") or {}
        if phase != "Succeeded":
            raise self._failure(name, workflow)
        outputs = {
            str(p.get("name")): p.get("value")
            for p in (status.get("outputs") or {}).get("parameters") or []
            if isinstance(p, Mapping)
        }
        if cfg.output_parameter is None:
            return {"workflow": name, "phase": phase, "parameters": outputs}
        if cfg.output_parameter not in outputs or outputs[cfg.output_parameter] is None:
            raise EngineFailure(
                f"Argo workflow {cfg.namespace}/{name} succeeded but has no output parameter "
                f"{cfg.output_parameter!r} (it has: {', '.join(sorted(outputs)) or 'none'}); declare it in "
                "the entrypoint template's outputs.parameters (valueFrom a file or a step's output)",
                type="OutputMissing",
                retryable=False,
                details={"workflow": name, "output_parameters": sorted(outputs)},
            )
        try:
            return json.loads(str(outputs[cfg.output_parameter]))
        except ValueError as exc:
            raise EngineFailure(
                f"output parameter {cfg.output_parameter!r} of Argo workflow {cfg.namespace}/{name} is "
                f"not JSON: {exc}",
                type="OutputNotJson",
                retryable=False,
                details={"workflow": name},
            ) from exc

    async def cancel(self, handle: Handle) -> None:
        name = handle.state.get("workflow")
        if not name:
            return
        response = await self._request("GET", self._workflow(name))
        if response.status_code == 404:
            return
        if response.status_code != 200:
            raise self._unexpected(f"reading workflow {name} to stop it", response)
        if (response.json().get("status") or {}).get("phase") in _TERMINAL:
            return
        response = await self._request(
            "PUT",
            f"{self._workflow(name)}/stop",
            json={"name": name, "namespace": self.config.namespace, "message": "Cancelled by Accord"},
        )
        if response.status_code == 404:
            return
        if response.status_code != 200 and "completed" not in _error_message(response):
            raise self._unexpected(f"stopping workflow {name}", response)
        # Stopping is asynchronous: wait for the controller to finish the workflow.
        deadline = time.monotonic() + self.config.stop_timeout
        backoff = Backoff(min(self.config.poll_interval, 1.0), 5.0)
        while time.monotonic() < deadline:
            response = await self._request("GET", self._workflow(name))
            if response.status_code != 200 or (response.json().get("status") or {}).get("phase") in _TERMINAL:
                logger.info("stopped Argo workflow", extra={"workflow": name})
                return
            await backoff.sleep()
        logger.warning("Argo workflow %s still running %ss after stop", name, self.config.stop_timeout)

    async def close(self) -> None:
        await self._client.aclose()

    # -- HTTP --------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; a transport error or a 502/503/504 is retried a few times with backoff
        (every call made here is safe to repeat: a workflow is submitted under a fixed name)."""
        backoff = Backoff(0.5, 4.0, 2.0)
        attempts = 0
        while True:
            attempts += 1
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                if attempts < 3:
                    await backoff.sleep()
                    continue
                raise transport_failure("Argo Server", exc, self.config.base_url) from exc
            if response.status_code in TRANSIENT_STATUSES and attempts < 3:
                await backoff.sleep()
                continue
            return response

    def _unexpected(self, what: str, response: httpx.Response) -> EngineFailure:
        status = response.status_code
        retryable = status >= 500
        kind = {401: "EngineAuthError", 403: "EnginePermissionDenied"}.get(
            status, "EngineUnavailable" if retryable else "EngineError"
        )
        return EngineFailure(
            f"argo: {what} failed with HTTP {status}: {_error_message(response)}",
            type=kind,
            retryable=retryable,
            details={"status": status, "url": str(response.request.url)},
        )

    # -- steps -------------------------------------------------------------------------------

    async def _existing(self, label: str) -> dict[str, str]:
        """Name → phase of the workflows already submitted for this step (by its label)."""
        response = await self._request(
            "GET", self._workflows, params={"listOptions.labelSelector": f"{TASK_LABEL}={label}"}
        )
        if response.status_code != 200:
            raise self._unexpected("listing this task's workflows", response)
        found: dict[str, str] = {}
        for item in response.json().get("items") or []:  # null when there are none
            meta = item.get("metadata") or {}
            found[str(meta.get("name"))] = str((item.get("status") or {}).get("phase") or "")
        return found

    async def _submit(
        self,
        name: str,
        label: str,
        generation: int,
        params: dict[str, str],
        traceparent: str,
        task: TaskContext,
    ) -> bool:
        """Submit the workflow; True when it already existed (a racing delivery submitted it)."""
        cfg = self.config
        annotations = [f"accord.io/run={task.run_id}", f"accord.io/step={task.step_id}"]
        if traceparent:
            annotations.append(f"{TRACEPARENT_ANNOTATION}={traceparent}")
        body = {
            "namespace": cfg.namespace,
            "resourceKind": "WorkflowTemplate",
            "resourceName": cfg.workflow_template,
            "submitOptions": {
                "name": name,
                "labels": f"{TASK_LABEL}={label},{GENERATION_LABEL}={generation}",
                "annotations": ",".join(a for a in annotations if "," not in a),
                "parameters": [f"{k}={v}" for k, v in params.items()],
            },
        }
        response = await self._request("POST", f"{self._workflows}/submit", json=body)
        status = response.status_code
        if status == 200:
            logger.info(
                "submitted Argo workflow",
                extra={"workflow": name, "workflow_template": cfg.workflow_template},
            )
            return False
        message = _error_message(response)
        if status == 409:
            logger.info("Argo workflow %s already exists: attaching to it", name)
            return True
        if status == 404:
            raise self._template_missing(response)
        if status == 400:
            raise EngineFailure(
                f"Argo refused to submit {cfg.workflow_template!r}: {message}",
                type="WorkflowRejected",
                retryable=False,
                details={"workflow_template": cfg.workflow_template},
            )
        raise self._unexpected(f"submitting {cfg.workflow_template}", response)

    async def _poll(self, name: str) -> dict[str, Any]:
        backoff = Backoff(self.config.poll_interval, self.config.max_poll_interval)
        transient = 0
        while True:
            try:
                response = await self._request("GET", self._workflow(name))
            except EngineFailure:
                transient += 1
                if transient >= 10:
                    raise
                await backoff.sleep()
                continue
            if response.status_code == 404:
                raise EngineFailure(
                    f"Argo workflow {self.config.namespace}/{name} vanished (deleted, or garbage-collected "
                    "by its ttlStrategy before the agent read its result)",
                    type="WorkflowLost",
                    retryable=True,
                    details={"workflow": name},
                )
            if response.status_code != 200:
                failure = self._unexpected(f"reading workflow {name}", response)
                transient += 1
                if not failure.retryable or transient >= 10:
                    raise failure
                await backoff.sleep()
                continue
            transient = 0
            workflow: dict[str, Any] = response.json()
            if (workflow.get("status") or {}).get("phase") in _TERMINAL:
                return workflow
            await backoff.sleep()

    def _failure(self, name: str, workflow: Mapping[str, Any]) -> EngineFailure:
        cfg = self.config
        status = workflow.get("status") or {}
        phase = str(status.get("phase"))
        nodes = [n for n in (status.get("nodes") or {}).values() if isinstance(n, Mapping)]
        failed = [
            n
            for n in nodes
            if n.get("phase") in _FAILED
            and n.get("type") not in ("Steps", "DAG", "StepGroup", "TaskGroup")
            and n.get("id") != name
        ]
        message = f"Argo workflow {cfg.namespace}/{name} {phase}"
        if status.get("message"):
            message += f": {status['message']}"
        if failed:
            message += "; " + "; ".join(
                f"step {n.get('displayName') or n.get('name')}: {n.get('message') or n.get('phase')}"
                for n in failed
            )
        message += f" ({self.workflow_url(name)})"
        stopped = (workflow.get("spec") or {}).get("shutdown") is not None
        kind = "WorkflowStopped" if stopped else "WorkflowError" if phase == "Error" else "WorkflowFailed"
        return EngineFailure(
            message,
            type=kind,
            retryable=phase == "Error" or cfg.retry_failed,
            details={
                "workflow": name,
                "phase": phase,
                "message": str(status.get("message") or ""),
                "argo_workflow_url": self.workflow_url(name),
                "failed_nodes": [
                    {"name": n.get("displayName"), "phase": n.get("phase"), "message": n.get("message")}
                    for n in failed
                ],
            },
        )

    def _trace_workflow(self, workflow: Mapping[str, Any]) -> None:
        """The workflow and its nodes (``status.nodes``: start, finish, phase) as spans under the
        current span (the agent's engine span), parents following the nodes' ``children``
        (docs/engines/argo.md, "Tracing"). Nodes that never started get none."""
        status = workflow.get("status") or {}
        name = str((workflow.get("metadata") or {}).get("name"))
        nodes: dict[str, Mapping[str, Any]] = {
            k: v for k, v in (status.get("nodes") or {}).items() if isinstance(v, Mapping)
        }
        start = _unix_ns(status.get("startedAt"))
        if start is None:
            return
        end = _unix_ns(status.get("finishedAt")) or start
        phase = str(status.get("phase"))
        root = tracer.start_span(
            f"argo.workflow {name}",
            start_time=start,
            attributes={
                "argo.workflow.name": name,
                "argo.workflow.phase": phase,
                "argo.workflow.url": self.workflow_url(name),
            },
        )
        if phase in _FAILED:
            root.set_status(trace.Status(trace.StatusCode.ERROR, f"workflow {phase}"))
        parent_of: dict[str, str] = {}
        for node_id, node in nodes.items():
            for child in node.get("children") or []:
                parent_of.setdefault(str(child), node_id)
        spans: dict[str, trace.Span] = {}

        def span_of(node_id: str, seen: frozenset[str] = frozenset()) -> trace.Span:
            if node_id in spans:
                return spans[node_id]
            node = nodes[node_id]
            parent_id = parent_of.get(node_id)
            if node_id == name or parent_id is None or parent_id not in nodes or parent_id in seen:
                parent = root
            else:
                parent = span_of(parent_id, seen | {node_id})
            node_phase = str(node.get("phase"))
            span = tracer.start_span(
                f"argo.node {node.get('displayName') or node_id}",
                context=trace.set_span_in_context(parent),
                start_time=_unix_ns(node.get("startedAt")) or start,
                attributes={
                    "argo.node.id": node_id,
                    "argo.node.name": str(node.get("name") or ""),
                    "argo.node.type": str(node.get("type") or ""),
                    "argo.node.phase": node_phase,
                    "argo.node.template": str(node.get("templateName") or ""),
                },
            )
            if node_phase in _FAILED:
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(node.get("message") or node_phase)))
            spans[node_id] = span
            return span

        for node_id, node in nodes.items():
            if node.get("startedAt") and node.get("phase") not in ("Skipped", "Omitted"):
                span_of(node_id)
        # End children before parents, each at its own finish (or the workflow's).
        for node_id in reversed(list(spans)):
            spans[node_id].end(end_time=_unix_ns(nodes[node_id].get("finishedAt")) or end)
        root.end(end_time=end)
