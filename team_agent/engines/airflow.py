"""The ``airflow`` engine: runs a task as one DAG run through Airflow's stable REST API.

Airflow 3 (``/api/v2``, JWT from ``POST /auth/token``) by default; Airflow 2 (``/api/v1``, HTTP
Basic) with ``api_version: 1``. One task is one DAG run:

1. check the DAG: it exists, has no import errors and is not paused (a paused DAG would accept
   the run and leave it queued for ever, so fail fast, or unpause it with ``unpause: true``);
2. trigger it with ``logical_date: null``, the task input as ``conf``, the caller's trace context
   in ``conf["airflow/dagrun_parent_trace_context"]``, and a ``dag_run_id`` derived from the step's
   idempotency key: a re-delivered task gets 409 and attaches to the run it already started;
3. poll the run with backoff until ``success`` or ``failed``;
4. read the configured task's XCom (``output: {task_id, key}``) as the output.

``with:`` keys::

    base_url: http://127.0.0.1:8080      # required
    dag_id: charge_card                  # required
    username: ...                        # required (JWT login on v2, Basic auth on v1)
    password: ...
    output: {task_id: finalize, key: return_value}   # optional; without it the output is the run summary
    unpause: false                       # unpause a paused DAG instead of failing
    poll_interval: 2s                    # first poll interval; grows by 1.5x ...
    max_poll_interval: 30s               # ... up to this
    queued_timeout: 10m                  # fail a run that stays queued this long (optional)
    api_version: 2                       # 1 for Airflow 2's /api/v1
    timeout: 30s                         # per HTTP request
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
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
from team_agent.engines.base import EngineFailure, Handle, TaskContext

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

#: The conf key Airflow (apache/airflow PR #69633) reads as the DAG run's parent trace context.
TRACE_CONF_KEY = "airflow/dagrun_parent_trace_context"

# Airflow's default [scheduler] allowed_run_id_pattern is ^[A-Za-z0-9_.~:+-]+$; run_id is VARCHAR(250).
_RUN_ID_FORBIDDEN = re.compile(r"[^A-Za-z0-9_.~:+-]")
_RUN_ID_MAX = 250
_TERMINAL = ("success", "failed")
_KNOWN_KEYS = {
    "base_url",
    "dag_id",
    "username",
    "password",
    "output",
    "unpause",
    "poll_interval",
    "max_poll_interval",
    "queued_timeout",
    "api_version",
    "timeout",
}


@dataclass(frozen=True)
class AirflowConfig:
    base_url: str
    dag_id: str
    username: str
    password: str
    output_task_id: str | None
    output_key: str
    unpause: bool
    poll_interval: float
    max_poll_interval: float
    queued_timeout: float | None
    api_version: int
    timeout: float

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> AirflowConfig:
        r = ConfigReader("airflow", config, _KNOWN_KEYS)
        base_url = r.url("base_url")
        dag_id = r.string("dag_id", required=True) or ""
        username = r.string("username", required=True) or ""
        password = r.string("password", required=True) or ""
        output_task_id: str | None = None
        output_key = "return_value"
        output = r.config.get("output")
        if output is not None:
            if not isinstance(output, Mapping):
                r.problem("output", "must be a mapping such as {task_id: finalize, key: return_value}")
            else:
                for extra in sorted(set(output) - {"task_id", "key"}):
                    r.problem(f"output.{extra}", "unknown key (known keys: key, task_id)")
                task_id = output.get("task_id")
                if not isinstance(task_id, str) or not task_id:
                    r.problem("output.task_id", "is required: the task whose XCom is the output")
                else:
                    output_task_id = task_id
                key = output.get("key", "return_value")
                if not isinstance(key, str) or not key:
                    r.problem("output.key", f"must be a non-empty string, got {key!r}")
                else:
                    output_key = key
        cfg = cls(
            base_url=base_url,
            dag_id=dag_id,
            username=username,
            password=password,
            output_task_id=output_task_id,
            output_key=output_key,
            unpause=r.boolean("unpause", False),
            poll_interval=r.duration("poll_interval", 2.0) or 2.0,
            max_poll_interval=r.duration("max_poll_interval", 30.0) or 30.0,
            queued_timeout=r.duration("queued_timeout", None),
            api_version=r.choice("api_version", (1, 2), 2),
            timeout=r.duration("timeout", 30.0) or 30.0,
        )
        r.raise_if_problems()
        return cfg


def dag_run_id_for(idempotency_key: str, generation: int = 1) -> str:
    """The ``dag_run_id`` for a step's idempotency key. The same key always gives the same id, so
    a re-delivered task finds its run; ``generation`` > 1 names the runs of later attempts started
    after earlier ones failed. Characters Airflow rejects are replaced, and a hash of the key is
    appended whenever that (or truncation) could make two keys collide."""
    base = _RUN_ID_FORBIDDEN.sub("-", idempotency_key)
    suffix = "" if generation <= 1 else f"__{generation}"
    budget = _RUN_ID_MAX - len("accord__") - len(suffix)
    if base != idempotency_key or len(base) > budget:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]
        base = f"{base[: budget - 17]}-{digest}"
    return f"accord__{base}{suffix}"


# Task instance states of an instance that did not run (TaskInstanceState).
_NEVER_RAN = frozenset({"upstream_failed", "skipped", "removed", "scheduled", "queued", None})


def _unix_ns(value: Any) -> int | None:
    """An Airflow timestamp (ISO 8601 with a zone) as ns since the epoch; None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1_000


