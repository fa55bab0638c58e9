"""The coordinator as an OTLP trace collector: ``TraceService/Export`` on its own gRPC port, so
agents need no extra infrastructure to ship their spans.

Every span received is stamped with the AUTHENTICATED caller's team (never a resource attribute),
attached to its run (the ``accord.run_id`` attribute, or the run the coordinator's own spans of
the same trace belong to), and refused when it belongs to a run the caller's team takes no part
in. Spans of a run whose trace is not sampled are dropped (an agent that does not follow the
task's traceparent flags must not half-sample the run). The span sink (``sink.TelemetrySink``)
then scrubs the run's sensitive values, stores and forwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from coordinator.principal import Principal
from coordinator.store.codec import SPANS_PER_TURN
from coordinator.store.records import RunRecord, SpanRecord
from coordinator.telemetry.otlp import iter_span_records
from coordinator.telemetry.sink import COORDINATOR_SERVICE, SpanSink, SpanStore, TelemetrySink

logger = logging.getLogger(__name__)

ADMIN_TEAM = "admin"  # what spans sent with the admin token are stamped with


class ReceiverStore(SpanStore, Protocol):
    async def spans_for_trace(self, trace_id: str) -> list[SpanRecord]: ...


class OtlpTraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """``opentelemetry.proto.collector.trace.v1.TraceService`` for agents."""

    def __init__(
        self,
        store: ReceiverStore,
        sink: SpanSink,
        *,
        principal: Callable[[], Principal],
        trace_cache_size: int = 4096,
        known_run: Callable[[str], RunRecord | None] | None = None,
    ) -> None:
        self._store = store
        # The run as the engine holds it (``Engine.known_run``), before the store is read.
        self._known_run = known_run
        self._sink = sink
        self._principal = principal
        # trace id -> the run it belongs to. A run's id, team, involved teams, trace id and
        # sampling never change, so once a trace is attached to a run the run is not read again
        # (it was one store read per export: 7-10 % of the coordinator's CPU under load).
        self._run_of_trace: OrderedDict[str, RunRecord] = OrderedDict()
        self._trace_cache_size = trace_cache_size

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        principal = self._principal()
        team = ADMIN_TEAM if principal.admin else principal.team
        # Decoded a few spans per turn of the event loop: an export of thousands of spans (an
        # agent's batch, up to the message size limit) never holds the loop for long.
        records: list[SpanRecord] = []
        rejected = 0
        for count, record in enumerate(iter_span_records(request.resource_spans, team=team), 1):
            if record is None:
                rejected += 1
            else:
                records.append(record)
            if count % SPANS_PER_TURN == 0:
                await asyncio.sleep(0)
        # The coordinator's own spans never come this way: one that says so is its sender's
        # (the sink scrubs by that, docs/architecture.md, "Traces").
        records = [
            replace(r, service=f"{r.service} (as sent by team {team})")
            if r.service == COORDINATOR_SERVICE
            else r
            for r in records
        ]
        problems: list[str] = []
        if rejected:
            problems.append(f"{rejected} spans with invalid trace or span ids")

        accepted: list[SpanRecord] = []
        for trace_id, trace_records in _by_trace(records).items():
            run = await self._run_for(trace_id, trace_records)
            if run is not None and not principal.admin and team not in (run.team, *run.involved_teams):
                rejected += len(trace_records)
                problems.append(
                    f"trace {trace_id} belongs to run {run.run_id}, which team {team} takes no part in"
                )
                continue
            if run is not None and not run.sampled:
                continue  # not rejected: the agent did its part, the run is just not traced
            run_id = run.run_id if run is not None else ""
            accepted.extend(r if r.run_id == run_id else replace(r, run_id=run_id) for r in trace_records)

        if accepted:
            await self._sink.emit(accepted)
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            logger.warning(
                "OTLP export from team %s: rejected %d spans: %s", team, rejected, "; ".join(problems)
            )
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = "; ".join(problems)
        return response

    async def _run_for(self, trace_id: str, records: list[SpanRecord]) -> RunRecord | None:
        """The run a trace belongs to, or None when it is no run's trace."""
        claimed = next((r.run_id for r in records if r.run_id), "")
        cached = self._run_of_trace.get(trace_id)
        if cached is not None and (not claimed or claimed == cached.run_id):
            self._run_of_trace.move_to_end(trace_id)
            return cached
        run_id = claimed
        if not run_id:
            for stored in await self._store.spans_for_trace(trace_id):
                if stored.run_id and stored.service == COORDINATOR_SERVICE:
                    run_id = stored.run_id
                    break
        if not run_id:
            return None
        run = self._known_run(run_id) if self._known_run is not None else None
        if run is None:
            # Its payloads are not needed here, and are most of the row (codec, "Payloads").
            run = await self._store.get_run(run_id, payloads=False)
        if run is None or run.trace_id != trace_id:
            # A run id that does not name a run of this trace is not believed.
            return None
        self._remember(trace_id, run)
        return run

    def _remember(self, trace_id: str, run: RunRecord) -> None:
        # Only the immutable fields are used; drop the payloads so the cache stays small.
        self._run_of_trace[trace_id] = replace(run, input=None, output=None, error=None)
        self._run_of_trace.move_to_end(trace_id)
        while len(self._run_of_trace) > self._trace_cache_size:
            self._run_of_trace.popitem(last=False)


def _by_trace(records: list[SpanRecord]) -> dict[str, list[SpanRecord]]:
    groups: dict[str, list[SpanRecord]] = {}
    for record in records:
        groups.setdefault(record.trace_id, []).append(record)
    return groups


def add_otlp_receiver(
    server: grpc.aio.Server,
    store: ReceiverStore,
    *,
    principal: Callable[[], Principal],
    sink: SpanSink | None = None,
    known_run: Callable[[str], RunRecord | None] | None = None,
) -> OtlpTraceReceiver:
    """Serve OTLP ``TraceService/Export`` on ``server`` (the coordinator's gRPC server, behind its
    auth interceptor). ``principal`` answers who the caller of the export being served is (the
    API's ``current_principal``, which the interceptor sets). Received spans go to ``sink`` (pass
    the engine's sink so they are forwarded too); without one, to a ``TelemetrySink`` over
    ``store`` (scrubbed and stored). ``known_run``: a run as the engine holds it, if it does
    (read from the store otherwise)."""
    receiver = OtlpTraceReceiver(
        store,
        sink if sink is not None else TelemetrySink(store),
        principal=principal,
        known_run=known_run,
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)  # type: ignore[no-untyped-call]
    return receiver
