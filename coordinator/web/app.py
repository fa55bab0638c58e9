"""The tracing UI: a Starlette app serving the pages, their static files and the JSON API.

Every request that reads or changes data goes to the coordinator's API with the signed-in user's
own token (see ``_source``), so the UI is scoped by exactly the rules of the gRPC API. The app
itself only keeps sessions: an opaque cookie id whose hash keys a row in the coordinator's store,
which holds the token sealed under that id (``_sessions``), so any coordinator on the store
serves any session.

CSRF: the session cookie is ``SameSite=Strict`` and every state-changing request must also carry
the session's token in the ``X-Accord-CSRF`` header (sign-in, which has no session yet, must be a
same-origin JSON request).
"""

from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.durations import parse_duration
from contracts.errors import (
    DurationError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RemoteError,
    UnauthenticatedError,
    UnreachableError,
)
from coordinator.telemetry.hops import shown_step_status, step_was_started
from coordinator.web._graph import step_graph, team_graph, workflow_steps, workflow_triggers
from coordinator.web._redact import redact_run
from coordinator.web._sessions import COOKIE_NAME, CSRF_HEADER, Session, SessionStore, csrf_ok
from coordinator.web._source import AuditQuery, JSONDict, Principal, RunQuery, Source
from coordinator.web._trace import layout_trace

logger = logging.getLogger(__name__)
T = TypeVar("T")

WEB_DIR = Path(__file__).resolve().parent
STATIC_DIR = WEB_DIR / "static"
TEMPLATE_DIR = WEB_DIR / "templates"

RUN_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
LIVE_STATUSES = frozenset({"pending", "running"})
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 200
AUDIT_PAGE_DEFAULT = 100
MAX_UNIX_MS = 2**53  # times in query parameters and cursors
MAX_BODY_BYTES = 64 * 1024  # a request body (a token, a cancel reason): read no more than this
MAX_QUERY_CHARS = 4096  # a query parameter's value (the API's own limit on names and queries)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

# Pages: path -> page name the front-end boots (static/pages/<name>.js).
# Longer than any token Accord makes (they are a few dozen characters).
_MAX_TOKEN_CHARS = 4096

