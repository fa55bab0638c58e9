"""Log records that carry the trace: ``trace_id`` and ``span_id`` from the current OTel context.

The process's entry point installs them (libraries never configure logging)::

    handler = logging.StreamHandler()
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter())   # or TextFormatter() for people

or simply ``install_trace_logging(json_lines=True)``. The coordinator makes a run's stored span
current with ``propagation.attached_span_context`` while it works on the run, so its records carry
the run's trace id even though it does not use SDK spans; agents get it from their SDK spans.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from opentelemetry import trace

# Attributes every LogRecord has; anything else on a record is a structured field (``extra=``).
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "trace_id", "span_id", "trace_sampled", "taskName"}
)


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id``/``span_id`` (hex, "" when no span is current) and ``trace_sampled`` to
    every record. Never filters a record out. A record that already carries ids (a caller passed
    ``extra={"trace_id": ...}``) keeps them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "trace_id", ""):
            record.span_id = getattr(record, "span_id", "")
            record.trace_sampled = getattr(record, "trace_sampled", False)
            return True
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
            record.span_id = f"{context.span_id:016x}"
            record.trace_sampled = context.trace_flags.sampled
        else:
            record.trace_id = ""
            record.span_id = ""
            record.trace_sampled = False
        return True


class ClientGoneFilter(logging.Filter):
    """For the logger ``grpc._cython.cygrpc``: gRPC's core logs an answer it could not send
    because its client had gone that very moment (a stream cancelled, a connection closed as the
    status went out: ``ExecuteBatchError``) as an error with a traceback, though nothing failed
    here. Such a record becomes one line at INFO, without the traceback; others pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None or type(error).__name__ != "ExecuteBatchError":
            return True
        text = record.getMessage().split(" raised in core by servicer method ")[-1]
        record.msg, record.args = "the client of %s went away before its answer was sent", (text.strip("[]"),)
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info, record.exc_text = None, None
        return logging.getLogger().isEnabledFor(logging.INFO)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id, span_id, any structured
    fields passed with ``extra=``, and the exception text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "trace_id": getattr(record, "trace_id", ""),
            "span_id": getattr(record, "span_id", ""),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    """Human lines with the ids at the end: ``... message trace_id=... span_id=...``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        trace_id = getattr(record, "trace_id", "")
        if trace_id:
            text += f" trace_id={trace_id}"
        span_id = getattr(record, "span_id", "")
        if span_id:
            text += f" span_id={span_id}"
        return text


def _iso_time(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def install_trace_logging(
    logger: logging.Logger | None = None,
    *,
    level: int = logging.INFO,
    json_lines: bool = True,
    handler: logging.Handler | None = None,
) -> logging.Handler:
    """Attach one handler with the trace filter and a formatter to ``logger`` (root by default).
    For process entry points only. Returns the handler (to remove it again in tests)."""
    target = logger if logger is not None else logging.getLogger()
    handler = handler if handler is not None else logging.StreamHandler()
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    target.addHandler(handler)
    target.setLevel(level)
    return handler
