"""A faithful fake of Airflow 3.3's REST API (``/api/v2`` + ``/auth/token``) and of Airflow 2's
``/api/v1``, as a Starlette app. What it reproduces is listed in shared/reference/engine-apis.md
("What a faithful Airflow fake must reproduce") and airflow-3.3.2-exchanges.md:

- ``POST /auth/token`` → 201 (JSON or form); 400 / 401 "Invalid credentials" / 422 extra field;
  Bearer checks: 401 "Not authenticated", 401 "Token Expired" (short ``token_ttl``), 403
  "Invalid JWT token"; basic auth is refused on ``/api/v2`` (and required on ``/api/v1``);
- trigger → **200**; 422 for a missing ``logical_date``, extra keys, naive datetimes; 409 with an
  *object* detail for a duplicate id (v1: a string); 404 unknown/stale DAG; 400 import errors;
- runs go queued → running → success/failed and stay queued while the DAG is paused;
- task instances exist at once with ``state: null``, in a wrapped, paged list;
- PATCH run ``failed`` cascades (running → failed, unfinished → skipped); ``running`` → 422;
  PATCH DAG with an ``update_mask`` other than ``is_paused`` → 400;
- XCom 404 until pushed, then the native value; ``deserialize`` and ``stringify`` quirks.

Time is real but short: the run's progress is computed from the clock on every request, so no
background task is needed. Tests drive and inspect it through ``FakeAirflow``'s attributes.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
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

from tests.fakes.server import form_fields

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.~:+-]+$")
TRIGGER_FIELDS = {
    "dag_run_id",
    "conf",
    "note",
    "run_after",
    "partition_key",
    "data_interval_start",
    "data_interval_end",
    "logical_date",
}
DATETIME_FIELDS = ("logical_date", "run_after", "data_interval_start", "data_interval_end")
MUTABLE_RUN_STATES = ("queued", "success", "failed")
UNFINISHED_TI = (None, "scheduled", "queued", "up_for_retry", "up_for_reschedule", "deferred")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class FakeTask:
    """One task of a fake DAG: how long it runs, whether it fails, what it pushes to XCom."""

    task_id: str
    duration: float = 0.05
    fail: bool = False
    # conf -> XCom value pushed under ``xcom_key`` when the task succeeds (None: push nothing)
    xcom: Callable[[dict[str, Any]], Any] | None = None
    xcom_key: str = "return_value"


@dataclass
class FakeDag:
    dag_id: str
    tasks: list[FakeTask]
    is_paused: bool = False
    has_import_errors: bool = False
    is_stale: bool = False
    queue_delay: float = 0.05  # how long an unpaused run waits for the "scheduler"


@dataclass
class FakeTaskInstance:
    task: FakeTask
    state: str | None = None
    start: float | None = None
    end: float | None = None


@dataclass
class FakeRun:
    dag_id: str
    run_id: str
    conf: dict[str, Any]
    queued_at: float
    state: str = "queued"
    eligible_at: float | None = None  # when the scheduler may start it (None while paused)
    start: float | None = None
    end: float | None = None
    note: str | None = None
    frozen: bool = False  # state set by PATCH: the "scheduler" stops advancing it
    tis: list[FakeTaskInstance] = field(default_factory=list)
    xcom: dict[tuple[str, str], Any] = field(default_factory=dict)


class FakeAirflow:
    """State and behaviour of the fake. ``app`` is the ASGI app to serve."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        token_ttl: float = 3600.0,
        all_admins: bool = False,
        api_version: int = 2,
    ) -> None:
        self.users = users if users is not None else {"admin": "admin-pw"}
        self.token_ttl = token_ttl
        self.all_admins = all_admins
        self.api_version = api_version
        self.dags: dict[str, FakeDag] = {}
        self.runs: dict[tuple[str, str], FakeRun] = {}
        self.tokens: dict[str, tuple[str, float]] = {}
        self.logins = 0
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status)
        self.trigger_bodies: list[dict[str, Any]] = []
        # The next N API calls answer 500, as a real Airflow does while its metadata database is
        # busy (seen: a PATCH of a run's state under load).
        self.busy_answers = 0
        self._lock = threading.RLock()
        self.app = self._build_app()

    # -- test helpers ------------------------------------------------------------------------

    def add_dag(self, dag: FakeDag) -> FakeDag:
        self.dags[dag.dag_id] = dag
        return dag

    def expire_tokens(self) -> None:
        """Make every issued token expire now (as if jwt_expiration_time passed)."""
        with self._lock:
            self.tokens = {t: (u, 0.0) for t, (u, _) in self.tokens.items()}

    def run(self, dag_id: str, run_id: str) -> FakeRun:
        return self.runs[(dag_id, run_id)]

    def triggers(self, dag_id: str | None = None) -> int:
        return sum(
            1
            for m, p, s in self.requests
            if m == "POST"
            and p.endswith("/dagRuns")
            and s == 200
            and (dag_id is None or f"/dags/{dag_id}/" in p)
        )

    # -- the "scheduler" ---------------------------------------------------------------------

    def _advance(self, run: FakeRun, now: float) -> None:
        dag = self.dags[run.dag_id]
        if run.frozen or run.state in ("success", "failed"):
            return
        if run.state == "queued":
            if dag.is_paused:
                run.eligible_at = None
                return
            if run.eligible_at is None:
                run.eligible_at = now + dag.queue_delay
            if now < run.eligible_at:
                return
            run.state = "running"
            run.start = run.eligible_at
        # running: tasks one after the other from run.start
        assert run.start is not None
        t = run.start
        failed = False
        for ti in run.tis:
            if failed:
                ti.state = "upstream_failed"
                continue
            ti.start = t
            ti.end = t + ti.task.duration
            if now < ti.start:
                ti.state = "scheduled"
                return
            if now < ti.end:
                ti.state = "running"
                return
            if ti.task.fail:
                ti.state = "failed"
                failed = True
            else:
                ti.state = "success"
                if ti.task.xcom is not None:
                    run.xcom[(ti.task.task_id, ti.task.xcom_key)] = ti.task.xcom(run.conf)
            t = ti.end
        run.state = "failed" if failed else "success"
        run.end = t

    # -- responses ---------------------------------------------------------------------------

    def _error(self, status: int, detail: Any, version: int) -> JSONResponse:
        if version == 1:
            title = {
                400: "Bad Request",
                401: "Unauthorized",
                403: "Forbidden",
                404: "Not Found",
                409: "Conflict",
            }
            return JSONResponse(
                {
                    "type": "about:blank",
                    "title": title.get(status, "Error"),
                    "status": status,
                    "detail": detail,
                },
                status_code=status,
                media_type="application/problem+json",
            )
        return JSONResponse({"detail": detail}, status_code=status)

    def _validation(self, errors: list[dict[str, Any]]) -> JSONResponse:
        return JSONResponse({"detail": errors}, status_code=422)

    def _dag_json(self, dag: FakeDag) -> dict[str, Any]:
        return {
            "dag_id": dag.dag_id,
            "dag_display_name": dag.dag_id,
            "is_paused": dag.is_paused,
            "is_stale": dag.is_stale,
            "has_import_errors": dag.has_import_errors,
            "max_active_runs": 16,
            "max_active_tasks": 16,
            "fileloc": f"/opt/airflow/dags/{dag.dag_id}.py",
            "relative_fileloc": f"{dag.dag_id}.py",
            "bundle_name": "dags-folder",
            "timetable_description": "Never, external triggers only",
            "owners": ["airflow"],
            "tags": [],
        }

    def _run_json(self, run: FakeRun, version: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "dag_run_id": run.run_id,
            "dag_id": run.dag_id,
            "logical_date": None,
            "queued_at": _iso(run.queued_at),
            "start_date": _iso(run.start),
            "end_date": _iso(run.end),
            "duration": (run.end - run.start) if run.end is not None and run.start is not None else None,
            "data_interval_start": None,
            "data_interval_end": None,
            "run_after": _iso(run.queued_at),
            "last_scheduling_decision": None,
            "run_type": "manual",
            "state": run.state,
            "triggered_by": "rest_api",
            "triggering_user_name": "admin",
            "conf": run.conf,
            "note": run.note,
            "dag_versions": [],
            "bundle_version": None,
            "dag_display_name": run.dag_id,
            "partition_key": None,
            "partition_date": None,
        }
        if version == 1:
            body["execution_date"] = _iso(run.queued_at)
            body["logical_date"] = _iso(run.queued_at)
            body["external_trigger"] = True
        return body

    def _ti_json(self, run: FakeRun, ti: FakeTaskInstance) -> dict[str, Any]:
        return {
            "id": f"{run.run_id}-{ti.task.task_id}",
            "task_id": ti.task.task_id,
            "dag_id": run.dag_id,
            "dag_run_id": run.run_id,
            "map_index": -1,
            "logical_date": None,
            "start_date": _iso(ti.start) if ti.state not in UNFINISHED_TI else None,
            "end_date": _iso(ti.end) if ti.state in ("success", "failed") else None,
            "state": ti.state,
            "try_number": 1 if ti.state is not None else 0,
            "max_tries": 0,
            "operator": "_PythonDecoratedOperator",
        }

    # -- auth --------------------------------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        if request.method == "GET":
            if not self.all_admins:
                return JSONResponse({"detail": "Method Not Allowed"}, status_code=405)
            return JSONResponse({"access_token": self._issue("admin")}, status_code=201)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            try:
                body = await request.json()
            except ValueError:
                return self._validation(
                    [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error", "input": None}]
                )
        else:
            body = await form_fields(request)
        if not isinstance(body, dict):
            return self._validation(
                [{"type": "model_type", "loc": ["body"], "msg": "Input should be an object", "input": body}]
            )
        extra = sorted(set(body) - {"username", "password"})
        if extra:
            return self._validation(
                [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", k],
                        "msg": "Extra inputs are not permitted",
                        "input": body[k],
                    }
                    for k in extra
                ]
            )
        username, password = body.get("username"), body.get("password")
        if not username or not password:
            return JSONResponse({"detail": "Username and password must be provided"}, status_code=400)
        if not self.all_admins and self.users.get(username) != password:
            return JSONResponse({"detail": "Invalid credentials"}, status_code=401)
        self.logins += 1
        return JSONResponse({"access_token": self._issue(username)}, status_code=201)

    def _issue(self, user: str) -> str:
        def part(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        now = time.time()
        token = ".".join(
            [
                part({"alg": "HS512", "kid": "not-used", "typ": "JWT"}),
                part(
                    {
                        "sub": user,
                        "role": "admin",
                        "jti": secrets.token_hex(16),
                        "iat": int(now),
                        "exp": int(now + self.token_ttl),
                    }
                ),
                secrets.token_urlsafe(32),
            ]
        )
        with self._lock:
            self.tokens[token] = (user, now + self.token_ttl)
        return token

    def _authenticate(self, request: Request, version: int) -> JSONResponse | None:
        header = request.headers.get("authorization", "")
        if version == 1:
            if not header.lower().startswith("basic "):
                return self._error(401, "Unauthorized", 1)
            try:
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return self._error(401, "Unauthorized", 1)
            if self.users.get(user) != password:
                return self._error(401, "Unauthorized", 1)
            return None
        if not header.lower().startswith("bearer "):
            # Basic auth is not accepted on /api/v2, even with valid credentials.
            return self._error(401, "Not authenticated", 2)
        token = header[7:].strip()
        with self._lock:
            found = self.tokens.get(token)
        if found is None:
            return self._error(403, "Invalid JWT token", 2)
        if found[1] <= time.time():
            return self._error(401, "Token Expired", 2)
        return None

    # -- API ---------------------------------------------------------------------------------

    def _find_dag(self, dag_id: str, version: int) -> FakeDag | JSONResponse:
        dag = self.dags.get(dag_id)
        if dag is None or dag.is_stale:
            return self._error(404, f"Dag with dag_id: '{dag_id}' not found", version)
        return dag

    def _find_run(self, dag_id: str, run_id: str, version: int) -> FakeRun | JSONResponse:
        run = self.runs.get((dag_id, run_id))
        if run is None:
            return self._error(
                404, f"The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found", version
            )
        self._advance(run, time.time())
        return run

    async def _api(self, request: Request) -> Response:
        version = 1 if request.url.path.startswith("/api/v1") else 2
        if version != self.api_version:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        denied = self._authenticate(request, version)
        if denied is not None:
            return denied
        rest = request.path_params["rest"]
        parts = rest.split("/")
        method = request.method
        with self._lock:
            if self.busy_answers > 0:
                self.busy_answers -= 1
                return self._error(
                    500,
                    {
                        "reason": "Database error",
                        "statement": "hidden",
                        "orig_error": "hidden",
                        "message": "Serious error when handling your request. Check logs for more details - "
                        "you will find it in api server when you look for ID 0001",
                    },
                    version,
                )
            if parts == ["monitor", "health"] or parts == ["health"]:
                return JSONResponse(
                    {"metadatabase": {"status": "healthy"}, "scheduler": {"status": "healthy"}}
                )
            if parts == ["version"]:
                return JSONResponse({"version": "3.3.2" if version == 2 else "2.10.5", "git_version": None})
            if len(parts) < 2 or parts[0] != "dags":
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            dag_id = parts[1]
            if len(parts) == 2:
                return await self._dag_endpoint(request, dag_id, version)
            if parts[2] != "dagRuns":
                return JSONResponse({"detail": "Not Found"}, status_code=404)
            if len(parts) == 3:
                if method == "POST":
                    return await self._trigger(request, dag_id, version)
                return JSONResponse({"detail": "Method Not Allowed"}, status_code=405)
            run_id = parts[3]
            if len(parts) == 4:
                if method == "GET":
                    found = self._find_run(dag_id, run_id, version)
                    return (
                        found
                        if isinstance(found, JSONResponse)
                        else JSONResponse(self._run_json(found, version))
                    )
                if method == "PATCH":
                    return await self._patch_run(request, dag_id, run_id, version)
                return JSONResponse({"detail": "Method Not Allowed"}, status_code=405)
            if parts[4] == "taskInstances" and len(parts) == 5:
                return self._task_instances(request, dag_id, run_id, version)
            if parts[4] == "taskInstances" and len(parts) >= 8 and parts[6] == "xcomEntries":
                key = "/".join(parts[7:])  # xcom_key is a :path parameter
                return self._xcom(request, dag_id, run_id, parts[5], key, version)
            return JSONResponse({"detail": "Not Found"}, status_code=404)

    async def _dag_endpoint(self, request: Request, dag_id: str, version: int) -> Response:
        found = self._find_dag(dag_id, version)
        if isinstance(found, JSONResponse):
            return found
        if request.method == "GET":
            return JSONResponse(self._dag_json(found))
        if request.method != "PATCH":
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405)
        mask = request.query_params.get("update_mask")
        if mask is not None and mask != "is_paused":
            return self._error(400, "Only `is_paused` field can be updated through the REST API", version)
        body = await request.json()
        if not isinstance(body, dict) or "is_paused" not in body:
            return self._validation(
                [{"type": "missing", "loc": ["body", "is_paused"], "msg": "Field required", "input": body}]
            )
        if not isinstance(body["is_paused"], bool):
            return self._validation(
                [
                    {
                        "type": "bool_parsing",
                        "loc": ["body", "is_paused"],
                        "msg": "Input should be a valid boolean",
                        "input": body["is_paused"],
                    }
                ]
            )
        found.is_paused = body["is_paused"]
        return JSONResponse(self._dag_json(found))

    async def _trigger(self, request: Request, dag_id: str, version: int) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return self._validation(
                [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error", "input": None}]
            )
        if not isinstance(body, dict):
            return self._validation(
                [{"type": "model_type", "loc": ["body"], "msg": "Input should be an object", "input": body}]
            )
        self.trigger_bodies.append(body)
        errors: list[dict[str, Any]] = []
        if version == 2:
            if "logical_date" not in body:
                errors.append(
                    {
                        "type": "missing",
                        "loc": ["body", "logical_date"],
                        "msg": "Field required",
                        "input": body,
                    }
                )
            for key in sorted(set(body) - TRIGGER_FIELDS):
                errors.append(
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", key],
                        "msg": "Extra inputs are not permitted",
                        "input": body[key],
                    }
                )
            for key in DATETIME_FIELDS:
                value = body.get(key)
                if value is None:
                    continue
                try:
                    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
                except ValueError:
                    errors.append(
                        {
                            "type": "datetime_from_date_parsing",
                            "loc": ["body", key],
                            "msg": "Input should be a valid datetime",
                            "input": value,
                        }
                    )
                    continue
                if parsed.tzinfo is None:
                    errors.append(
                        {
                            "type": "timezone_aware",
                            "loc": ["body", key],
                            "msg": "Input should have timezone info",
                            "input": value,
                        }
                    )
        conf = body.get("conf", {})
        if conf is None:
            conf = {}
        if not isinstance(conf, dict):
            errors.append(
                {
                    "type": "dict_type",
                    "loc": ["body", "conf"],
                    "msg": "Input should be a valid dictionary",
                    "input": conf,
                }
            )
        if errors:
            return self._validation(errors)
        found = self._find_dag(dag_id, version)
        if isinstance(found, JSONResponse):
            return found
        if found.has_import_errors:
            return self._error(
                400, f"DAG with dag_id: '{dag_id}' has import errors and cannot be triggered", version
            )
        now = time.time()
        run_id = body.get("dag_run_id") or f"manual__{datetime.fromtimestamp(now, UTC).isoformat()}"
        if not RUN_ID_PATTERN.match(run_id):
            return self._error(
                400,
                f"The run_id provided '{run_id}' does not match regex pattern '^[A-Za-z0-9_.~:+-]+$'",
                version,
            )
        if (dag_id, run_id) in self.runs:
            if version == 1:
                return self._error(
                    409, f"DAGRun with DAG ID: '{dag_id}' and DAGRun ID: '{run_id}' already exists", 1
                )
            return self._error(
                409,
                {
                    "reason": "Unique constraint violation",
                    "statement": "hidden",
                    "orig_error": "hidden",
                    "message": "Serious error when handling your request. Check logs for more details - "
                    "you will find it in api server when you look for ID 0000",
                },
                2,
            )
        run = FakeRun(dag_id=dag_id, run_id=run_id, conf=conf, queued_at=now, note=body.get("note"))
        run.tis = [FakeTaskInstance(task) for task in found.tasks]  # exist at once, state null
        self.runs[(dag_id, run_id)] = run
        return JSONResponse(self._run_json(run, version), status_code=200)

    async def _patch_run(self, request: Request, dag_id: str, run_id: str, version: int) -> Response:
        found = self._find_run(dag_id, run_id, version)
        if isinstance(found, JSONResponse):
            return found
        body = await request.json()
        if not isinstance(body, dict):
            return self._validation(
                [{"type": "model_type", "loc": ["body"], "msg": "Input should be an object", "input": body}]
            )
        extra = sorted(set(body) - {"state", "note"})
        if extra and version == 2:
            return self._validation(
                [
                    {
                        "type": "extra_forbidden",
                        "loc": ["body", k],
                        "msg": "Extra inputs are not permitted",
                        "input": body[k],
                    }
                    for k in extra
                ]
            )
        state = body.get("state")
        if state is not None and state not in MUTABLE_RUN_STATES:
            return self._validation(
                [
                    {
                        "type": "enum",
                        "loc": ["body", "state"],
                        "msg": "Input should be 'queued', 'success' or 'failed'",
                        "input": state,
                    }
                ]
            )
        if "note" in body:
            found.note = body["note"]
        if state == "failed":
            for ti in found.tis:
                if ti.state == "running":
                    ti.state = "failed"
                elif ti.state in UNFINISHED_TI:
                    ti.state = "skipped"
            found.state, found.end, found.frozen = "failed", time.time(), True
        elif state == "success":
            for ti in found.tis:
                if ti.state not in ("success", "failed"):
                    ti.state = "success"
            found.state, found.end, found.frozen = "success", time.time(), True
        elif state == "queued":
            found.state, found.frozen, found.eligible_at, found.start, found.end = (
                "queued",
                False,
                None,
                None,
                None,
            )
            for ti in found.tis:
                ti.state = None
        return JSONResponse(self._run_json(found, version))

    def _task_instances(self, request: Request, dag_id: str, run_id: str, version: int) -> Response:
        found = self._find_run(dag_id, run_id, version)
        if isinstance(found, JSONResponse):
            return found
        try:
            limit = min(int(request.query_params.get("limit", 50)), 100)
            offset = int(request.query_params.get("offset", 0))
        except ValueError:
            return self._validation(
                [
                    {
                        "type": "int_parsing",
                        "loc": ["query", "limit"],
                        "msg": "Input should be a valid integer",
                        "input": None,
                    }
                ]
            )
        tis = [self._ti_json(found, ti) for ti in found.tis]
        return JSONResponse({"task_instances": tis[offset : offset + limit], "total_entries": len(tis)})

    def _xcom(
        self, request: Request, dag_id: str, run_id: str, task_id: str, key: str, version: int
    ) -> Response:
        found = self._find_run(dag_id, run_id, version)
        if isinstance(found, JSONResponse):
            return found
        if (task_id, key) not in found.xcom:
            return self._error(404, f"XCom entry with key: `{key}` not found", version)
        value = found.xcom[(task_id, key)]
        q = request.query_params
        deserialize = q.get("deserialize", "false").lower() == "true"
        stringify = q.get("stringify", "true" if version == 1 else "false").lower() == "true"
        if deserialize:
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            if isinstance(value, dict) and "__classname__" in value:
                value = (
                    f"{value['__classname__']}@version={value.get('__version__')}({value.get('__data__')})"
                )
        if stringify:
            value = str(value)
        return JSONResponse(
            {
                "key": key,
                "timestamp": _iso(found.end),
                "logical_date": None,
                "map_index": -1,
                "task_id": task_id,
                "dag_id": dag_id,
                "run_id": run_id,
                "value": value,
            }
        )

    def _build_app(self) -> Starlette:
        fake = self

        async def endpoint(request: Request) -> Response:
            response = await fake._api(request)
            fake.requests.append((request.method, request.url.path, response.status_code))
            return response

        async def login(request: Request) -> Response:
            response = await fake._login(request)
            fake.requests.append((request.method, request.url.path, response.status_code))
            return response

        methods = ["GET", "POST", "PATCH", "DELETE", "PUT"]
        return Starlette(
            routes=[
                Route("/auth/token", login, methods=["GET", "POST"]),
                Route("/api/v2/{rest:path}", endpoint, methods=methods),
                Route("/api/v1/{rest:path}", endpoint, methods=methods),
            ]
        )
