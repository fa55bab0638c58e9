"""``http``: POST the input as JSON to a service; its JSON answer is the output.

    with:
      url: https://refunds.internal/api/refund
      headers: {Authorization: "Bearer ${secret:REFUNDS_TOKEN}"}
      timeout: 30s          # whole request; connect is capped at 10s

Sends ``traceparent`` (and ``tracestate``), ``Idempotency-Key`` and ``X-Accord-Run-Id``/``-Step-Id``
/``-Attempt``. Redirects are not followed. 2xx → output; 408, 429, 5xx and network errors →
retryable failure; other 4xx (and 3xx) → non-retryable. The error type is the JSON body's
``error`` (or ``error.type``, or ``type``) when there is one, else ``HTTP<status>``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from contracts.durations import DurationError, parse_duration
from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext

DEFAULT_TIMEOUT = 30.0
MAX_CONNECT_TIMEOUT = 10.0
RETRYABLE_STATUSES = frozenset({408, 425, 429})
BODY_SNIPPET_CHARS = 2000


def _error_from_body(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if isinstance(error, dict):
        kind = error.get("type") or error.get("code")
        message = error.get("message")
        return (str(kind) if kind else None), (str(message) if message else None)
    kind = error if isinstance(error, str) else body.get("type")
    message = body.get("message") or body.get("detail")
    return (str(kind) if kind else None), (str(message) if message else None)


class HttpEngine:
    name: ClassVar[str] = "http"

    def __init__(
        self, config: Mapping[str, Any], *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        problems = [
            (k, "unknown option for the http engine")
            for k in sorted(set(config) - {"url", "headers", "timeout"})
        ]
        url = config.get("url")
        if (
            not isinstance(url, str)
            or urlsplit(url).scheme not in {"http", "https"}
            or not urlsplit(url).netloc
        ):
            problems.append(("url", "missing or invalid: an http:// or https:// URL"))
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            problems.append(("headers", "must map header names to string values"))
            headers = {}
        try:
            timeout = parse_duration(config.get("timeout", DEFAULT_TIMEOUT))
        except DurationError:
            timeout = 0.0
        if timeout <= 0:
            problems.append(("timeout", "must be a positive duration such as 30s"))
            timeout = DEFAULT_TIMEOUT
        if problems:
            raise EngineConfigError(problems)
        self._url = str(url)
        self._headers = dict(headers)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, MAX_CONNECT_TIMEOUT)),
            follow_redirects=False,
            transport=transport,
        )

    async def _post(self, task: TaskContext, input: Any) -> httpx.Response:
        headers = {
            **self._headers,
            "content-type": "application/json",
            "accept": "application/json",
            "idempotency-key": task.idempotency_key,
            "x-accord-run-id": task.run_id,
            "x-accord-step-id": task.step_id,
            "x-accord-attempt": str(task.attempt),
        }
        for key in ("traceparent", "tracestate"):
            if task.trace_context.get(key):
                headers[key] = task.trace_context[key]
        return await self._client.post(self._url, content=json.dumps(input).encode(), headers=headers)

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        request = asyncio.create_task(self._post(task, input))
        return Handle(details={"url": self._url}, state={"request": request})

    async def wait(self, handle: Handle) -> Any:
        request: asyncio.Task[httpx.Response] = handle.state["request"]
        details = dict(handle.details)
        try:
            response = await asyncio.shield(request)
        except asyncio.CancelledError:
            request.cancel()
            raise
        except httpx.TimeoutException as exc:
            raise EngineFailure(
                f"no answer from {self._url} in time ({type(exc).__name__})",
                type="Timeout",
                retryable=True,
                details=details,
            ) from None
        except httpx.HTTPError as exc:
            raise EngineFailure(
                f"cannot reach {self._url}: {exc}", type="ConnectionError", retryable=True, details=details
            ) from None
        status = response.status_code
        details["status"] = status
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if 200 <= status < 300:
            if body is None and response.content.strip() not in (b"", b"null"):
                details["body"] = response.text[:BODY_SNIPPET_CHARS]
                raise EngineFailure(
                    f"{self._url} answered {status} but the body is not JSON",
                    type="InvalidOutput",
                    retryable=False,
                    details=details,
                )
            return body
        details["body"] = response.text[:BODY_SNIPPET_CHARS]
        if 300 <= status < 400:
            details["location"] = response.headers.get("location", "")
        error_type, message = _error_from_body(body)
        retryable = status in RETRYABLE_STATUSES or status >= 500
        reason = message or response.reason_phrase or "error"
        raise EngineFailure(
            f"{self._url} answered {status}: {reason}",
            type=error_type or f"HTTP{status}",
            retryable=retryable,
            details=details,
        )

    async def cancel(self, handle: Handle) -> None:
        handle.state["request"].cancel()

    async def close(self) -> None:
        await self._client.aclose()
