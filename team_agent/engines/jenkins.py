"""The ``jenkins`` engine: runs a task as one build of a parameterized Jenkins job.

1. Auth: a user and an API token (HTTP Basic, exempt from CSRF crumbs), or a user and a
   password (a crumb from ``/crumbIssuer/api/json`` plus the session cookie it is bound to).
2. Every build gets a unique ``ACCORD_TASK_ID`` parameter derived from the step's idempotency
   key, and ``TRACEPARENT``. The unique parameter stops Jenkins from merging two triggers into one
   queued item (its 303), and lets a re-delivered task find the build it already started: the
   queue and the job's recent builds are searched for it before triggering.
3. ``POST {job}/buildWithParameters?delay=0sec``; the queue item (from ``Location``) is followed
   until it has ``executable.number`` (or was cancelled); the build is polled until
   ``building`` is false.
4. ``SUCCESS`` completes (``UNSTABLE`` too with ``unstable: success``); any other result fails
   with the tail of ``consoleText``. The output is the JSON artifact ``output_artifact``.

``with:`` keys::

    base_url: http://jenkins:8080        # required
    job: team/charge-card                # required; folders separated by "/"
    username: ...                        # required
    api_token: ...                       # either this (preferred) ...
    password: ...                        # ... or this (crumb + session cookie)
    parameters: {ORDER: "${input.order_id}"}   # optional; default: the input's top-level scalars
    output_artifact: accord-output.json  # optional; without it the output is the build summary
    unstable: failure                    # or success
    poll_interval: 2s
    max_poll_interval: 30s
    console_tail_lines: 60
    search_depth: 50                     # recent builds searched for a re-delivered task
    stop_timeout: 60s                    # how long cancel waits for an aborted build to stop
    timeout: 30s                         # per HTTP request
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlparse

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
from team_agent.engines.base import EngineFailure, Handle, TaskContext

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

TASK_ID_PARAM = "ACCORD_TASK_ID"
TRACEPARENT_PARAM = "TRACEPARENT"
_QUEUE_ID = re.compile(r"/queue/item/(\d+)/?")
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_FAILED_RESULTS = ("FAILURE", "ABORTED", "NOT_BUILT")
_BUILD_TREE = (
    "number,url,building,inProgress,result,duration,timestamp,queueId,artifacts[relativePath,fileName]"
)
_KNOWN_KEYS = {
    "base_url",
    "job",
    "username",
    "api_token",
    "password",
    "parameters",
    "output_artifact",
    "unstable",
    "poll_interval",
    "max_poll_interval",
    "console_tail_lines",
    "search_depth",
    "stop_timeout",
    "timeout",
}


@dataclass(frozen=True)
class JenkinsConfig:
    base_url: str
    job: str
    username: str
    api_token: str | None
    password: str | None
    parameters: Mapping[str, Any] | None
    output_artifact: str | None
    unstable_is_success: bool
    poll_interval: float
    max_poll_interval: float
    console_tail_lines: int
    search_depth: int
    stop_timeout: float
    timeout: float
    job_path: str = field(default="")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> JenkinsConfig:
        r = ConfigReader("jenkins", config, _KNOWN_KEYS)
        base_url = r.url("base_url")
        job = (r.string("job", required=True) or "").strip("/")
        if job and any(not part for part in job.split("/")):
            r.problem("job", f"has an empty folder name: {job!r}")
        username = r.string("username", required=True) or ""
        api_token = r.string("api_token")
        password = r.string("password")
        if bool(api_token) == bool(password):
            r.problem(
                "api_token",
                "give exactly one of api_token (preferred: no CSRF crumb needed) or password",
            )
        parameters = r.config.get("parameters")
        if parameters is not None:
            if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
                r.problem("parameters", 'must map parameter names to values, e.g. {ORDER: "${input.id}"}')
                parameters = None
            else:
                for name, value in parameters.items():
                    if name in (TASK_ID_PARAM, TRACEPARENT_PARAM):
                        r.problem(f"parameters.{name}", "is reserved: the agent sets it itself")
                    for ref in _REFERENCE.findall(value) if isinstance(value, str) else []:
                        if not (ref == "input" or ref.startswith("input.")):
                            r.problem(
                                f"parameters.{name}",
                                f"references ${{{ref}}}; only ${{input}} and ${{input.path}} are available",
                            )
        output_artifact = r.string("output_artifact")
        if output_artifact is not None:
            output_artifact = output_artifact.strip("/")
        cfg = cls(
            base_url=base_url,
            job=job,
            username=username,
            api_token=api_token,
            password=password,
            parameters=parameters,
            output_artifact=output_artifact,
            unstable_is_success=r.choice("unstable", ("success", "failure"), "failure") == "success",
            poll_interval=r.duration("poll_interval", 2.0) or 2.0,
            max_poll_interval=r.duration("max_poll_interval", 30.0) or 30.0,
            console_tail_lines=r.integer("console_tail_lines", 60),
            search_depth=r.integer("search_depth", 50),
            stop_timeout=r.duration("stop_timeout", 60.0) or 60.0,
            timeout=r.duration("timeout", 30.0) or 30.0,
            # A name containing "/" (a multibranch branch) is given encoded, as feature%2Fx.
            job_path="".join(f"/job/{quote(unquote(part), safe='')}" for part in job.split("/")),
        )
        r.raise_if_problems()
        return cfg


def task_id_param(idempotency_key: str, generation: int = 1) -> str:
    """The ``ACCORD_TASK_ID`` parameter for a step's idempotency key (``generation`` > 1 for the
    builds of later attempts started after earlier ones failed)."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
    return f"accord-{digest}" + ("" if generation <= 1 else f"-{generation}")


