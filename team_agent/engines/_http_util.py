"""Private helpers shared by the HTTP-speaking engine adapters (``airflow``, ``jenkins``).

Config reading that collects every problem before raising (durations in the grammar of
``contracts.durations``), a poll backoff, the W3C trace context to hand on to an engine, and the
mapping of transport errors and HTTP statuses onto ``EngineFailure``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any

import httpx
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from contracts.durations import DurationError, parse_duration
from team_agent.engines.base import EngineConfigError, EngineFailure, TaskContext

# Statuses that mean "the engine (or a proxy in front of it) is briefly unavailable".
TRANSIENT_STATUSES = frozenset({502, 503, 504})


class ConfigReader:
    """Reads a binding's ``with:`` mapping, collecting every problem instead of stopping at the
    first, so ``EngineConfigError`` can list them all."""

    def __init__(self, engine: str, config: Mapping[str, Any], known: set[str]) -> None:
        self.engine = engine
        self.problems: list[tuple[str, str]] = []
        if not isinstance(config, Mapping):
            self.problems.append(("", f"{engine}: the 'with:' block must be a mapping"))
            config = {}
        self.config = config
        for key in sorted(set(config) - known):
            self.problems.append(
                (key, f"unknown key for the {engine} engine (known keys: {', '.join(sorted(known))})")
            )

    def problem(self, field: str, message: str) -> None:
        self.problems.append((field, message))

    def string(self, key: str, *, required: bool = False, default: str | None = None) -> str | None:
        value = self.config.get(key)
        if value is None or value == "":
            if required:
                self.problem(key, "is required")
            return default
        if not isinstance(value, str):
            self.problem(key, f"must be a string, got {type(value).__name__}")
            return default
        return value

    def url(self, key: str) -> str:
        value = self.string(key, required=True) or ""
        if value and not re.match(r"^https?://[^/\s]+", value):
            self.problem(key, f"must be an http:// or https:// URL, got {value!r}")
        return value.rstrip("/")

    def boolean(self, key: str, default: bool) -> bool:
        value = self.config.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {value!r}")
            return default
        return value

    def duration(self, key: str, default: float | None) -> float | None:
        if self.config.get(key) is None:
            return default
        value = self.config[key]
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            self.problem(key, str(exc))
            return default
        if seconds <= 0:
            self.problem(key, f"a duration must be positive, got {value!r}")
            return default
        return seconds

    def choice(self, key: str, choices: tuple[Any, ...], default: Any) -> Any:
        value = self.config.get(key, default)
        if value not in choices:
            self.problem(key, f"must be one of {', '.join(map(str, choices))}, got {value!r}")
            return default
        return value

    def integer(self, key: str, default: int, minimum: int = 1) -> int:
        value = self.config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problem(key, f"must be an integer >= {minimum}, got {value!r}")
            return default
        return value

    def raise_if_problems(self) -> None:
        if self.problems:
            raise EngineConfigError([(f, f"{self.engine}: {m}") for f, m in self.problems])


class Backoff:
    """Poll intervals growing from ``initial`` by ``factor`` up to ``maximum``."""

    def __init__(self, initial: float, maximum: float, factor: float = 1.5) -> None:
        self.initial = initial
        self.maximum = max(maximum, initial)
        self.factor = factor
        self.current = initial

    def reset(self) -> None:
        self.current = self.initial

    async def sleep(self) -> None:
        await asyncio.sleep(self.current)
        self.current = min(self.current * self.factor, self.maximum)


def outgoing_trace_context(task: TaskContext) -> dict[str, str]:
    """The W3C trace context an engine should continue: the span active here (the agent's span
    for this task) when there is one, else the context the task arrived with."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        TraceContextTextMapPropagator().inject(carrier, context=otel_context.get_current())
    if not carrier.get("traceparent"):
        carrier = {k: v for k, v in task.trace_context.items() if k in ("traceparent", "tracestate")}
    return carrier


def error_detail(response: httpx.Response, limit: int = 500) -> str:
    """A short human-readable account of an error response body."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:limit] if text else response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):  # FastAPI validation errors
            parts = [
                f"{'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg')}"
                if isinstance(item, dict)
                else str(item)
                for item in detail
            ]
            return "; ".join(parts)[:limit]
        if isinstance(detail, dict):  # Airflow's unique-constraint handler
            return str(detail.get("message") or detail.get("reason") or json.dumps(detail))[:limit]
        return str(detail)[:limit]
    return json.dumps(body)[:limit]


def transport_failure(engine: str, exc: httpx.HTTPError, url: str) -> EngineFailure:
    """A retryable failure for an engine that could not be reached or did not answer in time."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
    return EngineFailure(
        f"{engine} at {url} {kind}: {type(exc).__name__}: {exc}",
        type="EngineUnavailable",
        retryable=True,
        details={"url": url},
    )


def unexpected_status(engine: str, what: str, response: httpx.Response) -> EngineFailure:
    """A failure for an HTTP status the adapter has no specific meaning for."""
    status = response.status_code
    retryable = status in TRANSIENT_STATUSES or status >= 500
    if status == 401:
        kind = "EngineAuthError"
    elif status == 403:
        kind = "EnginePermissionDenied"
    elif retryable:
        kind = "EngineUnavailable"
    else:
        kind = "EngineError"
    return EngineFailure(
        f"{engine}: {what} failed with HTTP {status}: {error_detail(response)}",
        type=kind,
        retryable=retryable,
        details={"status": status, "url": str(response.request.url)},
    )