PAGES = {
    "/runs": "runs",
    "/runs/{run_id}": "run",
    "/contracts": "contracts",
    "/contracts/diff": "diff",
    "/contracts/{team}/{name}": "contract",
    "/teams": "teams",
    "/audit": "audit",
    "/notices": "notices",
    "/workflows": "workflows",
    "/workflows/{team}/{name}": "workflow",
    "/agents": "agents",
    "/autonomy": "autonomy",
    "/events/{event_id}": "event",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_REMOTE_STATUS: list[tuple[type[RemoteError], int, str]] = [
    (UnauthenticatedError, 401, "unauthenticated"),
    (PermissionDeniedError, 403, "permission_denied"),
    (NotFoundError, 404, "not_found"),
    (InvalidArgumentError, 400, "invalid_argument"),
    (FailedPreconditionError, 409, "failed_precondition"),
    (UnreachableError, 503, "unavailable"),
    (OverloadedError, 503, "overloaded"),  # the page tries again on its next refresh
]


class ApiJSONResponse(JSONResponse):
    """A JSON answer that encodes whatever a run holds: NaN, infinities and lone surrogates that
    reached the store before the API's edge refused them become strings and ``\\u`` escapes
    instead of a 500 (the run list and run page of issue 15, finding 4)."""

    def render(self, content: Any) -> bytes:
        try:
            return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
                "utf-8"
            )
        except ValueError:  # NaN/Infinity (ValueError) or a lone surrogate (UnicodeEncodeError)
            pass
        try:
            safe = _finite(content)
        except RecursionError:
            safe = {"error": {"code": "internal", "message": "the answer nests too deep to show"}}
        return json.dumps(safe, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _finite(value: Any) -> Any:
    """``value`` with each non-finite number replaced by its name ("NaN", "Infinity")."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _json_error(status: int, code: str, message: str) -> JSONResponse:
    return ApiJSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class SecurityHeaders:
    """Adds CSP and friends to every response, and ``no-store`` to everything but static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                if not static:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _encode_cursor(created_ms: int, run_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_ms}:{run_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, run_id = text.split(":", 1)
        if len(created) > 16 or not 0 <= int(created) <= MAX_UNIX_MS:
            raise ValueError(created)
        return int(created), run_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_argument", "cursor: not a cursor this API handed out") from exc


def _int_param(request: Request, name: str, default: int = 0) -> int:
    value = request.query_params.get(name, "")
    if not value:
        return default
    if len(value) <= 10 and value.isascii() and value.lstrip("-").isdigit():
        return int(value)
    shown = value if len(value) <= 40 else value[:40] + "..."
    raise ApiError(400, "invalid_argument", f"{name}: expected an integer (at most 10 digits), got {shown!r}")


def _time_param(request: Request, name: str) -> int:
    """Unix ms, or an ISO 8601 date/time (UTC when no zone is given)."""
    value = request.query_params.get(name, "").strip()
    if not value:
        return 0
    shown = value if len(value) <= 40 else value[:40] + "..."
    if value.isascii() and value.isdigit() and len(value) <= 16 and int(value) <= MAX_UNIX_MS:
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):
        ms = -1
    if not 0 <= ms <= MAX_UNIX_MS:
        raise ApiError(
            400,
            "invalid_argument",
            f"{name}: expected unix milliseconds (0 to {MAX_UNIX_MS}) or an ISO date after 1970, got {shown!r}",
        )
    return ms


def may_cancel(principal: Principal, run: JSONDict) -> bool:
    """Whether to offer Cancel. Only a hint for the page: the coordinator decides on the call."""
    if run["status"] not in LIVE_STATUSES:
        return False
    return principal.admin or principal.team == run["team"]


def may_rerun(principal: Principal, run: JSONDict) -> bool:
    """Whether to offer Re-run (StartRun with the same input): the input must be visible."""
    if run.get("payload_hidden") or run.get("input") is None:
        return False
    return principal.admin or principal.team == run["team"]


def may_answer(principal: Principal, run: JSONDict, workflow: JSONDict | None) -> list[str]:
    """The steps waiting for an approval that the viewer may approve or reject (the teams a
    step names, the workflow's owner, the admin): where to offer Approve/Reject. Only a hint for
    the page: the coordinator decides on the call."""
    definition = (workflow or {}).get("definition")
    specs = definition.get("steps") if isinstance(definition, dict) else None
    if run["status"] not in LIVE_STATUSES or not isinstance(specs, dict):
        return []
    allowed = []
    for step in run["steps"]:
        spec = specs.get(step["id"])
        if not isinstance(spec, dict) or spec.get("wait_for") != "approval" or step["status"] != "running":
            continue
        by = spec["by"] if isinstance(spec.get("by"), list) else []
        if principal.admin or principal.team == run["team"] or principal.team in by:
            allowed.append(step["id"])
    return allowed


class UiApp:
    """Handlers of the UI, holding its explicit dependencies."""

    def __init__(self, source: Source, sessions: SessionStore, *, secure_cookies: bool) -> None:
        self.source = source
        self.sessions = sessions
        self.secure_cookies = secure_cookies
        self.shell = (TEMPLATE_DIR / "shell.html").read_text()
        self.signin_page = (TEMPLATE_DIR / "signin.html").read_text()
        self.asset_version = str(int(max(p.stat().st_mtime for p in STATIC_DIR.rglob("*") if p.is_file())))

    # ---------- sessions

    async def session_of(self, request: Request) -> Session | None:
        cookie = request.cookies.get(COOKIE_NAME)
        session = await self._sessions_call(self.sessions.get(cookie))
        if session is not None and session.touched:
            # Now and then (when its use is recorded) a session confirms its token, so a rotated
            # one ends its sessions even where only pages that call nothing are opened.
            try:
                await self.source.whoami(session.token)
            except UnauthenticatedError:
                await self._sessions_call(self.sessions.delete(cookie))
                return None
            except RemoteError:
                pass  # the coordinator did not answer: the next call that reaches it decides
        return session

    async def _sessions_call(self, call: Awaitable[T]) -> T:
        """A call to the session store; its failure (the database unreachable) is a 503."""
        try:
            return await call
        except Exception as exc:
            logger.warning("ui sessions: the store failed: %s", exc)
            raise ApiError(
                503, "unavailable", "Sessions cannot be read right now (the coordinator's store): try again."
            ) from exc

    async def require_session(self, request: Request) -> Session:
        session = await self.session_of(request)
        if session is None:
            raise ApiError(401, "unauthenticated", "Not signed in (or the session expired): sign in again.")
        return session

    def require_csrf(self, request: Request, session: Session) -> None:
        if not csrf_ok(session, request.headers.get(CSRF_HEADER)):
            raise ApiError(403, "csrf", f"Missing or wrong {CSRF_HEADER} header for this session.")

    async def call(self, request: Request, session: Session, fn: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await fn()
        except RemoteError as exc:
            for error_type, status, code in _REMOTE_STATUS:
                if isinstance(exc, error_type):
                    if status == 401:
                        # The token was rotated or revoked: this session is over, everywhere.
                        cookie = request.cookies.get(COOKIE_NAME)
                        await self._sessions_call(self.sessions.delete(cookie))
                    raise ApiError(status, code, str(exc) or code) from exc
            raise ApiError(502, "coordinator_error", str(exc) or "the coordinator failed") from exc

    # ---------- pages

    def _same_origin(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if origin is None:
            # No Origin header (old browsers, non-browser clients): fall back to Sec-Fetch-Site.
            return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
        return urlsplit(origin).netloc == request.headers.get("host", "")

    async def index(self, request: Request) -> Response:
        return RedirectResponse("/runs", status_code=303)

    async def signin(self, request: Request) -> Response:
        return HTMLResponse(self.signin_page.replace("{{v}}", self.asset_version))

    async def page(self, request: Request) -> Response:
        try:
            session = await self.session_of(request)
        except ApiError as exc:
            return HTMLResponse(
                f"<!doctype html><title>Unavailable</title><p>{html.escape(exc.message)}", exc.status
            )
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)
        route = request.scope["route"].path
        page = PAGES[route]
        args = json.dumps(request.path_params)
        body = (
            self.shell.replace("{{page}}", page)
            .replace("{{args}}", html.escape(args, quote=True))
            .replace("{{csrf}}", html.escape(session.csrf, quote=True))
            .replace("{{user}}", html.escape(session.principal.label, quote=True))
            .replace("{{admin}}", "true" if session.principal.admin else "false")
            .replace("{{v}}", self.asset_version)
        )
        return HTMLResponse(body)

    # ---------- session API

    async def get_session(self, request: Request) -> Response:
        session = await self.require_session(request)
        return ApiJSONResponse(self._session_json(session))

    def _session_json(self, session: Session) -> JSONDict:
        return {
            "team": session.principal.team,
            "admin": session.principal.admin,
            "label": session.principal.label,
            "csrf": session.csrf,
        }

    async def sign_in(self, request: Request) -> Response:
        if not self._same_origin(request):
            raise ApiError(403, "csrf", "Sign-in must come from this site's own page.")
        if "application/json" not in request.headers.get("content-type", ""):
            raise ApiError(415, "unsupported_media_type", 'Send the token as JSON: {"token": "..."}.')
        body = _parse_body(await _read_body(request))
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token.strip():
            raise ApiError(400, "invalid_argument", "token: required (a team token or the admin token).")
        token = token.strip()
        # A token is printable ASCII (it travels in gRPC metadata): anything else cannot be one.
        if not (token.isascii() and token.isprintable()) or len(token) > _MAX_TOKEN_CHARS:
            raise ApiError(401, "unauthenticated", "That token is not valid here.")
        try:
            principal = await self.source.whoami(token)
        except UnauthenticatedError:
            raise ApiError(401, "unauthenticated", "That token is not valid here.") from None
        except UnreachableError as exc:
            raise ApiError(503, "unavailable", str(exc) or "coordinator unreachable") from exc
        old = request.cookies.get(COOKIE_NAME)
        await self._sessions_call(self.sessions.delete(old))
        session_id, session = await self._sessions_call(self.sessions.create(token, principal))
        logger.info("ui sign-in", extra={"principal": principal.label})
        response = ApiJSONResponse(self._session_json(session))
        response.set_cookie(
            COOKIE_NAME,
            session_id,
            httponly=True,
            samesite="strict",
            secure=self.secure_cookies,
            path="/",
        )
        return response

    async def sign_out(self, request: Request) -> Response:
        session = await self.require_session(request)
        self.require_csrf(request, session)
        cookie = request.cookies.get(COOKIE_NAME)
        await self._sessions_call(self.sessions.delete(cookie))
        response = ApiJSONResponse({"signed_out": True})
        response.delete_cookie(
            COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=self.secure_cookies
        )
        return response

    # ---------- runs API

    async def list_runs(self, request: Request) -> Response:
        session = await self.require_session(request)
        params = request.query_params
        status = params.get("status", "")
        if status and status not in RUN_STATUSES:
            raise ApiError(400, "invalid_argument", f"status: one of {', '.join(RUN_STATUSES)}")
        limit = max(1, min(_int_param(request, "limit", PAGE_SIZE_DEFAULT), PAGE_SIZE_MAX))
        query = RunQuery(
            workflow=params.get("workflow", "").strip(),
            status=status,
            team=params.get("team", "").strip(),
            created_after_ms=_time_param(request, "after"),
            created_before_ms=_time_param(request, "before"),
            query=params.get("q", "").strip(),
        )
        cursor = _decode_cursor(params["cursor"]) if params.get("cursor") else None
        started = time.perf_counter()
        runs, next_cursor = await self.call(
            request, session, lambda: self._runs_page(session, query, cursor, limit)
        )
        return ApiJSONResponse(
            {
                "runs": runs,
                "next_cursor": next_cursor,
                "live": any(r["status"] in LIVE_STATUSES for r in runs),
                "server_ms": round((time.perf_counter() - started) * 1000, 2),
            }
        )

    async def _runs_page(
        self, session: Session, query: RunQuery, cursor: tuple[int, str] | None, limit: int
    ) -> tuple[list[JSONDict], str]:
        """Keyset pagination over (created_ms, run_id) descending, on top of the API's time bound.

        The API is asked for runs created before the cursor's millisecond (inclusive), and rows at
        or after the cursor are dropped. When a batch comes back full, its oldest millisecond may
        be cut short, so those rows wait for the next page (which re-reads that millisecond)."""
        bound = query.created_before_ms
        if cursor is not None:
            bound = min(bound, cursor[0] + 1) if bound else cursor[0] + 1
        fetch = limit + 1 + 32
        while True:
            rows = await self.source.list_runs(
                session.token, replace(query, created_before_ms=bound, limit=fetch)
            )
            full = len(rows) >= fetch
            raw_oldest = min((r["created_ms"] for r in rows), default=0)
            rows.sort(key=lambda r: (r["created_ms"], r["run_id"]), reverse=True)
            if cursor is not None:
                rows = [r for r in rows if (r["created_ms"], r["run_id"]) < cursor]
            complete = [r for r in rows if r["created_ms"] > raw_oldest] if full else rows
            if len(complete) > limit or not full or fetch >= 2000:
                break
            fetch *= 4
        page = complete[:limit] if complete else rows[:limit]
        more = len(complete) > limit or full
        for run in page:
            run.pop("steps", None)
            run["duration_ms"] = (run["finished_ms"] or int(time.time() * 1000)) - run["created_ms"]
        next_cursor = _encode_cursor(page[-1]["created_ms"], page[-1]["run_id"]) if more and page else ""
        return page, next_cursor

    async def get_run(self, request: Request) -> Response:
        session = await self.require_session(request)
        run_id = request.path_params["run_id"]
        started = time.perf_counter()
        run = await self.call(request, session, lambda: self.source.get_run(session.token, run_id))
        workflow: JSONDict | None
        try:
            workflow = await self.source.get_workflow(session.token, run["workflow"], run["workflow_version"])
        except RemoteError:
            workflow = None  # not visible to this viewer: draw the graph from the run's steps
        redact_run(run, await self._sensitive_fields(session, run), workflow)
        principal = session.principal
        now_ms = int(time.time() * 1000)
        step_ids = [step["id"] for step in run["steps"]]
        for step in run["steps"]:
            end = step["finished_ms"] or (now_ms if step["started_ms"] else 0)
            step["duration_ms"] = end - step["started_ms"] if step["started_ms"] else 0
            # The word every view uses: "not started" for a step cancelled before it began.
            step["state"] = shown_step_status(
                step["status"], step_was_started(step["id"], len(step["attempts"]), step_ids)
            )
        started_by_event = None
        key = str(run.get("idempotency_key") or "")
        if key.startswith("event:"):  # started by an event's trigger (coordinator/events)
            try:
                started_by_event = await self.source.get_event(session.token, key[len("event:") :])
            except RemoteError:
                started_by_event = {"event_id": key[len("event:") :]}  # pruned: the id alone
        return ApiJSONResponse(
            {
                "run": run,
                "started_by_event": started_by_event,
                "graph": step_graph(workflow, run["steps"]),
                "teams": sorted({run["team"], *(s["team"] for s in run["steps"])}),
                "viewer": {"team": principal.team, "admin": principal.admin},
                "permissions": {
                    "cancel": may_cancel(principal, run),
                    "rerun": may_rerun(principal, run),
                    "answer": may_answer(principal, run, workflow),
                },
                "live": run["status"] in LIVE_STATUSES,
                "server_ms": round((time.perf_counter() - started) * 1000, 2),
            }
        )

    async def _sensitive_fields(self, session: Session, run: JSONDict) -> dict[str, list[str]]:
        """``contract@version`` -> its sensitive paths, for the versions the run's steps pinned."""
        refs = sorted(
            {f"{s['contract']}@{s['contract_version']}" for s in run["steps"] if s["contract_version"]}
        )

        async def one(ref: str) -> list[str]:
            try:
                found = await self.source.get_contract(session.token, ref)
            except RemoteError:
                return []
            return list(found["contract"].get("sensitive", []))

        return dict(zip(refs, await asyncio.gather(*(one(ref) for ref in refs)), strict=True))

    async def get_trace(self, request: Request) -> Response:
        session = await self.require_session(request)
        run_id = request.path_params["run_id"]
        started = time.perf_counter()
        trace = await self.call(request, session, lambda: self.source.get_trace(session.token, run_id))
        body = layout_trace(trace)
        body["server_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return ApiJSONResponse(body)

    async def _json_body(self, request: Request) -> JSONDict:
        raw = await _read_body(request)
        if not raw:
            return {}
        body = _parse_body(raw)
        if not isinstance(body, dict):
            raise ApiError(400, "invalid_argument", "The body must be a JSON object.")
        return body

    async def cancel_run(self, request: Request) -> Response:
        session = await self.require_session(request)
        self.require_csrf(request, session)
        run_id = request.path_params["run_id"]
        body = await self._json_body(request)
        reason = str(body.get("reason") or f"cancelled from the UI by {session.principal.label}")
        request_id = str(body.get("request_id") or uuid.uuid4())
        run = await self.call(
            request, session, lambda: self.source.cancel_run(session.token, run_id, reason, request_id)
        )
        run.pop("steps", None)
        return ApiJSONResponse({"run": run})

    async def answer_step(self, request: Request) -> Response:
        """Approve or reject a waiting step: body ``{"approve": bool, "comment": str}``."""
        session = await self.require_session(request)
        self.require_csrf(request, session)
        run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
        body = await self._json_body(request)
        approve = body.get("approve")
        if not isinstance(approve, bool):
            raise ApiError(400, "invalid_argument", "The body needs approve: true or false.")
        comment = str(body.get("comment") or "")
        request_id = str(body.get("request_id") or uuid.uuid4())
        run = await self.call(
            request,
            session,
            lambda: self.source.answer_step(session.token, run_id, step_id, approve, comment, request_id),
        )
        run.pop("steps", None)
        return ApiJSONResponse({"run": run})

    async def rerun(self, request: Request) -> Response:
        session = await self.require_session(request)
        self.require_csrf(request, session)
        run_id = request.path_params["run_id"]
        body = await self._json_body(request)
        run = await self.call(request, session, lambda: self.source.get_run(session.token, run_id))
        if run.get("payload_hidden") or run.get("input") is None:
            raise ApiError(
                403, "permission_denied", "This run's input is hidden from you, so it cannot be re-run."
            )
        # The request id makes a double click start one run, not two.
        request_id = str(body.get("request_id") or uuid.uuid4())
        # The coordinator copies the run's stored input: the one shown here has its sensitive
        # fields redacted, and a re-run must not charge a card "[redacted]".
        started = await self.call(
            request,
            session,
            lambda: self.source.start_run(session.token, run["workflow"], "", request_id, rerun_of=run_id),
        )
        new_run = started["run"]
        new_run.pop("steps", None)
        return ApiJSONResponse({"run": new_run, "created": started["created"]}, status_code=201)

    # ---------- contracts API

    async def list_contracts(self, request: Request) -> Response:
        session = await self.require_session(request)
        team = request.query_params.get("team", "").strip()
        contracts = await self.call(
            request, session, lambda: self.source.list_contracts(session.token, team=team, all_versions=True)
        )
        teams: dict[str, dict[str, list[JSONDict]]] = {}
        for c in contracts:
            teams.setdefault(c["team"], {}).setdefault(c["name"], []).append(
                {
                    "version": c["version"],
                    "description": c["description"],
                    "deprecated": c["deprecated"],
                    "retired_ms": c.get("retired_ms", 0),
                    "visibility": c["visibility"],
                    "registered_ms": c["registered_ms"],
                }
            )
        out = []
        for team_name in sorted(teams):
            items = []
            for name in sorted(teams[team_name]):
                versions = sorted(
                    teams[team_name][name], key=lambda v: _semver_key(v["version"]), reverse=True
                )
                items.append({"name": name, "latest": versions[0]["version"], "versions": versions})
            out.append({"team": team_name, "contracts": items})
        return ApiJSONResponse({"teams": out, "count": len(contracts)})

    async def get_contract(self, request: Request) -> Response:
        session = await self.require_session(request)
        name = f"{request.path_params['team']}/{request.path_params['name']}"
        contracts = await self.call(
            request,
            session,
            lambda: self.source.list_contracts(session.token, name_prefix=name, all_versions=True),
        )
        versions = sorted(
            (c for c in contracts if c["name"] == name), key=lambda c: _semver_key(c["version"]), reverse=True
        )
        if not versions:
            raise ApiError(404, "not_found", f"No contract {name} (or it is not visible to you).")
        refs = [v["ref"] for v in versions]
        consumers = await self.call(
            request,
            session,
            lambda: asyncio.gather(*(self.source.contract_consumers(session.token, ref) for ref in refs)),
        )
        for version, found in zip(versions, consumers, strict=True):
            version["consumers"] = found
        return ApiJSONResponse({"name": name, "team": versions[0]["team"], "versions": versions})

    async def diff_contracts(self, request: Request) -> Response:
        session = await self.require_session(request)
        old_ref = request.query_params.get("old", "").strip()
        new_ref = request.query_params.get("new", "").strip()
        if not old_ref or not new_ref:
            raise ApiError(
                400, "invalid_argument", "old and new: both required, e.g. old=payments/charge-card@1.0.0"
            )
        diff = await self.call(
            request, session, lambda: self.source.diff_contracts(session.token, old_ref, new_ref)
        )
        old = await self.call(request, session, lambda: self.source.get_contract(session.token, old_ref))
        new = await self.call(request, session, lambda: self.source.get_contract(session.token, new_ref))
        return ApiJSONResponse({"old": old["contract"], "new": new["contract"], **diff})

    # ---------- audit API

    async def list_audit(self, request: Request) -> Response:
        """The audit log as the viewer may read it (a team: what it owns or made; the admin:
        everything), newest first, keyset-paginated by entry id."""
        session = await self.require_session(request)
        params = request.query_params
        limit = max(1, min(_int_param(request, "limit", AUDIT_PAGE_DEFAULT), PAGE_SIZE_MAX))
        since = params.get("since", "").strip()
        since_ms = 0
        if since:
            try:
                seconds = parse_duration(since, what="since")
            except DurationError as exc:
                raise ApiError(400, "invalid_argument", str(exc)) from None
            if seconds <= 0:
                raise ApiError(
                    400, "invalid_argument", f"since: must be longer than 0, not {since!r} (e.g. 7d)"
                )
            cutoff = time.time() - seconds  # before the epoch (e.g. --since 99999w): everything
            since_ms = int(cutoff * 1000) if cutoff > 1 else 1
        cursor = _int_param(request, "cursor")
        if cursor < 0:
            raise ApiError(400, "invalid_argument", "cursor: not a cursor this API handed out")
        query = AuditQuery(
            team=params.get("team", "").strip(), since_ms=since_ms, before_id=cursor, limit=limit + 1
        )
        started = time.perf_counter()
        entries = await self.call(request, session, lambda: self.source.list_audit(session.token, query))
        more = len(entries) > limit
        entries = entries[:limit]
        principal = session.principal
        return ApiJSONResponse(
            {
                "entries": entries,
                "next_cursor": str(entries[-1]["id"]) if more and entries else "",
                "viewer": {"team": principal.team, "admin": principal.admin},
                "server_ms": round((time.perf_counter() - started) * 1000, 2),
            }
        )

    # ---------- notices API

    async def list_notices(self, request: Request) -> Response:
        """What concerns the viewer's team: deprecated or retired versions its workflows call,
        and who still calls the deprecated versions it owns (docs/ui-api.md)."""
        session = await self.require_session(request)
        team = request.query_params.get("team", "").strip()
        notices = await self.call(request, session, lambda: self.source.list_notices(session.token, team))
        principal = session.principal
        return ApiJSONResponse(
            {"notices": notices, "viewer": {"team": principal.team, "admin": principal.admin}}
        )

    async def list_workflows(self, request: Request) -> Response:
        """Every workflow the viewer may see (its newest version), with the teams and contracts
        its steps call."""
        session = await self.require_session(request)
        team = request.query_params.get("team", "").strip()
        workflows = await self.call(request, session, lambda: self.source.list_workflows(session.token, team))
        return ApiJSONResponse({"workflows": [_workflow_summary(w) for w in workflows]})

    async def get_workflow(self, request: Request) -> Response:
        """One workflow: its versions (newest first, at most ``_WORKFLOW_VERSIONS``), the steps
        of the one asked for (``?version=N``, default the newest) with who they call, its step
        graph, and its latest runs."""
        session = await self.require_session(request)
        name = f"{request.path_params['team']}/{request.path_params['name']}"
        wanted = request.query_params.get("version", "")
        if wanted and not wanted.isdigit():
            raise ApiError(400, "invalid_argument", f"version: a number, e.g. version=2, not '{wanted}'.")
        newest = await self.call(request, session, lambda: self.source.get_workflow(session.token, name))

        async def version(number: int) -> JSONDict | None:
            try:
                return await self.source.get_workflow(session.token, name, number)
            except NotFoundError:  # a deleted version
                return None

        numbers = range(newest["version"], max(newest["version"] - _WORKFLOW_VERSIONS, 0), -1)
        found = await self.call(request, session, lambda: asyncio.gather(*(version(n) for n in numbers)))
        versions = [v for v in found if v is not None]
        current = next((v for v in versions if str(v["version"]) == wanted), newest) if wanted else newest
        runs = await self.call(
            request, session, lambda: self.source.list_runs(session.token, RunQuery(workflow=name, limit=20))
        )
        for run in runs:
            run.pop("steps", None)
        graph = step_graph(current, [])  # no run: the nodes say no state
        return ApiJSONResponse(
            {
                "name": name,
                "team": newest["team"],
                "current": {**_workflow_summary(current), "source_text": current["source_text"]},
                "newest_version": newest["version"],
                "versions": [
                    {k: v[k] for k in ("version", "registered_ms", "registered_by", "description")}
                    for v in versions
                ],
                "graph": {**graph, "nodes": [{**n, "state": ""} for n in graph["nodes"]]},
                "runs": runs,
            }
        )

    async def get_event(self, request: Request) -> Response:
        """An event: what it was, who published it, what it started (docs/ui-api.md, "Events").
        Every team sees that an event happened and what it started; no payload (the CLI's
        ``accord event show`` gives it to its team)."""
        session = await self.require_session(request)
        event_id = request.path_params["event_id"]
        event = await self.call(request, session, lambda: self.source.get_event(session.token, event_id))
        return ApiJSONResponse({"event": event})

    async def list_agents(self, request: Request) -> Response:
        session = await self.require_session(request)
        team = request.query_params.get("team", "").strip()
        agents = await self.call(request, session, lambda: self.source.list_agents(session.token, team))
        return ApiJSONResponse({"agents": agents})

    # ---------- autonomy API

    async def autonomy(self, request: Request) -> Response:
        """The autonomy report and the last changes (docs/ui-api.md, ``/api/v1/autonomy``)."""
        session = await self.require_session(request)
        params = request.query_params
        since = params.get("since", "30d") or "30d"
        try:
            seconds = parse_duration(since, what="since")
        except DurationError as exc:
            raise ApiError(400, "invalid_argument", str(exc)) from None
        if seconds <= 0:
            raise ApiError(400, "invalid_argument", f"since: must be longer than 0, not {since!r} (e.g. 30d)")
        since_ms = max(int((time.time() - seconds) * 1000), 1)
        last = _int_param(request, "last", 5)
        if not 1 <= last <= 100:
            raise ApiError(400, "invalid_argument", "last: between 1 and 100")
        by = params.get("by", "week") or "week"
        if by not in ("day", "week", "month"):
            raise ApiError(400, "invalid_argument", f"by: day, week or month, not {by!r}")
        team = params.get("team", "").strip()
        data = await self.call(
            request, session, lambda: self.source.autonomy(session.token, team, since_ms, last, by)
        )
        principal = session.principal
        return ApiJSONResponse({**data, "viewer": {"team": principal.team, "admin": principal.admin}})

    async def teams_graph(self, request: Request) -> Response:
        session = await self.require_session(request)
        teams = await self.call(request, session, lambda: self.source.list_teams(session.token))
        workflows = await self.call(request, session, lambda: self.source.list_workflows(session.token))
        return ApiJSONResponse(team_graph(teams, workflows))


_WORKFLOW_VERSIONS = 20  # versions a workflow's page lists


def _workflow_summary(workflow: JSONDict) -> JSONDict:
    steps = workflow_steps(workflow)
    return {
        "name": workflow["name"],
        "team": workflow["team"],
        "version": workflow["version"],
        "description": workflow["description"],
        "registered_ms": workflow["registered_ms"],
        "registered_by": workflow["registered_by"],
        "disabled_ms": workflow.get("disabled_ms", 0),
        "steps": steps,
        "calls": sorted({(s["team"], s["contract"]) for s in steps if s["contract"]}),
        "triggers": workflow_triggers(workflow),
    }


def _semver_key(version: str) -> tuple[int, ...]:
    parts = []
    for part in version.split("-", 1)[0].split("."):
        parts.append(int(part) if part.isdigit() else 0)
    return tuple(parts)


async def _read_body(request: Request) -> bytes:
    """The request's body, refused with 413 as soon as it is known to exceed ``MAX_BODY_BYTES``:
    from its Content-Length before anything is read, else while it streams in."""
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise ApiError(
            413, "payload_too_large", f"The body is {declared} bytes; the limit is {MAX_BODY_BYTES}."
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, "payload_too_large", f"The body exceeds the limit of {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_body(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_argument", "The body is not JSON.") from None


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _api(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            for key, value in [*request.query_params.multi_items(), *request.path_params.items()]:
                if len(value) > MAX_QUERY_CHARS:
                    raise ApiError(
                        400,
                        "invalid_argument",
                        f"{key[:40]}: {len(value)} characters; the limit is {MAX_QUERY_CHARS}",
                    )
            return await handler(request)
        except ApiError as exc:
            return _json_error(exc.status, exc.code, exc.message)

    endpoint.__name__ = handler.__name__
    return endpoint


def create_app(source: Source, *, sessions: SessionStore, secure_cookies: bool = False) -> Starlette:
    """The UI app. ``source`` is how it reaches the coordinator's API (``GrpcSource`` in the
    coordinator process); ``sessions`` keeps the sign-ins in the coordinator's store;
    ``secure_cookies`` marks the cookie Secure (behind HTTPS)."""
    ui = UiApp(source, sessions, secure_cookies=secure_cookies)
    api = "/api/v1"
    routes = [
        Route("/", ui.index),
        Route("/signin", ui.signin),
        *[Route(path, ui.page) for path in PAGES],
        Route(f"{api}/session", _api(ui.get_session), methods=["GET"]),
        Route(f"{api}/session", _api(ui.sign_in), methods=["POST"]),
        Route(f"{api}/session", _api(ui.sign_out), methods=["DELETE"]),
        Route(f"{api}/runs", _api(ui.list_runs), methods=["GET"]),
        Route(f"{api}/runs/{{run_id}}", _api(ui.get_run), methods=["GET"]),
        Route(f"{api}/runs/{{run_id}}/trace", _api(ui.get_trace), methods=["GET"]),
        Route(f"{api}/runs/{{run_id}}/cancel", _api(ui.cancel_run), methods=["POST"]),
        Route(f"{api}/runs/{{run_id}}/rerun", _api(ui.rerun), methods=["POST"]),
        Route(f"{api}/runs/{{run_id}}/steps/{{step_id}}/answer", _api(ui.answer_step), methods=["POST"]),
        Route(f"{api}/contracts", _api(ui.list_contracts), methods=["GET"]),
        Route(f"{api}/contracts/diff", _api(ui.diff_contracts), methods=["GET"]),
        Route(f"{api}/contracts/{{team}}/{{name}}", _api(ui.get_contract), methods=["GET"]),
        Route(f"{api}/teams/graph", _api(ui.teams_graph), methods=["GET"]),
        Route(f"{api}/workflows", _api(ui.list_workflows), methods=["GET"]),
        Route(f"{api}/agents", _api(ui.list_agents), methods=["GET"]),
        Route(f"{api}/workflows/{{team}}/{{name}}", _api(ui.get_workflow), methods=["GET"]),
        Route(f"{api}/events/{{event_id}}", _api(ui.get_event), methods=["GET"]),
        Route(f"{api}/audit", _api(ui.list_audit), methods=["GET"]),
        Route(f"{api}/notices", _api(ui.list_notices), methods=["GET"]),
        Route(f"{api}/autonomy", _api(ui.autonomy), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(SecurityHeaders)])
    app.state.ui = ui

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(f"{api}/"):
            return _json_error(404, "not_found", f"No API endpoint {request.method} {request.url.path}.")
        return HTMLResponse(
            "<!doctype html><title>Not found</title><p>Not found. <a href='/runs'>Runs</a>", 404
        )

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return _json_error(
            405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}."
        )

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, method_not_allowed)
    return app
