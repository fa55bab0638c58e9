"""A faithful fake of Jenkins' remote access API, as a Starlette app. What it reproduces is listed
in shared/reference/engine-apis.md ("What a faithful Jenkins fake must reproduce"):

- auth: Basic with an API token needs no crumb; with a password every POST needs the
  ``Jenkins-Crumb`` from ``/crumbIssuer/api/json`` *and* the ``JSESSIONID.*`` session cookie it is
  bound to (403 "No valid crumb was included in the request"); bad credentials → 401
  "Invalid password/token for user: X"; anonymous → 403 with ``X-You-Are-Authenticated-As``;
- trigger: 201 with an absolute ``Location`` built from the configured root URL (which may be
  wrong, as behind a proxy); **303** to the existing item for identical queued parameters; 400
  "X is not parameterized", 409 "X is not buildable", 404 (HTML) for an unknown job; unknown
  parameters silently ignored, missing ones take their defaults; the quiet period (5 s unless
  ``delay=0sec``) shows in ``why``;
- queue items: ``WaitingItem`` → ``LeftItem`` with ``executable`` or ``cancelled: true``; a left
  item expires (404) after ``left_item_ttl`` (Jenkins: 300 s);
- builds: ``building: true, result: null`` → a terminal result; artifacts listed and served;
  ``consoleText``; ``stop`` and ``cancelItem`` take effect asynchronously;
- ``_class`` fields everywhere; ``tree=`` is tolerated (ignored); folders (``/job/a/job/b``).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.fakes.server import form_fields


@dataclass
class Outcome:
    """What a build does: its result, console lines and archived artifacts (path → bytes)."""

    result: str = "SUCCESS"
    console: list[str] = field(default_factory=list)
    artifacts: dict[str, bytes] = field(default_factory=dict)
    # A Pipeline job's stage where a failed build failed (the ones after it never run).
    failed_stage: str | None = None


@dataclass
class FakeJob:
    path: str  # "team/deploy" for a folder job
    parameters: dict[str, str] | None = field(default_factory=dict)  # name → default; None: not parameterized
    disabled: bool = False
    duration: float = 0.1
    queue_wait: float = 0.0  # time in the queue after the quiet period, waiting for an executor
    stop_delay: float = 0.1  # a stop aborts the build this long after it is asked
    behaviour: Callable[[dict[str, str]], Outcome] = field(default=lambda params: Outcome())
    # A Pipeline job's stages, each an equal share of ``duration`` (the Stage View's wfapi);
    # None: a freestyle job (wfapi answers 404).
    stages: list[str] | None = None


@dataclass
class FakeQueueItem:
    id: int
    job: FakeJob
    params: dict[str, str]
    in_queue_since: float
    buildable_at: float
    quiet_until: float
    cancel_at: float | None = None
    left_at: float | None = None
    cancelled: bool = False
    build_number: int | None = None


@dataclass
class FakeBuild:
    number: int
    job: FakeJob
    queue_id: int
    params: dict[str, str]
    start: float
    outcome: Outcome
    stop_at: float | None = None
    result: str | None = None
    end: float | None = None


class FakeJenkins:
    """State and behaviour of the fake. ``app`` is the ASGI app to serve."""

    def __init__(
        self,
        *,
        users: dict[str, dict[str, str]] | None = None,
        root_url: str | None = None,
        quiet_period: float = 5.0,
        left_item_ttl: float = 300.0,
        cancel_delay: float = 0.05,
        csrf: bool = True,
    ) -> None:
        # user → {"password": ..., "token": ...}
        self.users = users if users is not None else {"accord": {"password": "pw", "token": "11aa22bb"}}
        self.root_url = root_url  # None: use the request's own host
        self.quiet_period = quiet_period
        self.left_item_ttl = left_item_ttl
        self.cancel_delay = cancel_delay
        self.csrf = csrf
        self.jobs: dict[str, FakeJob] = {}
        self.queue: dict[int, FakeQueueItem] = {}
        self.builds: dict[str, list[FakeBuild]] = {}
        self.sessions: dict[str, str] = {}  # session id → crumb
        self.requests: list[tuple[str, str, int]] = []
        self._next_queue_id = 100
        self._lock = threading.RLock()
        self.app = self._build_app()

    # -- test helpers ------------------------------------------------------------------------

    def add_job(self, job: FakeJob) -> FakeJob:
        self.jobs[job.path] = job
        self.builds.setdefault(job.path, [])
        return job

    def triggers(self, status: int | None = None) -> int:
        return sum(
            1
            for m, p, s in self.requests
            if m == "POST" and p.endswith("/buildWithParameters") and (status is None or s == status)
        )

    def build(self, job: str, number: int) -> FakeBuild:
        return next(b for b in self.builds[job] if b.number == number)

    # -- time --------------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        for item in self.queue.values():
            if item.left_at is not None:
                continue
            if item.cancel_at is not None and now >= item.cancel_at:
                item.cancelled, item.left_at = True, item.cancel_at
                continue
            if now >= item.buildable_at:
                builds = self.builds[item.job.path]
                number = (builds[-1].number + 1) if builds else 1
                build = FakeBuild(
                    number=number,
                    job=item.job,
                    queue_id=item.id,
                    params=item.params,
                    start=item.buildable_at,
                    outcome=item.job.behaviour(dict(item.params)),
                )
                builds.append(build)
                item.left_at, item.build_number = item.buildable_at, number
        for builds in self.builds.values():
            for b in builds:
                if b.result is not None:
                    continue
                if b.stop_at is not None and now >= b.stop_at:
                    b.result, b.end = "ABORTED", b.stop_at
                elif now >= b.start + b.job.duration:
                    b.result, b.end = b.outcome.result, b.start + b.job.duration
        # LeftItems are kept left_item_ttl after they leave the queue, then forgotten.
        for qid in [
            q for q, i in self.queue.items() if i.left_at is not None and now - i.left_at > self.left_item_ttl
        ]:
            del self.queue[qid]

    # -- auth --------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> tuple[str | None, str, Response | None]:
        """(user, "token"|"password"|"anonymous", error response)."""
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None, "anonymous", None
        try:
            user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None, "anonymous", PlainTextResponse("Bad Authorization header", status_code=400)
        known = self.users.get(user)
        if known is not None and secret == known.get("token"):
            return user, "token", None
        if known is not None and secret == known.get("password"):
            return user, "password", None
        return (
            user,
            "bad",
            HTMLResponse(
                f"<html><body><h2>HTTP ERROR 401 Invalid password/token for user: {user}</h2></body></html>",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="Jenkins"'},
            ),
        )

    def _session_id(self, request: Request) -> str | None:
        for name, value in request.cookies.items():
            if name.startswith("JSESSIONID"):
                return value
        return None

    def _crumb_for(self, session: str) -> str:
        return hashlib.sha256(f"accord-fake-salt:{session}".encode()).hexdigest()

    def _forbidden_anonymous(self) -> Response:
        return HTMLResponse(
            "<html><body>Authentication required</body></html>",
            status_code=403,
            headers={
                "X-You-Are-Authenticated-As": "anonymous",
                "X-Required-Permission": "hudson.model.Hudson.Read",
            },
        )

    # -- routing -----------------------------------------------------------------------------

    def _root(self, request: Request) -> str:
        return (self.root_url or f"{request.url.scheme}://{request.url.netloc}/").rstrip("/") + "/"

    async def _dispatch(self, request: Request) -> Response:
        _user, kind, error = self._authenticate(request)
        if error is not None:
            return error
        if kind == "anonymous":
            return self._forbidden_anonymous()
        path = request.url.path
        method = request.method
        with self._lock:
            self._advance(time.time())
            set_cookie: str | None = None
            if path.rstrip("/") == "/crumbIssuer/api/json":
                if not self.csrf:
                    return HTMLResponse("<html>Not Found</html>", status_code=404)
                session = self._session_id(request)
                if session is None or session not in self.sessions:
                    session = secrets.token_hex(12)
                    set_cookie = session
                self.sessions[session] = self._crumb_for(session)
                response = JSONResponse(
                    {
                        "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                        "crumb": self.sessions[session],
                        "crumbRequestField": "Jenkins-Crumb",
                    }
                )
                if set_cookie:
                    response.set_cookie("JSESSIONID.fa4e1c2b", set_cookie, path="/", httponly=True)
                return response
            if method == "POST" and self.csrf and kind == "password":
                # API tokens are exempt (ApiCrumbExclusion); a password session needs the crumb
                # that was issued for *this* session.
                session = self._session_id(request)
                crumb = request.headers.get("jenkins-crumb")
                if session is None or crumb is None or self.sessions.get(session) != crumb:
                    return HTMLResponse(
                        "<html><body><h2>HTTP ERROR 403 No valid crumb was included in the request</h2></body></html>",
                        status_code=403,
                    )
            if path.rstrip("/") == "/queue/api/json":
                return JSONResponse(self._queue_json(request))
            if path.startswith("/queue/item/"):
                rest = path[len("/queue/item/") :].strip("/").split("/")
                if not rest[0].isdigit():
                    return HTMLResponse("<html>Not Found</html>", status_code=404)
                item = self.queue.get(int(rest[0]))
                if item is None:
                    return HTMLResponse("<html>Not Found</html>", status_code=404)
                return JSONResponse(self._item_json(request, item))
            if path.rstrip("/") == "/queue/cancelItem" and method == "POST":
                return self._cancel_item(request)
            if path.startswith("/job/"):
                return await self._job_route(request)
            return HTMLResponse("<html>Not Found</html>", status_code=404)

    def _split_job(self, path: str) -> tuple[str, list[str]]:
        """("a/b", remaining segments) from "/job/a/job/b/12/api/json"."""
        segments = [unquote(s) for s in path.strip("/").split("/")]
        names: list[str] = []
        i = 0
        while i + 1 < len(segments) and segments[i] == "job":
            names.append(segments[i + 1])
            i += 2
        return "/".join(names), segments[i:]

    async def _job_route(self, request: Request) -> Response:
        # Split on the raw path so an encoded "/" inside a name (feature%2Fx) stays in the name.
        raw_path = request.scope.get("raw_path", request.url.path.encode()).decode()
        job_path, rest = self._split_job(raw_path.split("?")[0])
        job = self.jobs.get(job_path)
        method = request.method
        if job is None:
            folder_jobs = [p for p in self.jobs if p.startswith(job_path + "/")]
            if folder_jobs and rest == ["api", "json"]:
                return JSONResponse(
                    {"_class": "com.cloudbees.hudson.plugins.folder.Folder", "name": job_path, "jobs": []}
                )
            return HTMLResponse(f"<html><body>Not Found: {job_path}</body></html>", status_code=404)
        if rest == ["api", "json"] and method == "GET":
            return JSONResponse(self._job_json(request, job))
        if rest == ["buildWithParameters"] and method == "POST":
            return await self._trigger(request, job)
        if rest == ["build"] and method == "POST":
            if job.parameters:
                return HTMLResponse("<html>Nothing is submitted</html>", status_code=400)
            return await self._trigger(request, job)
        if rest and rest[0].isdigit():
            number = int(rest[0])
            build = next((b for b in self.builds[job.path] if b.number == number), None)
            if build is None:
                return HTMLResponse("<html>Not Found</html>", status_code=404)
            tail = rest[1:]
            if tail == ["api", "json"] and method == "GET":
                return JSONResponse(self._build_json(request, build))
            if tail == ["wfapi", "describe"] and method == "GET":
                if job.stages is None:
                    return HTMLResponse("<html>Not Found</html>", status_code=404)
                return JSONResponse(self._wfapi_run(request, build))
            if (
                len(tail) == 5
                and tail[:2] == ["execution", "node"]
                and tail[3:] == ["wfapi", "describe"]
                and method == "GET"
            ):
                stage = next(
                    (st for st in self._wfapi_run(request, build)["stages"] if st["id"] == tail[2]), None
                )
                if job.stages is None or stage is None:
                    return HTMLResponse("<html>Not Found</html>", status_code=404)
                return JSONResponse({**stage, "stageFlowNodes": []})
            if tail == ["consoleText"] and method == "GET":
                return PlainTextResponse(self._console(build))
            if tail and tail[0] == "artifact" and method == "GET":
                relative = "/".join(tail[1:])
                if build.result is None or relative not in build.outcome.artifacts:
                    return HTMLResponse("<html>Not Found</html>", status_code=404)
                return Response(build.outcome.artifacts[relative], media_type="application/octet-stream")
            if tail == ["stop"] and method == "POST":
                if build.result is None and build.stop_at is None:
                    build.stop_at = time.time() + job.stop_delay  # abort is asynchronous
                referer = request.headers.get("referer") or f"{self._root(request)}job/{job.path}/{number}/"
                return Response(status_code=302, headers={"Location": referer})
        return HTMLResponse("<html>Not Found</html>", status_code=404)

    # -- trigger and queue -------------------------------------------------------------------

    async def _trigger(self, request: Request, job: FakeJob) -> Response:
        if job.parameters is None:
            return HTMLResponse(f"<html><body>{job.path} is not parameterized</body></html>", status_code=400)
        if job.disabled:
            return HTMLResponse(f"<html><body>{job.path} is not buildable</body></html>", status_code=409)
        given: dict[str, str] = dict(request.query_params)
        given.update(await form_fields(request))
        delay_text = given.pop("delay", None)
        delay = self.quiet_period
        if delay_text is not None:
            delay = float(delay_text.removesuffix("sec") or 0)
        # Undefined parameters are silently ignored; missing ones take their defaults.
        params = {name: given.get(name, default) for name, default in job.parameters.items()}
        for item in self.queue.values():
            if item.left_at is None and item.job is job and item.params == params:
                return Response(
                    status_code=303, headers={"Location": f"{self._root(request)}queue/item/{item.id}/"}
                )
        now = time.time()
        self._next_queue_id += 1
        item = FakeQueueItem(
            id=self._next_queue_id,
            job=job,
            params=params,
            in_queue_since=now,
            quiet_until=now + delay,
            buildable_at=now + delay + job.queue_wait,
        )
        self.queue[item.id] = item
        return Response(status_code=201, headers={"Location": f"{self._root(request)}queue/item/{item.id}/"})

    def _cancel_item(self, request: Request) -> Response:
        raw = request.query_params.get("id", "")
        item = self.queue.get(int(raw)) if raw.isdigit() else None
        if item is None or item.left_at is not None:
            return PlainTextResponse(f"Provided id ({raw}) not found", status_code=404)
        if item.cancel_at is None:
            item.cancel_at = time.time() + self.cancel_delay  # takes effect asynchronously
        return Response(status_code=204)

    def _parameters_action(self, params: dict[str, str]) -> dict[str, Any]:
        return {
            "_class": "hudson.model.ParametersAction",
            "parameters": [
                {"_class": "hudson.model.StringParameterValue", "name": k, "value": v}
                for k, v in params.items()
            ],
        }

    def _task_json(self, request: Request, job: FakeJob) -> dict[str, Any]:
        url = self._root(request) + "".join(f"job/{p}/" for p in job.path.split("/"))
        return {
            "_class": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
            "name": job.path.split("/")[-1],
            "url": url,
        }

    def _item_json(self, request: Request, item: FakeQueueItem) -> dict[str, Any]:
        now = time.time()
        body: dict[str, Any] = {
            "id": item.id,
            "actions": [self._parameters_action(item.params)],
            "blocked": False,
            "inQueueSince": int(item.in_queue_since * 1000),
            "params": "".join(f"\n{k}={v}" for k, v in item.params.items()),
            "stuck": False,
            "task": self._task_json(request, item.job),
            "url": f"queue/item/{item.id}/",
        }
        if item.left_at is None:
            if now < item.quiet_until:
                body["_class"] = "hudson.model.Queue$WaitingItem"
                body["buildable"] = False
                body["why"] = f"In the quiet period. Expires in {item.quiet_until - now:.1f} sec"
                body["timestamp"] = int(item.quiet_until * 1000)
            else:
                body["_class"] = "hudson.model.Queue$BuildableItem"
                body["buildable"] = True
                body["why"] = "Waiting for next available executor"
                body["pending"] = False
            return body
        body["_class"] = "hudson.model.Queue$LeftItem"
        body["buildable"] = False
        body["why"] = None
        body["cancelled"] = item.cancelled
        if item.build_number is not None:
            body["executable"] = {
                "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
                "number": item.build_number,
                "url": self._task_json(request, item.job)["url"] + f"{item.build_number}/",
            }
        else:
            body["executable"] = None
        return body

    def _queue_json(self, request: Request) -> dict[str, Any]:
        items = [self._item_json(request, i) for i in self.queue.values() if i.left_at is None]
        return {"_class": "hudson.model.Queue", "discoverableItems": [], "items": items}

    def _build_json(self, request: Request, build: FakeBuild) -> dict[str, Any]:
        url = self._task_json(request, build.job)["url"] + f"{build.number}/"
        done = build.result is not None
        return {
            "_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
            "actions": [self._parameters_action(build.params)],
            "artifacts": [
                {"displayPath": p.split("/")[-1], "fileName": p.split("/")[-1], "relativePath": p}
                for p in (build.outcome.artifacts if done else {})
            ],
            "building": not done,
            "inProgress": not done,
            "duration": int(((build.end or time.time()) - build.start) * 1000) if done else 0,
            "number": build.number,
            "queueId": build.queue_id,
            "result": build.result,
            "timestamp": int(build.start * 1000),
            "url": url,
        }

    def _wfapi_run(self, request: Request, build: FakeBuild) -> dict[str, Any]:
        """``wfapi/describe`` of a Pipeline build (RunExt): stages appear as they start, each an
        equal share of the job's duration; after a failed stage the rest are NOT_EXECUTED."""
        stages = build.job.stages or []
        now = time.time()
        share = build.job.duration / max(len(stages), 1)
        run_status = {"SUCCESS": "SUCCESS", "UNSTABLE": "UNSTABLE", "ABORTED": "ABORTED"}.get(
            build.result or "", "FAILED" if build.result else "IN_PROGRESS"
        )
        job_url = "/" + "".join(f"job/{p}/" for p in build.job.path.split("/"))
        out: list[dict[str, Any]] = []
        failed = build.outcome.failed_stage if build.outcome.failed_stage in stages else None
        stops_at = stages.index(failed) if failed is not None else len(stages) - 1
        run_end = build.end if build.end is not None else now
        for i, name in enumerate(stages):
            node = str(6 + i * 3)
            start = build.start + i * share
            if build.result is None:  # running: a stage is listed once it started
                if start > now:
                    continue
                status = "SUCCESS" if start + share <= now else "IN_PROGRESS"
            elif i > stops_at or start >= run_end:
                status = "NOT_EXECUTED"
            elif i == stops_at and build.result != "SUCCESS":
                status = run_status
            else:
                status = "SUCCESS"
            ran = status != "NOT_EXECUTED"
            out.append(
                {
                    "_links": {
                        "self": {"href": f"{job_url}{build.number}/execution/node/{node}/wfapi/describe"}
                    },
                    "id": node,
                    "name": name,
                    "execNode": "",
                    "status": status,
                    "startTimeMillis": int(start * 1000) if ran else 0,
                    "durationMillis": int(max(min(start + share, run_end) - start, 0) * 1000) if ran else 0,
                    "pauseDurationMillis": 0,
                }
            )
        end = build.end if build.end is not None else now
        return {
            "_links": {"self": {"href": f"{job_url}{build.number}/wfapi/describe"}},
            "id": str(build.number),
            "name": f"#{build.number}",
            "status": run_status,
            "startTimeMillis": int(build.start * 1000),
            "endTimeMillis": int(end * 1000) if build.end is not None else 0,
            "durationMillis": int((end - build.start) * 1000),
            "queueDurationMillis": 0,
            "pauseDurationMillis": 0,
            "stages": out,
        }

    def _job_json(self, request: Request, job: FakeJob) -> dict[str, Any]:
        builds = sorted(self.builds[job.path], key=lambda b: b.number, reverse=True)
        body = self._task_json(request, job)
        body["buildable"] = not job.disabled
        body["builds"] = [self._build_json(request, b) for b in builds]
        return body

    def _console(self, build: FakeBuild) -> str:
        lines = ["Started by remote API", "[Pipeline] Start of Pipeline"]
        if build.result == "ABORTED":
            lines += [*build.outcome.console[:1], "Aborted by accord"]
        else:
            lines += build.outcome.console
        if build.result is not None:
            lines.append(f"Finished: {build.result}")
        return "\n".join(lines) + "\n"

    def _build_app(self) -> Starlette:
        fake = self

        async def endpoint(request: Request) -> Response:
            response = await fake._dispatch(request)
            fake.requests.append((request.method, request.url.path, response.status_code))
            return response

        return Starlette(routes=[Route("/{rest:path}", endpoint, methods=["GET", "POST"])])
