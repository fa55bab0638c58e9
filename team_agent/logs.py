"""Log output of the agent process: text or JSON lines, trace ids on every record, secrets masked.

Configured once, by the entry point, on the root logger's handler (filters on the handler see
records from every logger).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from team_agent.redact import RedactingFilter, Redactor
from team_agent.tracing import TraceIdLogFilter

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "trace_id",
    "span_id",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace ids, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "trace_id", ""):
            entry["trace_id"] = record.__dict__["trace_id"]
            entry["span_id"] = record.__dict__["span_id"]
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s %(message)s%(trace_suffix)s")

    def format(self, record: logging.LogRecord) -> str:
        trace_id = getattr(record, "trace_id", "")
        record.trace_suffix = (
            f" trace_id={trace_id} span_id={getattr(record, 'span_id', '')}" if trace_id else ""
        )
        return super().format(record)


def configure_logging(
    level: str, fmt: str, redactor: Redactor, stream: TextIO | None = None
) -> logging.Handler:
    """Route every log record through one handler that adds trace ids and masks secrets."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(TraceIdLogFilter())
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The gRPC/OTel libraries are chatty at debug level.
    for noisy in ("grpc", "opentelemetry", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))
    return handler


class OutageLog:
    """Says that the coordinator cannot be reached: a WARNING (with its address and the error)
    at the first failure, then again at a rate that backs off (after 5 s, 10 s, 20 s, ... at
    most every ``max_interval``) so a long outage does not flood the log; and an INFO line once
    it answers again. Every failure is still logged at DEBUG by the caller."""

    def __init__(
        self,
        logger: logging.Logger,
        address: Callable[[], str],
        *,
        first_interval: float = 5.0,
        max_interval: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._address = address
        self._first_interval = first_interval
        self._max_interval = max_interval
        self._clock = clock
        self._since: float | None = None
        self._failures = 0
        self._next_warning = 0.0
        self._interval = first_interval

    def failed(self, exc: BaseException) -> None:
        now = self._clock()
        if self._since is None:
            self._since, self._failures, self._next_warning = now, 0, now
            self._interval = self._first_interval
        self._failures += 1
        if now < self._next_warning:
            return
        self._logger.warning(
            "cannot reach the coordinator at %s (%d failed call(s) in %.0fs, still retrying): %s",
            self._address(),
            self._failures,
            now - self._since,
            exc,
        )
        self._next_warning = now + self._interval
        self._interval = min(self._interval * 2, self._max_interval)

    def recovered(self) -> None:
        if self._since is None:
            return
        self._logger.info(
            "the coordinator at %s answers again (after %.0fs, %d failed call(s))",
            self._address(),
            self._clock() - self._since,
            self._failures,
        )
        self._since = None
