"""The coordinator's OTLP receiver on a real gRPC server behind the real auth interceptor, over the
real SQLite store: team from the token, run attachment, refusal, scrubbing, and GetRunTrace."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from contracts.model import Contract
from coordinator.api.auth import AuthInterceptor, current_principal
from coordinator.api.convert import span_from_pb, span_to_pb
from coordinator.principal import Principal
from coordinator.store import codec
from coordinator.store.records import (
    AuditRecord,
    Changes,
    ContractRecord,
    RunRecord,
    SpanRecord,
    StepRecord,
    WorkflowRecord,
)
from coordinator.store.sqlite import SqliteStore
from coordinator.telemetry import otlp
from coordinator.telemetry.otlp import to_resource_spans
from coordinator.telemetry.propagation import TraceParent
from coordinator.telemetry.query import scoped_run_spans
from coordinator.telemetry.receiver import add_otlp_receiver
from coordinator.telemetry.scrub import Scrubber
from coordinator.telemetry.sink import TelemetrySink
from coordinator.tokens import TokenAuthority, hash_token

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RUN_SPAN = "a100000000000000"
STEP_SPAN = "b100000000000000"
ATTEMPT_SPAN = "c100000000000000"
CARD_TOKEN = "tok_live_4242abcd"
CARD_NUMBER = "4111-1111-1111-1111"
TOKENS = {"payments": "pay-token", "crm": "crm-token", "shipping": "ship-token"}


@dataclass
class Coordinator:
    store: SqliteStore
    target: str
    db: Path


def _audit() -> AuditRecord:
    return AuditRecord(at_ms=1, actor="admin", action="test", object="x", owner_team="")


async def _seed(store: SqliteStore) -> None:
    charge = Contract(
        name="payments/charge-card",
        version="1.2.0",
        input_schema={"type": "object"},
        output_schema={"type": "object"},
        sensitive=("input.card_token",),
    )
    await store.add_contract(ContractRecord(charge, 1, "payments"), _audit())
    await store.add_workflow(
        WorkflowRecord(
            name="shipping/order-to-cash",
            team="shipping",
            version=1,
            description="",
            source_text="",
            source_name="",
            definition_json=json.dumps({"sensitive_inputs": ["input.card.number"]}),
            registered_ms=1,
            registered_by="shipping",
            contracts=("payments/charge-card",),
        ),
        _audit(),
    )
    run = RunRecord(
        run_id="r-1",
        workflow="shipping/order-to-cash",
        workflow_version=1,
        team="shipping",
        status="running",
        input={"order_id": "o-1", "card": {"number": CARD_NUMBER}},
        created_ms=1,
        trace_id=TRACE,
        span_id=RUN_SPAN,
        involved_teams=("payments", "shipping"),
    )
    step = StepRecord(
        run_id="r-1",
        step_id="charge",
        spec_id="charge",
        contract="payments/charge-card",
        contract_version="1.2.0",
        team="payments",
        status="running",
        idempotency_key="r-1/charge",
        span_id=STEP_SPAN,
        input={"order_id": "o-1", "card_token": CARD_TOKEN},
    )
    await store.apply(Changes(runs=[run], steps=[step]))
    # A coordinator span of the run already stored (lets spans without accord.run_id attach).
    await store.insert_spans(
        [
            SpanRecord(
                TRACE,
                STEP_SPAN,
                RUN_SPAN,
                "step charge",
                10,
                20,
                team="payments",
                attributes={"accord.contract": "payments/charge-card", "accord.contract_version": "1.2.0"},
                run_id="r-1",
            )
        ]
    )


@pytest.fixture
async def coordinator(tmp_path: Path) -> AsyncIterator[Coordinator]:
    db = tmp_path / "accord.db"
    store = SqliteStore(db)
    await store.open()
    await _seed(store)
    authority = TokenAuthority()
    for team, token in TOKENS.items():
        authority.set_team_token(team, hash_token(token))
    authority.set_admin(hash_token("admin-token"))
    server = grpc.aio.server(interceptors=[AuthInterceptor(authority)])
    add_otlp_receiver(server, store, principal=current_principal)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield Coordinator(store, f"127.0.0.1:{port}", db)
    await server.stop(None)
    await store.close()


def _agent_span(span_id: str, name: str, **kw: object) -> SpanRecord:
    values: dict[str, object] = {
        "trace_id": TRACE,
        "span_id": span_id,
        "parent_span_id": ATTEMPT_SPAN,
        "name": name,
        "start_ns": 12,
        "end_ns": 18,
        "service": "accord-agent",
        "team": "warehouse",  # a resource attribute claiming another team: must not be believed
    }
    values.update(kw)
    return SpanRecord(**values)  # type: ignore[arg-type]


async def _export(
    target: str, token: str, spans: list[SpanRecord]
) -> trace_service_pb2.ExportTraceServiceResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        request = trace_service_pb2.ExportTraceServiceRequest(resource_spans=to_resource_spans(spans))
        response: trace_service_pb2.ExportTraceServiceResponse = await stub.Export(
            request, metadata=(("authorization", f"Bearer {token}"),)
        )
        return response


def _raw_spans_table(db: Path) -> str:
    """Every stored span row as it is, its ids (stored as bytes) shown in hex."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT * FROM spans").fetchall()
    return repr([[v.hex() if isinstance(v, bytes) else v for v in row] for row in rows])


