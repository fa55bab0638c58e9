"""Run, step and attempt spans, built from durable run state and handed to a SpanSink.

Span ids are generated when the run/step/attempt is created and stored with it, so a span that
finishes after a coordinator restart still has the id its children (and the agent's spans) point
to. Records are buffered and emitted off the hot path.
"""

from __future__ import annotations

import asyncio
import logging

from contracts.errors import UnreachableError
from coordinator.store.base import Store
from coordinator.store.records import (
    ATTEMPT_SUCCEEDED,
    RUN_SUCCEEDED,
    STEP_CANCELLED,
    STEP_SKIPPED,
    STEP_SUCCEEDED,
    AttemptRecord,
    RunRecord,
    SpanRecord,
    StepRecord,
    TaskFailure,
)
from coordinator.telemetry.sink import SpanSink

logger = logging.getLogger(__name__)

# Spans kept for a later flush while the store cannot be reached; past that, new batches are dropped.
_KEEP_WHILE_UNREACHABLE = 10_000


class StoreSpanSink:
    """The default sink: straight into the Store's spans table."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def emit(self, records: list[SpanRecord]) -> None:
        await self._store.insert_spans(records)


def _status(ok: bool, error: TaskFailure | None) -> tuple[str, str]:
    if ok:
        return "ok", ""
    if error is None:
        return "error", "error"
    # Engines often start the message with the type already ("GatewayTimeout: ..."): not twice.
    if error.message.startswith(f"{error.type}:"):
        return "error", error.message
    return "error", f"{error.type}: {error.message}"


def _error_attributes(error: TaskFailure | None) -> dict[str, str]:
    if error is None:
        return {}
    return {"error.type": error.type, "error.message": error.message}


def run_span(run: RunRecord) -> SpanRecord:
    status, message = _status(run.status == RUN_SUCCEEDED, run.error)
    return SpanRecord(
        trace_id=run.trace_id,
        span_id=run.span_id,
        parent_span_id=run.parent_span_id,
        name=f"run {run.workflow}",
        start_ns=run.created_ms * 1_000_000,
        end_ns=max(run.finished_ms, run.created_ms) * 1_000_000,
        team=run.team,
        status=status,
        status_message=message,
        attributes={
            "accord.run_id": run.run_id,
            "accord.workflow": run.workflow,
            "accord.workflow_version": run.workflow_version,
            "accord.team": run.team,
            "accord.run_status": run.status,
            **_error_attributes(run.error),
            # A deprecated version pinned, an override used: the trace says so too.
            **({"accord.warnings": "; ".join(run.warnings)} if run.warnings else {}),
        },
        run_id=run.run_id,
    )


def step_span(run: RunRecord, step: StepRecord, parent_span_id: str) -> SpanRecord:
    status, message = _status(step.status in (STEP_SUCCEEDED, STEP_SKIPPED), step.error)
    if step.status == STEP_CANCELLED and step.error is None:
        # Ended because its run did (failed or cancelled elsewhere): no error of its own.
        status, message = "unset", ""
    # A step the engine never handed to an agent nor fanned out (it gets started_ms = finished_ms).
    started = step.attempt_count > 0 or step.fan_out >= 0
    start = step.started_ms or step.finished_ms
    return SpanRecord(
        trace_id=run.trace_id,
        span_id=step.span_id,
        parent_span_id=parent_span_id,
        name=f"step {step.step_id}",
        start_ns=start * 1_000_000,
        end_ns=max(step.finished_ms, start) * 1_000_000,
        team=step.team,
        status=status,
        status_message=message,
        attributes={
            "accord.run_id": run.run_id,
            "accord.step_id": step.step_id,
            "accord.contract": step.contract,
            "accord.contract_version": step.contract_version,
            "accord.team": step.team,
            "accord.step_status": step.status,
            "accord.step_started": started,
            # Served through a migration adapter: the call was to a retired major.
            **(
                {
                    "accord.adapted": f"{step.contract}@{run.adapted[step.contract]} via {step.contract_version}"
                }
                if step.contract in run.adapted
                else {}
            ),
            **({"accord.waiting_for": step.waiting_for} if step.waiting_for else {}),
            **({"accord.reused_from": step.reused_from} if step.reused_from else {}),
            **_error_attributes(step.error),
        },
        run_id=run.run_id,
    )


def attempt_span(run: RunRecord, step: StepRecord, attempt: AttemptRecord) -> SpanRecord:
    """The attempt from its scheduling to its end: the time it waited in the queue for an agent
    is part of it (``accord.queue_wait_ms``; the whole span when no agent ever took it)."""
    status, message = _status(attempt.status == ATTEMPT_SUCCEEDED, attempt.error)
    start = attempt.scheduled_ms or attempt.started_ms
    end = max(attempt.finished_ms, attempt.started_ms, start)
    picked_up = attempt.started_ms or end  # never taken: it waited until it ended
    return SpanRecord(
        trace_id=run.trace_id,
        span_id=attempt.span_id,
        parent_span_id=step.span_id,
        name=f"attempt {attempt.number} {step.contract}@{step.contract_version}",
        start_ns=start * 1_000_000,
        end_ns=end * 1_000_000,
        team=step.team,
        kind="client",
        status=status,
        status_message=message,
        attributes={
            "accord.run_id": run.run_id,
            "accord.step_id": step.step_id,
            "accord.contract": step.contract,
            "accord.contract_version": step.contract_version,
            "accord.team": step.team,
            "accord.attempt": attempt.number,
            "accord.agent_id": attempt.agent_id,
            "accord.attempt_status": attempt.status,
            "accord.queue_wait_ms": max(picked_up - start, 0),
            **({"accord.started_unix_ms": attempt.started_ms} if attempt.started_ms else {}),
            **_error_attributes(attempt.error),
        },
        run_id=run.run_id,
    )


class SpanBuffer:
    """Collects finished spans and emits them in batches, off the RPC hot path."""

    def __init__(self, sink: SpanSink, *, interval_s: float = 0.2) -> None:
        self._sink = sink
        self._interval_s = interval_s
        self._pending: list[SpanRecord] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._store_away = False  # the last write found the store unreachable

    def add(self, records: list[SpanRecord]) -> None:
        self._pending.extend(records)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="span-buffer")

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self._sink.emit(batch)
            self._store_away = False
        except asyncio.CancelledError:
            self._pending[:0] = batch  # stopped while writing: ``stop`` tries once more
            raise
        except UnreachableError as exc:  # the store is away (it logs that once): keep them, bounded
            self._store_away = True
            if len(self._pending) + len(batch) <= _KEEP_WHILE_UNREACHABLE:
                self._pending[:0] = batch
                self._wake.set()
            else:
                logger.warning("%d spans dropped: %s", len(batch), exc)
        except Exception:
            logger.exception("span sink failed; %d spans dropped", len(batch))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._store_away and self._pending:
            # Waiting for the store would hold the shutdown up for as long as a call may wait.
            logger.warning("%d spans not written: the store cannot be reached", len(self._pending))
            return
        await self.flush()