def _lookup(value: Any, path: list[str], whole: str) -> Any:
    for part in path:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise EngineFailure(
                f"jenkins parameters: ${{{whole}}} is not in the task input",
                type="ParameterMappingError",
                retryable=False,
            )
    return value


def _as_parameter(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def build_parameters(mapping: Mapping[str, Any] | None, input: Any) -> dict[str, str]:
    """Jenkins parameters for a task input: from the configured mapping (a value that is exactly
    ``${input.x}`` keeps its value, rendered for Jenkins; text around references makes a string),
    or by default every top-level scalar field of the input."""
    if mapping is None:
        if not isinstance(input, Mapping):
            return {}
        return {
            str(k): _as_parameter(v)
            for k, v in input.items()
            if v is None or isinstance(v, str | int | float | bool)
        }
    params: dict[str, str] = {}
    for name, template in mapping.items():
        if not isinstance(template, str):
            params[name] = _as_parameter(template)
            continue
        whole = _REFERENCE.fullmatch(template)
        if whole:
            params[name] = _as_parameter(_lookup(input, whole.group(1).split(".")[1:], whole.group(1)))
        else:
            params[name] = _REFERENCE.sub(
                lambda m: _as_parameter(_lookup(input, m.group(1).split(".")[1:], m.group(1))), template
            )
    return params


def _parameters_of(item: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters of a queue item or build, from its ``ParametersAction``."""
    found: dict[str, Any] = {}
    for action in item.get("actions") or []:
        if isinstance(action, Mapping):
            for p in action.get("parameters") or []:
                if isinstance(p, Mapping) and "name" in p:
                    found[p["name"]] = p.get("value")
    return found


class JenkinsEngine:
    """Engine adapter for Jenkins' remote access API (see the module docstring)."""

    name: ClassVar[str] = "jenkins"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = JenkinsConfig.from_mapping(config)
        secret = self.config.api_token or self.config.password or ""
        self._client = httpx.AsyncClient(
            base_url=self.config.base_url,
            auth=httpx.BasicAuth(self.config.username, secret),
            follow_redirects=False,  # a 303 Location names the merged queue item; keep it
            timeout=httpx.Timeout(self.config.timeout, connect=min(self.config.timeout, 10.0)),
        )
        self._crumb: tuple[str, str] | None = None  # (header, value), with a password only
        self._crumb_lock = asyncio.Lock()

    # -- the adapter interface --------------------------------------------------------------

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        cfg = self.config
        params = build_parameters(cfg.parameters, input)
        carrier = outgoing_trace_context(task)
        span = trace.get_current_span()
        span.set_attribute("jenkins.job", cfg.job)
        with tracer.start_as_current_span("jenkins.trigger") as trigger_span:
            trigger_span.set_attribute("jenkins.job", cfg.job)
            generation = 1
            while True:
                accord_id = task_id_param(task.idempotency_key, generation)
                found = await self._find_existing(accord_id)
                if found is None:
                    handle = await self._trigger(
                        accord_id, {**params, TRACEPARENT_PARAM: carrier.get("traceparent", "")}
                    )
                    break
                if found.get("result") in _FAILED_RESULTS and generation < task.attempt:
                    generation += 1  # that build was an earlier, failed attempt
                    continue
                handle = found["handle"]
                handle.state["attached"] = True
                logger.info(
                    "attached to existing Jenkins work", extra={"accord_task_id": accord_id, **handle.details}
                )
                break
            trigger_span.set_attribute("jenkins.accord_task_id", accord_id)
            if "queue_id" in handle.state:
                trigger_span.set_attribute("jenkins.queue_id", handle.state["queue_id"])
        return handle

    async def wait(self, handle: Handle) -> Any:
        cfg = self.config
        with tracer.start_as_current_span("jenkins.queue"):
            if handle.state.get("build_number") is None:
                await self._follow_queue(handle)
        number: int = handle.state["build_number"]
        trace.get_current_span().set_attribute("jenkins.build.number", number)
        with tracer.start_as_current_span("jenkins.poll") as poll_span:
            poll_span.set_attribute("jenkins.build.number", number)
            build = await self._poll_build(number)
            poll_span.set_attribute("jenkins.build.result", str(build.get("result")))
        await self._trace_build(number, build)
        result = build.get("result")
        if result == "SUCCESS" or (result == "UNSTABLE" and cfg.unstable_is_success):
            with tracer.start_as_current_span("jenkins.fetch_output"):
                if cfg.output_artifact is None:
                    return {"build_number": number, "build_url": self.build_url(number), "result": result}
                return await self._fetch_artifact(number, build)
        raise await self._build_failure(number, str(result))

    async def cancel(self, handle: Handle) -> None:
        if handle.state.get("build_number") is None and "queue_id" in handle.state:
            queue_id = handle.state["queue_id"]
            response = await self._post("/queue/cancelItem", params={"id": queue_id})
            if response.status_code in (200, 204, 302):
                logger.info("cancelled Jenkins queue item", extra={"queue_id": queue_id})
                return
            if response.status_code not in (404, 422):
                raise unexpected_status("jenkins", f"cancelling queue item {queue_id}", response)
            # Gone from the queue (or no longer cancellable): it may have become a build.
            item = await self._queue_item(queue_id)
            executable = (item or {}).get("executable") or {}
            if executable.get("number") is None:
                number = await self._build_for_queue_id(queue_id)
                if number is None:
                    return
                handle.state["build_number"] = number
            else:
                handle.state["build_number"] = executable["number"]
        number = handle.state.get("build_number")
        if number is None:
            return
        build = await self._build(number)
        if not build.get("building"):
            return
        response = await self._post(f"{self.config.job_path}/{number}/stop")
        if response.status_code not in (200, 302, 303):
            raise unexpected_status("jenkins", f"stopping build #{number}", response)
        # Aborting is asynchronous: wait for the build to actually stop.
        deadline = time.monotonic() + self.config.stop_timeout
        backoff = Backoff(min(self.config.poll_interval, 1.0), 5.0)
        while time.monotonic() < deadline:
            build = await self._build(number)
            if not build.get("building"):
                logger.info(
                    "stopped Jenkins build", extra={"build_number": number, "result": build.get("result")}
                )
                return
            await backoff.sleep()
        logger.warning("Jenkins build #%s still running %ss after stop", number, self.config.stop_timeout)

    async def close(self) -> None:
        await self._client.aclose()

    # -- URLs -------------------------------------------------------------------------------

    def build_url(self, number: int) -> str:
        return f"{self.config.base_url}{self.config.job_path}/{number}/"

    # -- HTTP -------------------------------------------------------------------------------

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        backoff = Backoff(0.5, 4.0, 2.0)
        for attempt in range(1, 4):
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                if attempt < 3:
                    await backoff.sleep()
                    continue
                raise transport_failure("Jenkins", exc, self.config.base_url) from exc
            if response.status_code in TRANSIENT_STATUSES and attempt < 3:
                await backoff.sleep()  # Jenkins answers 503 while it restarts
                continue
            if response.status_code == 401:
                raise EngineFailure(
                    f"Jenkins at {self.config.base_url} refused the credentials of user "
                    f"{self.config.username!r} (HTTP 401: {error_detail(response)}); check the binding's "
                    "username and api_token/password",
                    type="EngineAuthError",
                    retryable=False,
                )
            return response
        raise AssertionError("unreachable")

    async def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        return await self._send("GET", path, **kwargs)

    async def _fetch_crumb(self) -> tuple[str, str] | None:
        response = await self._get("/crumbIssuer/api/json")
        if response.status_code == 404:
            return None  # CSRF protection is off
        if response.status_code != 200:
            raise unexpected_status("jenkins", "getting a CSRF crumb", response)
        body = response.json()
        return (body.get("crumbRequestField") or "Jenkins-Crumb", body["crumb"])

    async def _post(self, path: str, **kwargs: Any) -> httpx.Response:
        """A POST with a crumb when authenticating by password (the session cookie that the crumb
        is bound to stays in the client's cookie jar). A rejected crumb is fetched again once."""
        if self.config.password is None:
            return await self._send("POST", path, **kwargs)
        for fresh in (False, True):
            async with self._crumb_lock:
                if self._crumb is None or fresh:
                    self._crumb = await self._fetch_crumb()
                crumb = self._crumb
            headers = {crumb[0]: crumb[1]} if crumb else {}
            response = await self._send("POST", path, headers=headers, **kwargs)
            if not (response.status_code == 403 and "crumb" in response.text.lower()):
                return response
        return response

    # -- steps ------------------------------------------------------------------------------

    def _is_our_job(self, url: str | None) -> bool:
        return bool(url) and urlparse(str(url)).path.rstrip("/").endswith(self.config.job_path)

    async def _find_existing(self, accord_id: str) -> dict[str, Any] | None:
        """The queue item or build already started for ``accord_id``, if any."""
        response = await self._get(
            "/queue/api/json", params={"tree": "items[id,task[url],actions[parameters[name,value]]]"}
        )
        if response.status_code != 200:
            raise unexpected_status("jenkins", "reading the queue", response)
        for item in response.json().get("items") or []:
            task = item.get("task") or {}
            if self._is_our_job(task.get("url")) and _parameters_of(item).get(TASK_ID_PARAM) == accord_id:
                queue_id = int(item["id"])
                return {"handle": self._handle(queue_id=queue_id), "result": None}
        depth = self.config.search_depth
        response = await self._get(
            f"{self.config.job_path}/api/json",
            params={
                "tree": f"builds[number,queueId,result,building,actions[parameters[name,value]]]{{0,{depth}}}"
            },
        )
        if response.status_code == 404:
            raise self._job_missing(response)
        if response.status_code != 200:
            raise unexpected_status("jenkins", f"reading job {self.config.job}", response)
        for build in response.json().get("builds") or []:
            if _parameters_of(build).get(TASK_ID_PARAM) == accord_id:
                number = int(build["number"])
                handle = self._handle(queue_id=build.get("queueId"), build_number=number)
                return {"handle": handle, "result": build.get("result")}
        return None

    def _handle(self, *, queue_id: int | None, build_number: int | None = None) -> Handle:
        details: dict[str, Any] = {"engine": "jenkins", "job": self.config.job}
        state: dict[str, Any] = {}
        if queue_id is not None:
            details["queue_id"] = queue_id
            state["queue_id"] = int(queue_id)
        if build_number is not None:
            details["build_number"] = build_number
            details["build_url"] = self.build_url(build_number)
        state["build_number"] = build_number
        return Handle(details=details, state=state)

    def _job_missing(self, response: httpx.Response) -> EngineFailure:
        return EngineFailure(
            f"Jenkins job {self.config.job!r} does not exist at {self.config.base_url} (HTTP 404); "
            "check the binding's job (folders separated by '/')",
            type="JobNotFound",
            retryable=False,
            details={"status": response.status_code},
        )

    async def _trigger(self, accord_id: str, params: dict[str, str]) -> Handle:
        form = {**params, TASK_ID_PARAM: accord_id}
        response = await self._post(
            f"{self.config.job_path}/buildWithParameters", params={"delay": "0sec"}, data=form
        )
        status = response.status_code
        if status in (201, 303):
            location = response.headers.get("location", "")
            match = _QUEUE_ID.search(location)
            if not match:
                raise EngineFailure(
                    f"Jenkins accepted the build of {self.config.job!r} but its Location header "
                    f"({location!r}) names no queue item",
                    type="EngineError",
                    retryable=True,
                )
            queue_id = int(match.group(1))
            if status == 303:
                # Identical parameters, ACCORD_TASK_ID included: the same task triggered twice.
                logger.info("Jenkins merged the trigger into queued item %s", queue_id)
            else:
                logger.info(
                    "triggered Jenkins build",
                    extra={"job": self.config.job, "queue_id": queue_id, "accord_task_id": accord_id},
                )
            return self._handle(queue_id=queue_id)
        detail = error_detail(response, 300)
        if status == 404:
            raise self._job_missing(response)
        if status == 400:
            raise EngineFailure(
                f"Jenkins refused to build {self.config.job!r}: {detail} (the job needs parameters, "
                f"at least {TASK_ID_PARAM}, so that triggers are never merged)",
                type="JobNotParameterized",
                retryable=False,
            )
        if status == 409:
            raise EngineFailure(
                f"Jenkins job {self.config.job!r} is not buildable (disabled?): {detail}",
                type="JobNotBuildable",
                retryable=False,
            )
        raise unexpected_status("jenkins", f"triggering {self.config.job}", response)

    async def _queue_item(self, queue_id: int) -> dict[str, Any] | None:
        response = await self._get(f"/queue/item/{queue_id}/api/json")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise unexpected_status("jenkins", f"reading queue item {queue_id}", response)
        item: dict[str, Any] = response.json()
        return item

    async def _build_for_queue_id(self, queue_id: int) -> int | None:
        response = await self._get(
            f"{self.config.job_path}/api/json",
            params={"tree": f"builds[number,queueId]{{0,{self.config.search_depth}}}"},
        )
        if response.status_code != 200:
            raise unexpected_status("jenkins", f"reading job {self.config.job}", response)
        for build in response.json().get("builds") or []:
            if build.get("queueId") == queue_id:
                return int(build["number"])
        return None

    async def _follow_queue(self, handle: Handle) -> None:
        queue_id: int = handle.state["queue_id"]
        backoff = Backoff(self.config.poll_interval, self.config.max_poll_interval)
        while True:
            item = await self._queue_item(queue_id)
            if item is None:
                # A left item is kept 5 minutes; after that, match queueId among the builds.
                number = await self._build_for_queue_id(queue_id)
                if number is None:
                    raise EngineFailure(
                        f"Jenkins queue item {queue_id} of {self.config.job!r} vanished without a build",
                        type="QueueItemLost",
                        retryable=True,
                        details={"queue_id": queue_id},
                    )
                break
            if item.get("cancelled"):
                raise EngineFailure(
                    f"Jenkins queue item {queue_id} of {self.config.job!r} was cancelled before it started",
                    type="BuildCancelled",
                    retryable=True,
                    details={"queue_id": queue_id},
                )
            executable = item.get("executable") or {}
            if executable.get("number") is not None:
                number = int(executable["number"])
                break
            await backoff.sleep()
        handle.state["build_number"] = number
        handle.details["build_number"] = number
        handle.details["build_url"] = self.build_url(number)

    async def _trace_build(self, number: int, build: Mapping[str, Any]) -> None:
        """Spans of the build and of each Pipeline stage that ran, from the Stage View REST API
        (``wfapi/describe``: start, duration, status, a link to the stage's log), under the
        current span (the agent's engine span, inside the attempt) (docs/engines/jenkins.md,
        "Tracing"). A freestyle job or a Jenkins without the plugin (404) gets the build span
        alone. Never fails the task."""
        url = self.build_url(number)
        described: dict[str, Any] = {}
        try:
            response = await self._get(f"{self.config.job_path}/{number}/wfapi/describe")
            if response.status_code == 200 and isinstance(response.json(), dict):
                described = response.json()
        except (EngineFailure, ValueError) as exc:
            logger.warning("could not read the stages of build #%s: %s", number, exc)
        start_ms = int(described.get("startTimeMillis") or build.get("timestamp") or 0)
        if not start_ms:
            return
        end_ms = int(described.get("endTimeMillis") or 0) or start_ms + int(build.get("duration") or 0)
        result = str(build.get("result") or "")
        build_span = tracer.start_span(
            f"jenkins.build #{number}",
            start_time=start_ms * 1_000_000,
            attributes={
                "jenkins.build.number": number,
                "jenkins.build.result": result,
                "jenkins.build.url": url,
                "jenkins.build.console_url": f"{url}console",
            },
        )
        if result not in ("SUCCESS", "UNSTABLE"):
            build_span.set_status(trace.Status(trace.StatusCode.ERROR, f"build #{number} {result}"))
        parent = trace.set_span_in_context(build_span)
        for stage in described.get("stages") or []:
            stage_start = int(stage.get("startTimeMillis") or 0)
            status = str(stage.get("status") or "")
            if not stage_start or status == "NOT_EXECUTED":  # never ran: no span
                continue
            node = str(stage.get("id") or "")
            span = tracer.start_span(
                f"jenkins.stage {stage.get('name')}",
                context=parent,
                start_time=stage_start * 1_000_000,
                attributes={
                    "jenkins.stage.id": node,
                    "jenkins.stage.name": str(stage.get("name") or ""),
                    "jenkins.stage.status": status,
                    "jenkins.stage.log_url": f"{url}execution/node/{quote(node, safe='')}/wfapi/log",
                },
            )
            if status in ("FAILED", "ABORTED"):
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"stage {stage.get('name')} {status}"))
            span.end(end_time=(stage_start + int(stage.get("durationMillis") or 0)) * 1_000_000)
        build_span.end(end_time=max(end_ms, start_ms) * 1_000_000)

    async def _build(self, number: int) -> dict[str, Any]:
        response = await self._get(f"{self.config.job_path}/{number}/api/json", params={"tree": _BUILD_TREE})
        if response.status_code != 200:
            raise unexpected_status("jenkins", f"reading build #{number}", response)
        build: dict[str, Any] = response.json()
        return build

    async def _poll_build(self, number: int) -> dict[str, Any]:
        backoff = Backoff(self.config.poll_interval, self.config.max_poll_interval)
        transient_errors = 0
        while True:
            try:
                build = await self._build(number)
                transient_errors = 0
            except EngineFailure as failure:
                transient_errors += 1
                if not failure.retryable or transient_errors >= 10:
                    raise
                await backoff.sleep()
                continue
            if not build.get("building") and build.get("result") is not None:
                return build
            await backoff.sleep()

    async def _console_tail(self, number: int) -> str:
        try:
            response = await self._get(f"{self.config.job_path}/{number}/consoleText")
        except EngineFailure:
            return ""
        if response.status_code != 200:
            return ""
        lines = response.text.splitlines()[-self.config.console_tail_lines :]
        return "\n".join(lines)[-8000:]

    async def _build_failure(self, number: int, result: str) -> EngineFailure:
        tail = await self._console_tail(number)
        kinds = {"FAILURE": "BuildFailed", "ABORTED": "BuildAborted", "NOT_BUILT": "BuildNotBuilt"}
        last = tail.strip().splitlines()[-1] if tail.strip() else ""
        return EngineFailure(
            f"Jenkins build {self.config.job} #{number} finished {result}"
            + (f": {last}" if last else "")
            + f" ({self.build_url(number)}console)",
            type=kinds.get(result, "BuildUnstable" if result == "UNSTABLE" else "BuildFailed"),
            retryable=True,
            details={"build_url": self.build_url(number), "result": result, "console_tail": tail},
        )

    async def _fetch_artifact(self, number: int, build: Mapping[str, Any]) -> Any:
        path = self.config.output_artifact
        assert path is not None
        response = await self._get(f"{self.config.job_path}/{number}/artifact/{quote(path, safe='/')}")
        if response.status_code == 404:
            archived = [a.get("relativePath") for a in build.get("artifacts") or []]
            raise EngineFailure(
                f"Jenkins build {self.config.job} #{number} succeeded but archived no {path!r} "
                f"(archived: {', '.join(map(str, archived)) or 'nothing'}); write it and "
                "archiveArtifacts it in the Jenkinsfile",
                type="OutputMissing",
                retryable=False,
                details={"build_url": self.build_url(number), "artifacts": archived},
            )
        if response.status_code != 200:
            raise unexpected_status("jenkins", f"reading artifact {path} of #{number}", response)
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise EngineFailure(
                f"artifact {path!r} of Jenkins build {self.config.job} #{number} is not JSON: {exc}",
                type="OutputNotJson",
                retryable=False,
                details={"build_url": self.build_url(number)},
            ) from exc
