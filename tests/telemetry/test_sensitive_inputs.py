"""A workflow input that flows into a callee's sensitive field is sensitive too, in every span
and for every viewer, even where the callee never ran: the registry keeps the composition
checker's ``sensitive_inputs`` with the workflow (its definition), which the span sink and
GetRunTrace scrub with.

Here the card goes to the warehouse's check first (a field it does not mark sensitive), which
fails quoting it; payments' charge, whose ``card_token`` is sensitive, never starts, so no step
payload says the value is sensitive: only the workflow does.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.client import AsyncClient
from coordinator.config import CoordinatorConfig
from coordinator.principal import Principal
from coordinator.server import Coordinator
from coordinator.store.records import RUN_FAILED, AgentRecord, Binding, SpanRecord, TaskFailure
from coordinator.telemetry.otlp import to_resource_spans
from tests.support.scenario import contract
from tests.support.wait import wait_until

CARD = "4111-2222-3333-4444"
ADMIN = Principal(admin=True)
WAREHOUSE = Principal(team="warehouse")
CHECK = contract(
    "warehouse/check",
    input_props="{order_id: {type: string}, card: {type: string}}",
    output_props="{order_id: {type: string}}",
    output_required="[order_id]",
)
CHARGE = contract(
    "payments/charge",
    input_props="{order_id: {type: string}, card_token: {type: string}}",
    extra="sensitive: [input.card_token]\n",
)
WORKFLOW = """\
workflow: shipping/pay
input:
  type: object
  required: [order_id, card]
  properties: {order_id: {type: string}, card: {type: string}}
steps:
  check:
    contract: warehouse/check@^1
    input: {order_id: "${input.order_id}", card: "${input.card}"}
  pay:
    contract: payments/charge@^1
    input: {order_id: "${steps.check.output.order_id}", card_token: "${input.card}"}
output: {ref: "${steps.pay.output.ref}"}
"""


@dataclass
class Setup:
    coordinator: Coordinator
    tokens: dict[str, str]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    coordinator = Coordinator(CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0"))
    await coordinator.start()
    try:
        assert coordinator.admin_token_created is not None
        tokens = {"admin": coordinator.admin_token_created}
        for team in ("warehouse", "payments", "shipping"):
            _, tokens[team] = await coordinator.teams.create(ADMIN, team)
        registry = coordinator.registry
        await registry.register_contract(WAREHOUSE, CHECK, "check.yaml", False)
        await registry.register_contract(Principal(team="payments"), CHARGE, "charge.yaml", False)
        await registry.register_workflow(Principal(team="shipping"), WORKFLOW, "pay.yaml", False)
        await coordinator.engine.register_agent(
            WAREHOUSE,
            AgentRecord("warehouse-1", "warehouse", (Binding("warehouse/check", 1),), 4),
            *coordinator.engine.team_defaults("warehouse"),
        )
        yield Setup(coordinator, tokens)
    finally:
        await coordinator.stop(grace=0)


async def _export(address: str, token: str, spans: list[SpanRecord]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        await stub.Export(
            trace_service_pb2.ExportTraceServiceRequest(resource_spans=to_resource_spans(spans)),
            metadata=(("authorization", f"Bearer {token}"),),
        )


async def test_a_workflow_input_flowing_into_a_sensitive_field_is_redacted_everywhere(setup: Setup) -> None:
    coordinator, tokens = setup.coordinator, setup.tokens
    engine, store = coordinator.engine, coordinator.store
    assert store is not None
    registered = await coordinator.registry.newest_workflow("shipping/pay")
    assert registered is not None
    assert json.loads(registered.definition_json)["sensitive_inputs"] == ["input.card"]

    view, _ = await engine.start_run(
        Principal(team="shipping"), "shipping/pay", {"order_id": "o-1", "card": CARD}
    )
    run = view.run
    assignment = await engine.poll(WAREHOUSE, "warehouse-1", [], wait_s=2)
    assert assignment is not None
    # The warehouse's agent exports a span quoting the card, then fails quoting it.
    await _export(
        coordinator.address,
        tokens["warehouse"],
        [
            SpanRecord(
                run.trace_id,
                "e100000000000001",
                assignment.attempt.span_id,
                "agent.receive",
                time.time_ns(),
                time.time_ns() + 1000,
                service="accord-agent",
                attributes={"accord.run_id": run.run_id, "stock.note": f"checked card {CARD}"},
            ),
            # Posing as the coordinator (whose own spans of a success are stored as they are):
            # scrubbed all the same, and stored as the agent's.
            SpanRecord(
                run.trace_id,
                "e100000000000002",
                assignment.attempt.span_id,
                "agent.posing",
                time.time_ns(),
                time.time_ns() + 1000,
                service="accord-coordinator",
                status="ok",
                attributes={"accord.run_id": run.run_id, "note": f"card {CARD}", "api_token": "t0p-s3cr3t"},
            ),
        ],
    )
    failure = TaskFailure("CardBlocked", f"card {CARD} is on the block list", retryable=False)
    assert await engine.fail(WAREHOUSE, "warehouse-1", assignment.attempt.attempt_id, failure, "")

    # Every span of the run is stored (the engine's are buffered for a moment).
    async def all_stored() -> bool:
        names = {s.name for s in await store.spans_for_trace(run.trace_id)}
        return {"run shipping/pay", "step check", "agent.receive", "agent.posing"} <= names

    await wait_until(all_stored, "the run's spans were not all stored")
    stored = await store.spans_for_trace(run.trace_id)
    assert {"run shipping/pay", "step check", "agent.receive"} <= {s.name for s in stored}
    assert any(s.name.startswith("attempt ") for s in stored)
    with sqlite3.connect(coordinator.config.database) as db:
        table = repr(db.execute("SELECT * FROM spans").fetchall())
    assert CARD not in table and "t0p-s3cr3t" not in table
    assert "[redacted]" in table  # the messages stay, minus the card
    posing = next(s for s in stored if s.name == "agent.posing")
    assert posing.service == "accord-coordinator (as sent by team warehouse)", posing

    for viewer in ("admin", "shipping", "warehouse", "payments"):
        async with AsyncClient(coordinator.address, tokens[viewer]) as client:
            trace = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run.run_id))
        assert len(trace.spans) >= 4, viewer  # (another team's spans as contract-level boxes)
        assert CARD not in repr(list(trace.spans)), viewer
    stored_run = await store.get_run(run.run_id)
    assert stored_run is not None and stored_run.status == RUN_FAILED