class AirflowEngine:
    """Engine adapter for Apache Airflow's REST API (see the module docstring)."""

    name: ClassVar[str] = "airflow"

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = AirflowConfig.from_mapping(config)
        self._api = "/api/v1" if self.config.api_version == 1 else "/api/v2"
        auth = (
            httpx.BasicAuth(self.config.username, self.config.password)
            if self.config.api_version == 1
            else None
        )
        self._client = httpx.AsyncClient(
            base_url=self.config.base_url,
            auth=auth,
            follow_redirects=False,
            timeout=httpx.Timeout(self.config.timeout, connect=min(self.config.timeout, 10.0)),
        )
        self._token: str | None = None
        self._login_lock = asyncio.Lock()

    # -- the adapter interface --------------------------------------------------------------

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        cfg = self.config
        span = trace.get_current_span()
        span.set_attribute("airflow.dag_id", cfg.dag_id)
        conf: dict[str, Any] = dict(input) if isinstance(input, Mapping) else {"input": input}
        carrier = outgoing_trace_context(task)
        if carrier.get("traceparent"):
            conf[TRACE_CONF_KEY] = carrier["traceparent"] if len(carrier) == 1 else carrier
        with tracer.start_as_current_span("airflow.trigger") as trigger_span:
            trigger_span.set_attribute("airflow.dag_id", cfg.dag_id)
            await self._check_dag()
            run = await self._trigger_or_attach(task, conf)
            run_id = run["dag_run_id"]
            trigger_span.set_attribute("airflow.dag_run.run_id", run_id)
            trigger_span.set_attribute("airflow.dag_run.state", str(run.get("state")))
        span.set_attribute("airflow.dag_run.run_id", run_id)
        return Handle(
            details={
                "engine": "airflow",
                "dag_id": cfg.dag_id,
                "dag_run_id": run_id,
                "airflow_run_url": self.run_url(run_id),
            },
            state={"dag_run_id": run_id, "attached": run.get("_attached", False)},
        )

    async def wait(self, handle: Handle) -> Any:
        cfg = self.config
        run_id: str = handle.state["dag_run_id"]
        span = trace.get_current_span()
        span.set_attribute("airflow.dag_id", cfg.dag_id)
        span.set_attribute("airflow.dag_run.run_id", run_id)
        with tracer.start_as_current_span("airflow.poll") as poll_span:
            poll_span.set_attribute("airflow.dag_id", cfg.dag_id)
            poll_span.set_attribute("airflow.dag_run.run_id", run_id)
            run = await self._poll_until_terminal(run_id, poll_span)
            poll_span.set_attribute("airflow.dag_run.state", run["state"])
        try:
            instances: list[dict[str, Any]] | None = await self._task_instances(run_id)
        except EngineFailure as exc:
            logger.warning("could not list the task instances of run %s: %s", run_id, exc.message)
            instances = None
        self._trace_run(run, instances or [])
        if run["state"] == "failed":
            raise await self._run_failure(run_id, instances)
        with tracer.start_as_current_span("airflow.fetch_output") as out_span:
            out_span.set_attribute("airflow.dag_run.run_id", run_id)
            if cfg.output_task_id is None:
                return {"dag_run_id": run_id, "state": run["state"], "conf": run.get("conf")}
            out_span.set_attribute("airflow.task_id", cfg.output_task_id)
            return await self._fetch_output(run_id)

    async def cancel(self, handle: Handle) -> None:
        run_id = handle.state.get("dag_run_id")
        if not run_id:
            return
        path = self._run_path(run_id)
        response = await self._request("GET", path)
        if response.status_code == 404:
            return
        if response.status_code != 200:
            raise unexpected_status("airflow", f"reading DAG run {run_id} to cancel it", response)
        if response.json().get("state") in _TERMINAL:
            return
        response = await self._request(
            "PATCH", path, json={"state": "failed", "note": "Cancelled by Accord (task cancelled)."}
        )
        if response.status_code not in (200, 404):
            raise unexpected_status("airflow", f"cancelling DAG run {run_id}", response)
        logger.info("cancelled Airflow DAG run", extra={"dag_id": self.config.dag_id, "dag_run_id": run_id})

    async def close(self) -> None:
        await self._client.aclose()

    # -- URLs -------------------------------------------------------------------------------

    def task_log_url(self, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
        """Where a person reads one task instance's log in Airflow's UI."""
        dag, run, task = (quote(v, safe="") for v in (self.config.dag_id, run_id, task_id))
        if self.config.api_version == 1:
            url = f"{self.config.base_url}/dags/{dag}/grid?dag_run_id={run}&task_id={task}&tab=logs"
            return url + (f"&map_index={map_index}" if map_index >= 0 else "")
        mapped = f"/mapped/{map_index}" if map_index >= 0 else ""
        return f"{self.config.base_url}/dags/{dag}/runs/{run}/tasks/{task}{mapped}?try_number={max(try_number, 1)}"

    def _trace_run(self, run: Mapping[str, Any], instances: list[dict[str, Any]]) -> None:
        """Spans of the DAG run and of each task instance that ran, from what Airflow's API says
        (start, end, state, try number, a link to the task's log), under the current span (the
        agent's engine span, inside the attempt), so the trace goes into the team's DAG
        (docs/engines/airflow.md, "Tracing"). Spans of the team's engine: other teams see the
        hop only. Never fails the task: a run without times gets no spans."""
        start = _unix_ns(run.get("start_date")) or _unix_ns(run.get("queued_at"))
        if start is None:
            return
        run_id = str(run.get("dag_run_id") or "")
        end = _unix_ns(run.get("end_date")) or time.time_ns()
        state = str(run.get("state") or "")
        dag_span = tracer.start_span(
            f"airflow.dag_run {self.config.dag_id}",
            start_time=start,
            attributes={
                "airflow.dag_id": self.config.dag_id,
                "airflow.dag_run.run_id": run_id,
                "airflow.dag_run.state": state,
                "airflow.dag_run.url": self.run_url(run_id),
            },
        )
        if state == "failed":
            dag_span.set_status(trace.Status(trace.StatusCode.ERROR, f"DAG run {run_id} failed"))
        parent = trace.set_span_in_context(dag_span)
        for ti in sorted(instances, key=lambda t: (str(t.get("start_date") or ""), str(t.get("task_id")))):
            ti_start = _unix_ns(ti.get("start_date"))
            # Never ran: no span. (Airflow 3 stamps an upstream_failed or skipped instance with a
            # start and an end at the moment it was marked.)
            if ti_start is None or ti.get("state") in _NEVER_RAN:
                continue
            task_id = str(ti.get("task_id") or "")
            index = ti.get("map_index")
            map_index = int(index) if isinstance(index, int) else -1
            label = f"{task_id}[{map_index}]" if map_index >= 0 else task_id
            try_number = int(ti.get("try_number") or 0)
            ti_state = str(ti.get("state") or "")
            span = tracer.start_span(
                f"airflow.task {label}",
                context=parent,
                start_time=ti_start,
                attributes={
                    "airflow.task_id": task_id,
                    "airflow.map_index": map_index,
                    "airflow.task.state": ti_state,
                    "airflow.task.try_number": try_number,
                    "airflow.task.log_url": self.task_log_url(run_id, task_id, map_index, try_number),
                },
            )
            if ti_state == "failed":
                span.set_status(trace.Status(trace.StatusCode.ERROR, f"task {label} {ti_state}"))
            span.end(end_time=max(_unix_ns(ti.get("end_date")) or end, ti_start))
        dag_span.end(end_time=max(end, start))

    def run_url(self, run_id: str) -> str:
        """Where a person looks at the run in Airflow's UI."""
        dag = quote(self.config.dag_id, safe="")
        run = quote(run_id, safe="")
        if self.config.api_version == 1:
            return f"{self.config.base_url}/dags/{dag}/grid?dag_run_id={run}"
        return f"{self.config.base_url}/dags/{dag}/runs/{run}"

    def _dag_path(self) -> str:
        return f"{self._api}/dags/{quote(self.config.dag_id, safe='')}"

    def _run_path(self, run_id: str) -> str:
        return f"{self._dag_path()}/dagRuns/{quote(run_id, safe='')}"

    # -- HTTP with auth ---------------------------------------------------------------------

    async def _login(self, stale: str | None) -> str:
        async with self._login_lock:
            if self._token is not None and self._token != stale:
                return self._token  # another task logged in meanwhile
            try:
                response = await self._client.post(
                    "/auth/token",
                    json={"username": self.config.username, "password": self.config.password},
                )
            except httpx.HTTPError as exc:
                raise transport_failure("Airflow", exc, self.config.base_url) from exc
            if response.status_code in (200, 201):
                token = response.json().get("access_token")
                if isinstance(token, str) and token:
                    self._token = token
                    return token
            if response.status_code in (400, 401, 422):
                raise EngineFailure(
                    f"Airflow at {self.config.base_url} refused the login of user "
                    f"{self.config.username!r} (HTTP {response.status_code}: {error_detail(response)}); "
                    "check the binding's username and password",
                    type="EngineAuthError",
                    retryable=False,
                )
            raise unexpected_status("airflow", "logging in (POST /auth/token)", response)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call: logs in (v2) when needed and again when the token expired, and retries
        a proxy's 502/503/504, and Airflow's own 500, a few times with backoff. Airflow answers
        500 when its metadata database is momentarily busy (seen on a loaded machine: "Serious
        error when handling your request" to a PATCH that set a run failed); every call made
        here is safe to repeat (a DAG run is triggered under its step's fixed run id)."""
        backoff = Backoff(0.5, 4.0, 2.0)
        relogged = False
        attempts = 0
        while True:
            attempts += 1
            headers = {}
            token = None
            if self.config.api_version == 2:
                token = self._token or await self._login(None)
                headers["Authorization"] = f"Bearer {token}"
            try:
                response = await self._client.request(method, path, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                if attempts < 3:
                    await backoff.sleep()
                    continue
                raise transport_failure("Airflow", exc, self.config.base_url) from exc
            if self.config.api_version == 2 and not relogged and _token_rejected(response):
                # API clients have no refresh endpoint: log in again, once per call.
                relogged = True
                await self._login(token)
                continue
            if (response.status_code in TRANSIENT_STATUSES or response.status_code == 500) and attempts < 3:
                await backoff.sleep()
                continue
            return response

    # -- steps ------------------------------------------------------------------------------

    async def _check_dag(self) -> None:
        cfg = self.config
        response = await self._request("GET", self._dag_path())
        if response.status_code == 404:
            raise EngineFailure(
                f"Airflow DAG {cfg.dag_id!r} does not exist at {cfg.base_url} (or is stale: its file "
                "was removed); check the binding's dag_id and that the DAG file is in the dags folder",
                type="DagNotFound",
                retryable=False,
                details={"dag_id": cfg.dag_id},
            )
        if response.status_code != 200:
            raise unexpected_status("airflow", f"reading DAG {cfg.dag_id}", response)
        dag = response.json()
        if dag.get("has_import_errors"):
            raise EngineFailure(
                f"Airflow DAG {cfg.dag_id!r} has import errors and cannot be triggered; fix the DAG "
                "file (Airflow UI: Dags > Import errors)",
                type="DagImportError",
                retryable=False,
                details={"dag_id": cfg.dag_id, "fileloc": dag.get("fileloc")},
            )
        if dag.get("is_paused"):
            if not cfg.unpause:
                raise EngineFailure(
                    f"Airflow DAG {cfg.dag_id!r} is paused: a run would stay queued until someone "
                    "unpauses it. Unpause the DAG, or set 'unpause: true' in the binding to let the "
                    "agent do it",
                    type="DagPaused",
                    retryable=False,
                    details={"dag_id": cfg.dag_id},
                )
            response = await self._request(
                "PATCH",
                self._dag_path(),
                params={"update_mask": "is_paused"},
                json={"is_paused": False},
            )
            if response.status_code != 200:
                raise unexpected_status("airflow", f"unpausing DAG {cfg.dag_id}", response)
            logger.info("unpaused Airflow DAG", extra={"dag_id": cfg.dag_id})

    async def _trigger_or_attach(self, task: TaskContext, conf: dict[str, Any]) -> dict[str, Any]:
        """Trigger the run for this task, or attach to the one a previous delivery started.

        Runs are named ``dag_run_id_for(key, generation)``. A run that exists and has not failed
        is this task's run: attach to it (never trigger twice). A failed one belongs to an earlier
        attempt, so a later attempt (``task.attempt`` > generation) moves on to the next name."""
        generation = 1
        while True:
            run_id = dag_run_id_for(task.idempotency_key, generation)
            body: dict[str, Any] = {"dag_run_id": run_id, "conf": conf}
            if self.config.api_version == 2:
                body["logical_date"] = None  # required but nullable in v2
            response = await self._request("POST", f"{self._dag_path()}/dagRuns", json=body)
            if response.status_code in (200, 201):
                logger.info(
                    "triggered Airflow DAG run",
                    extra={"dag_id": self.config.dag_id, "dag_run_id": run_id, "task_id": task.task_id},
                )
                run: dict[str, Any] = response.json()
                return run
            if response.status_code == 409:
                found = await self._request("GET", self._run_path(run_id))
                if found.status_code == 404:
                    # The conflict was on logical_date (Airflow 2 defaults it to "now"), not on
                    # our run id: nothing of ours exists, so trying again is safe.
                    raise EngineFailure(
                        f"Airflow refused to trigger DAG {self.config.dag_id!r} with a conflict that "
                        f"is not on run id {run_id}: {error_detail(response)}",
                        type="DagRunConflict",
                        retryable=True,
                    )
                if found.status_code != 200:
                    raise unexpected_status("airflow", f"reading DAG run {run_id}", found)
                existing: dict[str, Any] = found.json()
                if existing.get("state") == "failed" and generation < task.attempt:
                    generation += 1
                    continue
                logger.info(
                    "attached to existing Airflow DAG run",
                    extra={"dag_run_id": run_id, "state": existing.get("state"), "task_id": task.task_id},
                )
                existing["_attached"] = True
                return existing
            raise self._trigger_failure(response)

    def _trigger_failure(self, response: httpx.Response) -> EngineFailure:
        cfg = self.config
        status = response.status_code
        detail = error_detail(response)
        if status == 404:
            return EngineFailure(
                f"Airflow DAG {cfg.dag_id!r} does not exist at {cfg.base_url}: {detail}",
                type="DagNotFound",
                retryable=False,
            )
        if status == 400 and "import error" in detail:
            return EngineFailure(
                f"Airflow DAG {cfg.dag_id!r} has import errors and cannot be triggered: {detail}",
                type="DagImportError",
                retryable=False,
            )
        if status in (400, 422):
            return EngineFailure(
                f"Airflow refused to trigger DAG {cfg.dag_id!r} (HTTP {status}): {detail}",
                type="DagRunRejected",
                retryable=False,
                details={"status": status},
            )
        return unexpected_status("airflow", f"triggering DAG {cfg.dag_id}", response)

    async def _get_run(self, run_id: str) -> dict[str, Any]:
        response = await self._request("GET", self._run_path(run_id))
        if response.status_code != 200:
            raise unexpected_status("airflow", f"reading DAG run {run_id}", response)
        run: dict[str, Any] = response.json()
        return run

    async def _poll_until_terminal(self, run_id: str, span: trace.Span) -> dict[str, Any]:
        cfg = self.config
        backoff = Backoff(cfg.poll_interval, cfg.max_poll_interval)
        queued_since = time.monotonic()
        polls = 0
        transient_errors = 0
        while True:
            polls += 1
            span.set_attribute("airflow.polls", polls)
            try:
                run = await self._get_run(run_id)
                transient_errors = 0
            except EngineFailure as failure:
                # Keep polling through a short outage (a restarting API server); the task's own
                # timeout bounds a long one.
                transient_errors += 1
                if not failure.retryable or transient_errors >= 10:
                    raise
                logger.warning("polling Airflow failed, will retry: %s", failure.message)
                await backoff.sleep()
                continue
            state = run.get("state")
            if state in _TERMINAL:
                return run
            if state != "queued":
                queued_since = time.monotonic()
            elif cfg.queued_timeout is not None and time.monotonic() - queued_since > cfg.queued_timeout:
                raise EngineFailure(
                    f"Airflow DAG run {run_id} stayed queued for more than {cfg.queued_timeout:g}s: "
                    f"is DAG {cfg.dag_id!r} paused, at max_active_runs, or is the scheduler down?",
                    type="DagRunStuckQueued",
                    retryable=True,
                    details=self._failure_details(run_id, []),
                )
            await backoff.sleep()

    async def _task_instances(self, run_id: str) -> list[dict[str, Any]]:
        instances: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = await self._request(
                "GET", f"{self._run_path(run_id)}/taskInstances", params={"limit": 100, "offset": offset}
            )
            if response.status_code != 200:
                raise unexpected_status("airflow", f"listing task instances of {run_id}", response)
            page = response.json()
            batch = page.get("task_instances") or []
            instances.extend(batch)
            offset += len(batch)
            if not batch or offset >= int(page.get("total_entries") or 0):
                return instances

    def _failure_details(self, run_id: str, failed: list[str]) -> dict[str, Any]:
        return {"airflow_run_url": self.run_url(run_id), "failed_tasks": failed, "dag_run_id": run_id}

    async def _run_failure(self, run_id: str, instances: list[dict[str, Any]] | None = None) -> EngineFailure:
        if instances is None:
            try:
                instances = await self._task_instances(run_id)
            except EngineFailure as exc:
                logger.warning("could not list task instances of failed run %s: %s", run_id, exc.message)
                instances = []

        def label(ti: dict[str, Any]) -> str:
            index = ti.get("map_index", -1)
            return f"{ti['task_id']}[{index}]" if index not in (-1, None) else str(ti["task_id"])

        failed = [label(ti) for ti in instances if ti.get("state") == "failed"]
        upstream = [label(ti) for ti in instances if ti.get("state") == "upstream_failed"]
        message = f"Airflow DAG run {run_id} of {self.config.dag_id!r} failed"
        if failed:
            message += f": task(s) {', '.join(failed)} failed"
        else:
            message += " (no task failed: the run was marked failed, e.g. cancelled or timed out)"
        if upstream:
            message += f"; not run because upstream failed: {', '.join(upstream)}"
        message += f". See {self.run_url(run_id)}"
        details = self._failure_details(run_id, failed)
        if upstream:
            details["upstream_failed_tasks"] = upstream
        return EngineFailure(message, type="DagRunFailed", retryable=True, details=details)

    async def _fetch_output(self, run_id: str) -> Any:
        cfg = self.config
        assert cfg.output_task_id is not None
        path = (
            f"{self._run_path(run_id)}/taskInstances/{quote(cfg.output_task_id, safe='')}"
            f"/xcomEntries/{quote(cfg.output_key, safe='/')}"
        )
        # v2 returns the stored JSON-native value with deserialize=false; v1 needs deserialize=true
        # and stringify=false (its default true gives Python's str(), which is not JSON).
        params: dict[str, Any] = {"map_index": -1, "stringify": "false"}
        params["deserialize"] = "true" if cfg.api_version == 1 else "false"
        response = await self._request("GET", path, params=params)
        if response.status_code == 404:
            raise EngineFailure(
                f"Airflow DAG run {run_id} succeeded but task {cfg.output_task_id!r} pushed no XCom "
                f"with key {cfg.output_key!r}; make that task return the output (or fix the binding's "
                "output: {task_id, key})",
                type="OutputMissing",
                retryable=False,
                details=self._failure_details(run_id, []),
            )
        if response.status_code == 400 and "deserialization is disabled" in response.text:
            # Airflow 2's default: [api] enable_xcom_deserialize_support = False (found against a
            # real Airflow 2.10; the setting is on the Airflow side, so retrying cannot help).
            raise EngineFailure(
                f"Airflow refuses to return task {cfg.output_task_id!r}'s XCom as JSON: XCom "
                "deserialization is disabled there; set [api] enable_xcom_deserialize_support = True "
                "(AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT=True) on its webserver",
                type="AirflowXComDeserializeDisabled",
                retryable=False,
                details=self._failure_details(run_id, []),
            )
        if response.status_code != 200:
            raise unexpected_status("airflow", f"reading the XCom output of {run_id}", response)
        value = response.json().get("value")
        if isinstance(value, dict) and "__classname__" in value and "__data__" in value:
            raise EngineFailure(
                f"task {cfg.output_task_id!r} returned a {value['__classname__']}, which Airflow stores "
                "in its own serialisation format; return JSON types (a dict of str/int/float/bool/"
                "list/dict) instead",
                type="OutputNotJson",
                retryable=False,
                details=self._failure_details(run_id, []),
            )
        return value


def _token_rejected(response: httpx.Response) -> bool:
    """True for the responses that mean "log in again": 401 "Token Expired" and 403 "Invalid JWT
    token" (the API server restarted with a new secret). Other 401/403s are real refusals."""
    if response.status_code not in (401, 403):
        return False
    try:
        detail = response.json().get("detail")
    except ValueError:
        return False
    return detail in ("Token Expired", "Invalid JWT token", "Not authenticated")