async def test_spans_are_stamped_with_the_authenticated_team_and_attached_to_the_run(
    coordinator: Coordinator,
) -> None:
    response = await _export(
        coordinator.target,
        TOKENS["payments"],
        [
            _agent_span("d100000000000000", "agent.receive", attributes={"accord.run_id": "r-1"}),
            _agent_span("d200000000000000", "engine.http", attributes={"http.url": "http://pay/charge"}),
        ],
    )
    assert not response.HasField("partial_success")
    stored = {s.span_id: s for s in await coordinator.store.spans_for_trace(TRACE)}
    assert stored["d100000000000000"].team == "payments"
    assert stored["d200000000000000"].team == "payments"
    assert stored["d200000000000000"].run_id == "r-1"


async def test_run_is_found_from_the_coordinators_spans_without_the_attribute(
    coordinator: Coordinator,
) -> None:
    await _export(coordinator.target, TOKENS["payments"], [_agent_span("d300000000000000", "engine.shell")])
    stored = {s.span_id: s for s in await coordinator.store.spans_for_trace(TRACE)}
    assert stored["d300000000000000"].run_id == "r-1"


async def test_sensitive_values_never_reach_the_spans_table(coordinator: Coordinator) -> None:
    await _export(
        coordinator.target,
        TOKENS["payments"],
        [
            _agent_span(
                "d400000000000000",
                f"charge {CARD_TOKEN}",
                status="error",
                status_message=f"card {CARD_TOKEN} declined",
                attributes={
                    "accord.run_id": "r-1",
                    "http.request.body": json.dumps({"card_token": CARD_TOKEN}),
                    "echo": f"number={CARD_NUMBER}",  # a workflow input that flows into a sensitive field
                    "db.password": "hunter2",
                },
                events=[{"name": "log", "time_ns": 15, "attributes": {"line": CARD_TOKEN}}],
            )
        ],
    )
    table = _raw_spans_table(coordinator.db)
    assert "d400000000000000" in table
    for secret in (CARD_TOKEN, CARD_NUMBER, "hunter2"):
        assert secret not in table


async def test_spans_of_an_unsampled_run_are_dropped_not_refused(coordinator: Coordinator) -> None:
    """An agent that does not follow the task's unsampled flag must not half-sample the run."""
    unsampled_trace = "5" * 32
    run = RunRecord(
        run_id="r-2",
        workflow="shipping/order-to-cash",
        workflow_version=1,
        team="shipping",
        status="running",
        input={},
        created_ms=1,
        trace_id=unsampled_trace,
        span_id=RUN_SPAN,
        involved_teams=("payments", "shipping"),
        sampled=False,
    )
    await coordinator.store.apply(Changes(runs=[run]))
    response = await _export(
        coordinator.target,
        TOKENS["payments"],
        [
            _agent_span(
                "d600000000000000",
                "agent.receive",
                trace_id=unsampled_trace,
                attributes={"accord.run_id": "r-2"},
            ),
            _agent_span("d700000000000000", "agent.receive", attributes={"accord.run_id": "r-1"}),
        ],
    )
    assert response.partial_success.rejected_spans == 0
    assert await coordinator.store.spans_for_trace(unsampled_trace) == []
    assert "d700000000000000" in {s.span_id for s in await coordinator.store.spans_for_trace(TRACE)}


async def test_a_team_outside_the_run_is_refused(coordinator: Coordinator) -> None:
    response = await _export(
        coordinator.target,
        TOKENS["crm"],
        [_agent_span("d500000000000000", "injected", attributes={"accord.run_id": "r-1"})],
    )
    assert response.partial_success.rejected_spans == 1
    assert "takes no part" in response.partial_success.error_message
    assert "d500000000000000" not in {s.span_id for s in await coordinator.store.spans_for_trace(TRACE)}


