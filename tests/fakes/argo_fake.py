"""A faithful fake of the Argo Server's REST API (Argo Workflows 3.x), as a Starlette app.

Written from Argo's published OpenAPI description (``api/openapi-spec/swagger.json``:
``WorkflowService``, ``WorkflowTemplateService``, the ``io.argoproj.workflow.v1alpha1`` models)
and its docs (``docs/rest-api.md``, ``docs/access-token.md``, ``docs/workflow-templates.md``,
``docs/fields.md``). What it reproduces:

- auth: ``Authorization: Bearer <token>``; a missing or wrong token → 401
  ``{"code": 16, "message": "token not valid. see https://argo-workflows.readthedocs.io/en/latest/faq/"}``;
  a token that may not use a namespace → 403 ``{"code": 7, "message": "... is forbidden: ..."}``
  (the grpc-gateway error shape: the gRPC code and its message; HTTP status from the code);
- ``GET /api/v1/workflow-templates/{ns}/{name}``: the template, or 404 ``{"code": 5, "message":
  "workflowtemplates.argoproj.io \\"x\\" not found"}``;
- ``POST /api/v1/workflows/{ns}/submit`` (``WorkflowSubmitRequest``: ``resourceKind``,
  ``resourceName``, ``submitOptions`` with ``name``, ``labels`` and ``annotations`` as
  ``"k=v,k2=v2"`` strings, ``parameters`` as ``["name=value"]``): the created Workflow; a name in
  use → 409 code 6 ``workflows.argoproj.io "x" already exists``; a parameter the template
  declares without a value and the submit does not give → 400 code 3
  ``spec.arguments.x.value is required``; parameters the template does not declare are appended;
- the labels Argo's controller sets: ``workflows.argoproj.io/workflow-template``,
  ``workflows.argoproj.io/phase``, ``workflows.argoproj.io/completed``;
- ``GET /api/v1/workflows/{ns}?listOptions.labelSelector=k=v,k2=v2``: a ``WorkflowList`` whose
  ``items`` is ``null`` when nothing matches (as Argo's Go encoder writes an empty list);
- ``GET /api/v1/workflows/{ns}/{name}``: the workflow, its ``status.phase`` going ``""`` →
  ``Pending`` → ``Running`` → ``Succeeded``/``Failed``/``Error``, ``status.message``,
  ``status.startedAt``/``finishedAt`` (RFC 3339), ``status.nodes`` (the entrypoint's ``Steps``
  node, whose id is the workflow's name, and one ``Pod`` node per step with its ``phase``,
  ``message`` such as ``Error (exit code 1)``, times), ``status.outputs.parameters``;
- ``PUT /api/v1/workflows/{ns}/{name}/stop``: the workflow is shut down with strategy Stop
  asynchronously (``spec.shutdown: Stop``; running nodes fail with
  ``workflow shutdown with strategy:  Stop``; the workflow ends ``Failed`` with
  ``Stopped with strategy 'Stop'``); stopping a completed workflow → 500 code 2
  ``cannot shutdown a completed workflow``; 404 code 5 for an unknown one.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# gRPC status codes and the HTTP statuses grpc-gateway maps them to.
_HTTP_OF_CODE = {2: 500, 3: 400, 5: 404, 6: 409, 7: 403, 16: 401}
_TERMINAL = ("Succeeded", "Failed", "Error")


def grpc_error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=_HTTP_OF_CODE[code])


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(int(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Outcome:
    """How a workflow ends: its phase, the failing step (a ``Pod`` node failing with
    ``node_message``) and the entrypoint's output parameters (name → string value)."""

    phase: str = "Succeeded"
    outputs: dict[str, str] = field(default_factory=dict)
    failed_step: str | None = None
    node_message: str = "Error (exit code 1)"
    message: str | None = None  # status.message; Argo's default for a failed child otherwise


