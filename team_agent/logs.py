"""Log output of the agent process: text or JSON lines, trace ids on every record, secrets masked.

Configured once, by the entry point, on the root logger's handler (filters on the handler see
records from every logger).
"""

from __future__ import annotations

import json
import logging
import sys
import time
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