async def test_unauthenticated_exports_are_refused(coordinator: Coordinator) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _export(coordinator.target, "wrong", [_agent_span("d600000000000000", "x")])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_sdk_exporter_agents_use_is_accepted(coordinator: Coordinator) -> None:
    exporter = OTLPSpanExporter(
        endpoint=coordinator.target,
        insecure=True,
        headers=(("authorization", f"Bearer {TOKENS['payments']}"),),
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": "accord-agent", "accord.team": "crm"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parent = TraceParent(TRACE, ATTEMPT_SPAN).span_context()

    def record() -> int:
        from opentelemetry import trace

        tracer = provider.get_tracer("test")
        context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
        with tracer.start_as_current_span("agent.validate_input", context=context) as span:
            span.set_attribute("accord.run_id", "r-1")
            span_id: int = span.get_span_context().span_id
        provider.shutdown()
        return span_id

    span_id = await asyncio.to_thread(record)
    stored = {s.span_id: s for s in await coordinator.store.spans_for_trace(TRACE)}
    received = stored[f"{span_id:016x}"]
    assert (received.team, received.service, received.parent_span_id) == (
        "payments",
        "accord-agent",
        ATTEMPT_SPAN,
    )


async def test_get_run_trace_scopes_by_viewer(coordinator: Coordinator) -> None:
    await _export(
        coordinator.target,
        TOKENS["payments"],
        [
            _agent_span(
                "d700000000000000",
                "engine.http",
                # as agents write it; the attempt span (the parent) is stored only when it ends
                attributes={
                    "accord.run_id": "r-1",
                    "accord.contract": "payments/charge-card@1.2.0",
                    "http.url": "u",
                },
            )
        ],
    )
    run = await coordinator.store.get_run("r-1")
    assert run is not None
    own = await scoped_run_spans(coordinator.store, run, Principal(team="payments"))
    assert {s.trace_id for s in own} == {TRACE}
    engine = next(s for s in own if s.span_id == "d700000000000000")
    assert engine.name == "engine.http" and engine.attributes["http.url"] == "u" and not engine.redacted
    # what GetRunTrace sends and a client reads back
    assert [span_from_pb(span_to_pb(s)) for s in own] == [replace(s, owner=s.team) for s in own]

    other = await scoped_run_spans(coordinator.store, run, Principal(team="shipping"))
    boxed = span_to_pb(next(s for s in other if s.span_id == "d700000000000000"))
    assert boxed.redacted and boxed.name == "payments/charge-card@1.2.0" and boxed.team == "payments"
    assert "http.url" not in boxed.attributes_json

    admin = await scoped_run_spans(coordinator.store, run, Principal(admin=True))
    assert not any(s.redacted for s in admin)


async def test_the_coordinators_own_spans_are_scrubbed_too(coordinator: Coordinator) -> None:
    # An engine's error message travels into the coordinator's attempt span.
    attempt = SpanRecord(
        TRACE,
        ATTEMPT_SPAN,
        STEP_SPAN,
        "attempt 1 payments/charge-card@1.2.0",
        11,
        19,
        team="payments",
        status="error",
        status_message=f"EngineError: card {CARD_TOKEN} rejected",
        attributes={"error.message": f"card {CARD_TOKEN} rejected", "accord.attempt": 1},
        run_id="r-1",
    )
    await TelemetrySink(coordinator.store).emit([attempt])
    table = _raw_spans_table(coordinator.db)
    assert ATTEMPT_SPAN in table and "EngineError: card [redacted] rejected" in table
    assert CARD_TOKEN not in table


async def test_a_large_export_lets_the_event_loop_serve_others_while_it_is_worked_through(
    coordinator: Coordinator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export of a thousand spans is decoded, scrubbed and encoded a few dozen spans per turn
    of the event loop (the server's, here the test's): other work runs in the middle of each
    stage, every span is stored, and none of them carries the sensitive value."""
    done = {"decoded": 0, "scrubbed": 0, "encoded": 0}

    def counting(stage: str, function: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            done[stage] += 1
            return function(*args, **kwargs)

        return counted

    monkeypatch.setattr(otlp, "from_key_values", counting("decoded", otlp.from_key_values))
    monkeypatch.setattr(Scrubber, "record", counting("scrubbed", Scrubber.record))
    monkeypatch.setattr(codec, "span_to_row", counting("encoded", codec.span_to_row))
    spans = [
        _agent_span(
            f"e{i:015x}",
            "agent.receive",
            attributes={"accord.run_id": "r-1", "echo": f"card {CARD_TOKEN} #{i}"},
        )
        for i in range(1000)
    ]
    seen: list[dict[str, int]] = []
    exporting = True

    async def other_work() -> None:
        while exporting:
            seen.append(dict(done))
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_work())
    try:
        response = await _export(coordinator.target, TOKENS["payments"], spans)
    finally:
        exporting = False
        await ticker
    assert not response.HasField("partial_success")
    for stage in done:  # the other work ran while each stage was half way through
        assert any(0 < counts[stage] < 1000 for counts in seen), (stage, done)
    stored = {s.span_id for s in await coordinator.store.spans_for_trace(TRACE)}
    assert {s.span_id for s in spans} <= stored
    assert CARD_TOKEN not in _raw_spans_table(coordinator.db)
