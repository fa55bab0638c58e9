"""Log records carry trace_id and span_id from the current OTel context."""

from __future__ import annotations

import io
import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from coordinator.telemetry.logging import TraceContextFilter, install_trace_logging
from coordinator.telemetry.propagation import attached_span_context

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def _logger(json_lines: bool = True) -> tuple[logging.Logger, io.StringIO, logging.Handler]:
    stream = io.StringIO()
    logger = logging.getLogger(f"test.trace.{json_lines}")
    logger.propagate = False
    handler = install_trace_logging(logger, json_lines=json_lines, handler=logging.StreamHandler(stream))
    return logger, stream, handler


def test_json_lines_carry_the_attached_run_span_and_extra_fields() -> None:
    logger, stream, handler = _logger()
    try:
        with attached_span_context(TRACE, SPAN):
            logger.info("step %s scheduled", "charge", extra={"run_id": "r-1"})
        logger.warning("outside")
        first, second = (json.loads(line) for line in stream.getvalue().splitlines())
        assert first["message"] == "step charge scheduled"
        assert (first["trace_id"], first["span_id"], first["run_id"]) == (TRACE, SPAN, "r-1")
        assert first["level"] == "info" and first["logger"] == "test.trace.True"
        assert (second["trace_id"], second["span_id"]) == ("", "")
    finally:
        logger.removeHandler(handler)


def test_sdk_spans_are_picked_up_and_exceptions_kept() -> None:
    logger, stream, handler = _logger()
    tracer = TracerProvider().get_tracer("test")
    try:
        with tracer.start_as_current_span("agent.receive") as span:
            try:
                raise ValueError("boom")
            except ValueError:
                logger.exception("failed")
        entry = json.loads(stream.getvalue())
        assert entry["trace_id"] == f"{span.get_span_context().trace_id:032x}"
        assert "ValueError: boom" in entry["exception"]
    finally:
        logger.removeHandler(handler)


def test_text_format_appends_ids_and_filter_never_drops() -> None:
    logger, stream, handler = _logger(json_lines=False)
    try:
        with attached_span_context(TRACE, SPAN):
            logger.info("hello")
        assert stream.getvalue().rstrip().endswith(f"hello trace_id={TRACE} span_id={SPAN}")
    finally:
        logger.removeHandler(handler)
    record = logging.LogRecord("x", logging.INFO, "", 0, "m", None, None)
    record.trace_id = "given"
    assert TraceContextFilter().filter(record) and record.trace_id == "given"  # type: ignore[attr-defined]


def test_a_client_gone_as_grpc_answered_is_one_info_line_not_a_traceback() -> None:
    """gRPC's core logs an answer it could not send to a client that had just left with a
    traceback; the coordinator's logs say it in one line."""
    from grpc._cython import cygrpc

    from coordinator.telemetry.logging import ClientGoneFilter

    logger, stream, handler = _logger(json_lines=False)
    gone = ClientGoneFilter()
    logger.addFilter(gone)
    previous = logging.getLogger().level
    logging.getLogger().setLevel(logging.INFO)
    try:
        try:
            raise cygrpc.ExecuteBatchError('Failed "execute_batch": (SendStatusFromServerOperation,)')
        except cygrpc.ExecuteBatchError:
            logger.exception(
                "ExecuteBatchError raised in core by servicer method [%s]",
                "/accord.coordinator.v1.CoordinatorService/WatchRun",
            )
        try:
            raise ValueError("ours")
        except ValueError:
            logger.exception("a real failure")
    finally:
        logging.getLogger().setLevel(previous)
        logger.removeFilter(gone)
        logger.removeHandler(handler)
    first, *rest = stream.getvalue().splitlines()
    assert "INFO" in first and "Traceback" not in first
    assert first.endswith(
        "the client of /accord.coordinator.v1.CoordinatorService/WatchRun went away before its answer was sent"
    ), first
    assert "ERROR" in rest[0] and "a real failure" in rest[0] and "Traceback" in "\n".join(rest)