@dataclass
class FakeTemplate:
    name: str
    namespace: str = "payments"
    # Declared spec.arguments.parameters: name → default value (None: required at submit).
    parameters: dict[str, str | None] = field(default_factory=dict)
    steps: list[str] = field(default_factory=lambda: ["main"])
    pending: float = 0.05  # before the controller picks the workflow up (phase "" then Pending)
    duration: float = 0.1  # running time, shared equally by the steps
    stop_delay: float = 0.05  # a stop takes effect this long after it is asked
    behaviour: Callable[[dict[str, str]], Outcome] = field(default=lambda params: Outcome())


@dataclass
class FakeWorkflow:
    name: str
    namespace: str
    template: FakeTemplate
    uid: str
    labels: dict[str, str]
    annotations: dict[str, str]
    parameters: dict[str, str]
    created: float
    outcome: Outcome
    stop_at: float | None = None
    stopped: bool = False


class FakeArgo:
    """State and behaviour of the fake. ``app`` is the ASGI app to serve."""

    def __init__(self, *, tokens: dict[str, set[str]] | None = None) -> None:
        # bearer token → the namespaces it may use ("*": all)
        self.tokens = tokens if tokens is not None else {"argo-token-1": {"*"}}
        self.templates: dict[tuple[str, str], FakeTemplate] = {}
        self.workflows: dict[tuple[str, str], FakeWorkflow] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._uids = itertools.count(1)
        self._lock = threading.RLock()
        self.app = Starlette(
            routes=[
                Route("/api/v1/workflow-templates/{ns}/{name}", self._get_template, methods=["GET"]),
                Route("/api/v1/workflows/{ns}/submit", self._submit, methods=["POST"]),
                Route("/api/v1/workflows/{ns}", self._list, methods=["GET"]),
                Route("/api/v1/workflows/{ns}/{name}", self._get, methods=["GET"]),
                Route("/api/v1/workflows/{ns}/{name}/stop", self._stop, methods=["PUT"]),
            ]
        )
        self.app.add_middleware(_Recorder, fake=self)

    # -- test helpers ------------------------------------------------------------------------

    def add_template(self, template: FakeTemplate) -> FakeTemplate:
        self.templates[(template.namespace, template.name)] = template
        return template

    def submits(self, status: int | None = None) -> int:
        return sum(
            1 for m, p, s in self.requests if m == "POST" and p.endswith("/submit") and status in (None, s)
        )

    def workflow(self, name: str, namespace: str = "payments") -> FakeWorkflow:
        return self.workflows[(namespace, name)]

    # -- auth --------------------------------------------------------------------------------

    def _auth(self, request: Request, ns: str, resource: str) -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.startswith("Bearer ") else None
        if token is None or token not in self.tokens:
            return grpc_error(16, "token not valid. see https://argo-workflows.readthedocs.io/en/latest/faq/")
        allowed = self.tokens[token]
        if "*" not in allowed and ns not in allowed:
            return grpc_error(
                7,
                f'{resource} is forbidden: User "system:serviceaccount:argo:accord" cannot access '
                f'resource "{resource}" in API group "argoproj.io" in the namespace "{ns}"',
            )
        return None

    # -- the workflow as the controller would have it now -------------------------------------

    def _render(self, wf: FakeWorkflow, now: float) -> dict[str, Any]:
        t = wf.template
        picked = wf.created + t.pending
        started = picked + t.pending  # Pending until the first pod runs
        end = started + t.duration
        outcome = wf.outcome
        if wf.stop_at is not None and wf.stop_at < end and now >= wf.stop_at:
            end, wf.stopped = wf.stop_at, True
        phase = ""
        if now >= picked:
            phase = "Pending"
        if now >= started:
            phase = "Running"
        if now >= end:
            phase = "Failed" if wf.stopped else outcome.phase
        step_len = t.duration / max(len(t.steps), 1)
        nodes: dict[str, Any] = {}
        children: list[str] = []
        failed_at = t.steps.index(outcome.failed_step) if outcome.failed_step in t.steps else None
        for i, step in enumerate(t.steps):
            s_start = started + i * step_len
            if now < s_start or (failed_at is not None and i > failed_at) or s_start >= end:
                break
            s_end = min(s_start + step_len, end)
            node_id = f"{wf.name}-{int(hashlib.sha256(f'{wf.name}/{step}'.encode()).hexdigest()[:8], 16)}"
            node: dict[str, Any] = {
                "id": node_id,
                "name": f"{wf.name}[{i}].{step}",
                "displayName": step,
                "type": "Pod",
                "templateName": step,
                "phase": "Running",
                "startedAt": rfc3339(s_start),
                "boundaryID": wf.name,
                "progress": "0/1",
            }
            if now >= s_end:
                node["finishedAt"] = rfc3339(s_end)
                node["progress"] = "1/1"
                if wf.stopped and s_end == end:
                    node["phase"], node["message"] = "Failed", "workflow shutdown with strategy:  Stop"
                elif i == failed_at and phase in ("Failed", "Error"):
                    node["phase"], node["message"] = outcome.phase, outcome.node_message
                else:
                    node["phase"] = "Succeeded"
            nodes[node_id] = node
            children.append(node_id)
        status: dict[str, Any] = {"phase": phase, "progress": f"{len(children)}/{len(t.steps)}"}
        if phase:
            status["startedAt"] = rfc3339(picked)
            nodes[wf.name] = {
                "id": wf.name,
                "name": wf.name,
                "displayName": wf.name,
                "type": "Steps",
                "templateName": "main",
                "phase": "Running" if phase in ("Pending", "Running") else phase,
                "startedAt": rfc3339(picked),
                "children": children[:1],
            }
            # Steps chain: each step's node is the child of the one before it.
            for a, b in itertools.pairwise(children):
                nodes[a]["children"] = [b]
            status["nodes"] = nodes
        if phase in _TERMINAL:
            status["finishedAt"] = rfc3339(end)
            nodes[wf.name]["finishedAt"] = rfc3339(end)
            if wf.stopped:
                status["message"] = "Stopped with strategy 'Stop'"
            elif phase != "Succeeded":
                failing = next(
                    (n for n in nodes.values() if n["phase"] == phase and n["type"] == "Pod"), None
                )
                status["message"] = outcome.message or (
                    f"child '{failing['id']}' failed" if failing else outcome.node_message
                )
                nodes[wf.name]["message"] = status["message"]
            else:
                params = [{"name": k, "value": v} for k, v in outcome.outputs.items()]
                if params:
                    status["outputs"] = {"parameters": params}
                    nodes[wf.name]["outputs"] = status["outputs"]
        labels = dict(wf.labels)
        labels["workflows.argoproj.io/workflow-template"] = t.name
        if phase:
            labels["workflows.argoproj.io/phase"] = phase
        if phase in _TERMINAL:
            labels["workflows.argoproj.io/completed"] = "true"
        spec: dict[str, Any] = {
            "arguments": {"parameters": [{"name": k, "value": v} for k, v in wf.parameters.items()]},
            "workflowTemplateRef": {"name": t.name},
        }
        if wf.stop_at is not None:
            spec["shutdown"] = "Stop"
        return {
            "metadata": {
                "name": wf.name,
                "namespace": wf.namespace,
                "uid": wf.uid,
                "resourceVersion": str(int(now * 1000)),
                "creationTimestamp": rfc3339(wf.created),
                "labels": labels,
                "annotations": dict(wf.annotations),
            },
            "spec": spec,
            "status": status,
        }

    # -- endpoints ---------------------------------------------------------------------------

    async def _get_template(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        if denied := self._auth(request, ns, "workflowtemplates.argoproj.io"):
            return denied
        t = self.templates.get((ns, name))
        if t is None:
            return grpc_error(5, f'workflowtemplates.argoproj.io "{name}" not found')
        return JSONResponse(
            {
                "metadata": {"name": t.name, "namespace": t.namespace},
                "spec": {
                    "entrypoint": "main",
                    "arguments": {
                        "parameters": [
                            {"name": k} if v is None else {"name": k, "value": v}
                            for k, v in t.parameters.items()
                        ]
                    },
                    "templates": [{"name": "main", "steps": [[{"name": s, "template": s}] for s in t.steps]}],
                },
            }
        )

    async def _submit(self, request: Request) -> Response:
        ns = request.path_params["ns"]
        if denied := self._auth(request, ns, "workflows.argoproj.io"):
            return denied
        body = await request.json()
        if body.get("resourceKind") not in ("WorkflowTemplate", "workflowtemplate"):
            return grpc_error(3, f"unsupported resource kind '{body.get('resourceKind')}'")
        name = body.get("resourceName", "")
        t = self.templates.get((ns, name))
        if t is None:
            return grpc_error(5, f'workflowtemplates.argoproj.io "{name}" not found')
        opts = body.get("submitOptions") or {}
        params: dict[str, str | None] = dict(t.parameters)
        for p in opts.get("parameters") or []:
            key, sep, value = str(p).partition("=")
            if not sep:
                return grpc_error(3, f"expected parameter of the form: NAME=VALUE. Received: {p}")
            params[key] = value
        for key, value in params.items():
            if value is None:
                return grpc_error(3, f"spec.arguments.{key}.value is required")
        with self._lock:
            wf_name = opts.get("name") or f"{name}-{next(self._uids):05d}"
            if (ns, wf_name) in self.workflows:
                return grpc_error(6, f'workflows.argoproj.io "{wf_name}" already exists')
            final = {k: str(v) for k, v in params.items()}
            wf = FakeWorkflow(
                name=wf_name,
                namespace=ns,
                template=t,
                uid=f"00000000-0000-4000-8000-{next(self._uids):012d}",
                labels=_pairs(opts.get("labels")),
                annotations=_pairs(opts.get("annotations")),
                parameters=final,
                created=time.time(),
                outcome=t.behaviour(dict(final)),
            )
            self.workflows[(ns, wf_name)] = wf
            return JSONResponse(self._render(wf, time.time()))

    async def _list(self, request: Request) -> Response:
        ns = request.path_params["ns"]
        if denied := self._auth(request, ns, "workflows.argoproj.io"):
            return denied
        selector = _pairs(request.query_params.get("listOptions.labelSelector"))
        now = time.time()
        with self._lock:
            items = [
                w
                for w in (self._render(wf, now) for (n, _), wf in self.workflows.items() if n == ns)
                if all(w["metadata"]["labels"].get(k) == v for k, v in selector.items())
            ]
        return JSONResponse({"metadata": {"resourceVersion": str(int(now * 1000))}, "items": items or None})

    async def _get(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        if denied := self._auth(request, ns, "workflows.argoproj.io"):
            return denied
        with self._lock:
            wf = self.workflows.get((ns, name))
            if wf is None:
                return grpc_error(5, f'workflows.argoproj.io "{name}" not found')
            return JSONResponse(self._render(wf, time.time()))

    async def _stop(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        if denied := self._auth(request, ns, "workflows.argoproj.io"):
            return denied
        now = time.time()
        with self._lock:
            wf = self.workflows.get((ns, name))
            if wf is None:
                return grpc_error(5, f'workflows.argoproj.io "{name}" not found')
            if self._render(wf, now)["status"]["phase"] in _TERMINAL:
                return grpc_error(
                    2, f'cannot shutdown a completed workflow: workflow: "{name}", namespace: "{ns}"'
                )
            if wf.stop_at is None:
                wf.stop_at = now + wf.template.stop_delay
            return JSONResponse(self._render(wf, now))


def _pairs(text: str | None) -> dict[str, str]:
    """``"k=v,k2=v2"`` (submit labels and annotations, a label selector) as a dict."""
    found: dict[str, str] = {}
    for part in (text or "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            found[key.strip()] = value.strip()
    return found


class _Recorder:
    """ASGI middleware recording (method, path, status) of every request."""

    def __init__(self, app: Any, fake: FakeArgo) -> None:
        self.app, self.fake = app, fake

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.fake.requests.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, record)
