"""A contract's ``emits:``: payments' capture contract publishes payments/payment-captured each
time a step of it succeeds, and shipping's workflow triggered by that event runs, without
payments changing anything or knowing who listens. The mapping is type-checked at registration
(a bad one is refused naming the field); a new version of an event contract that would break a
workflow triggered by it is refused naming that workflow.
"""

from __future__ import annotations

import json

import httpx
import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import FailedPreconditionError, InvalidArgumentError
from tests.support.agent import Call, TestAgent
from tests.support.coordinator import CoordinatorProcess
from tests.support.events import NATS_URL, handled, nats_stream
from tests.support.scenario import contract, start_run, wait_run

CAPTURED = """
contract: payments/payment-captured
version: 1.0.0
kind: event
payload:
  type: object
  required: [order_id, payment_ref, amount_cents]
  properties:
    order_id: {type: string}
    payment_ref: {type: string}
    amount_cents: {type: integer}
"""

CAPTURE = """
contract: payments/capture
version: 1.0.0
input:
  type: object
  required: [order_id, amount_cents]
  properties: {order_id: {type: string}, amount_cents: {type: integer}}
output:
  type: object
  required: [payment_ref]
  properties: {payment_ref: {type: string}}
emits:
  event: payments/payment-captured@1
  payload:
    order_id: "${input.order_id}"
    amount_cents: "${input.amount_cents}"
    payment_ref: "${output.payment_ref}"
"""

CHECKOUT = """
workflow: payments/checkout
input:
  type: object
  required: [order_id, amount_cents]
  properties: {order_id: {type: string}, amount_cents: {type: integer}}
steps:
  capture:
    contract: payments/capture@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}"}
output: {payment_ref: "${steps.capture.output.payment_ref}"}
"""

SHIP = contract(
    "shipping/ship",
    input_props="{order_id: {type: string}, payment_ref: {type: string}}",
    input_required="[order_id, payment_ref]",
    output_props="{shipment_id: {type: string}}",
    output_required="[shipment_id]",
)

ON_CAPTURED = """
workflow: shipping/ship-captured
input:
  type: object
  required: [order_id, payment_ref]
  properties: {order_id: {type: string}, payment_ref: {type: string}}
steps:
  ship:
    contract: shipping/ship@^1
    input: {order_id: "${input.order_id}", payment_ref: "${input.payment_ref}"}
output: {shipment_id: "${steps.ship.output.shipment_id}"}
triggers:
  - on: payments/payment-captured@^1
    input: {order_id: "${event.order_id}", payment_ref: "${event.payment_ref}"}
"""


@pytest.fixture(params=["in-process", "nats"])
def coordinator(request, tmp_path):
    """With the UI (it links a run an event started to the event and the run that published
    it), on each event bus."""
    with nats_stream() as stream:
        bus = ["--events", NATS_URL, "--events-stream", stream] if request.param == "nats" else []
        proc = CoordinatorProcess.start(tmp_path / "home", "--ui", "127.0.0.1:0", *bus)
        try:
            yield proc
        finally:
            proc.kill9()


@pytest.fixture
async def test_agent(coordinator):
    agents: list[TestAgent] = []

    async def make(token: str, team: str, handlers: dict) -> TestAgent:
        agent = TestAgent(coordinator.address, token, team, handlers)
        await agent.start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.stop()


async def _ui_json(coordinator: CoordinatorProcess, token: str, path: str) -> dict:
    state = json.loads((coordinator.home / "coordinator.json").read_text())
    url = f"http://{state['ui']}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        signed = await client.post("/api/v1/session", json={"token": token}, headers={"Origin": url})
        assert signed.status_code == 200, signed.text
        response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_step_of_an_emitting_contract_publishes_the_event_and_another_team_reacts(
    coordinator, test_agent
):
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "shipping")}
    await coordinator.register_contract(tokens["payments"], CAPTURED)
    await coordinator.register_contract(tokens["payments"], CAPTURE)
    await coordinator.register_workflow(tokens["payments"], CHECKOUT)
    await coordinator.register_contract(tokens["shipping"], SHIP)
    await coordinator.register_workflow(tokens["shipping"], ON_CAPTURED)
    shipped: list[dict] = []

    async def capture(call: Call):
        return {"payment_ref": f"pay-{call.input['order_id']}"}

    async def ship(call: Call):
        shipped.append(call.input)
        return {"shipment_id": f"s-{call.input['order_id']}"}

    await test_agent(tokens["payments"], "payments", {"payments/capture@1": capture})
    await test_agent(tokens["shipping"], "shipping", {"shipping/ship@1": ship})

    async with coordinator.client(tokens["payments"]) as client:
        checkout = (
            await start_run(client, "payments/checkout", {"order_id": "o-1", "amount_cents": 500})
        ).run
        assert (await wait_run(client, checkout.run_id)).status == pb.RUN_STATUS_SUCCEEDED
        [event] = (
            await client.coordinator.ListEvents(pb.ListEventsRequest(contract="payments/payment-captured"))
        ).events
        assert json.loads(event.payload_json) == {
            "order_id": "o-1",
            "amount_cents": 500,
            "payment_ref": "pay-o-1",
        }
        assert event.source_run == checkout.run_id and event.contract_version == "1.0.0"
        event = await handled(client, event.event_id)
    [triggered] = event.triggered_runs
    async with coordinator.client(tokens["shipping"]) as client:
        run = await wait_run(client, triggered)
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    assert shipped == [{"order_id": "o-1", "payment_ref": "pay-o-1"}]
    # The triggered run's trace links to the step that published the event.
    assert event.trace_context["traceparent"].split("-")[1] == checkout.trace_id

    shown = await coordinator.acli("event", "show", event.event_id, token=tokens["payments"])
    assert shown.returncode == 0, shown.stderr
    assert f"published by run {checkout.run_id}" in shown.stdout and triggered in shown.stdout

    # The UI: the triggered run links to its event and the run that published it; the team
    # graph has the event edge (payments' event starts shipping's workflow) beside call edges.
    page = await _ui_json(coordinator, tokens["shipping"], f"/api/v1/runs/{triggered}")
    assert page["started_by_event"]["event_id"] == event.event_id
    assert page["started_by_event"]["source_run"] == checkout.run_id
    assert page["started_by_event"]["contract"] == "payments/payment-captured"
    graph = await _ui_json(coordinator, tokens["shipping"], "/api/v1/teams/graph")
    assert graph["event_edges"] == [
        {
            "from": "payments",
            "to": "shipping",
            "workflows": ["shipping/ship-captured"],
            "events": ["payments/payment-captured"],
        }
    ]
    assert ("shipping", "shipping") in {(e["from"], e["to"]) for e in graph["edges"]}


async def test_an_emits_mapping_that_does_not_fit_the_event_is_refused_naming_the_field(
    coordinator, tmp_path
):
    token = await coordinator.create_team("payments")
    with pytest.raises(InvalidArgumentError) as refused:  # the event contract is not registered
        await coordinator.register_contract(token, CAPTURE)
    assert "emits payments/payment-captured@1, but no version of it is registered" in str(
        refused.value.details
    )

    await coordinator.register_contract(token, CAPTURED)
    wrong = CAPTURE.replace('payment_ref: "${output.payment_ref}"', 'payment_ref: "${output.ref}"')
    with pytest.raises(InvalidArgumentError) as refused:
        await coordinator.register_contract(token, wrong)
    text = "\n".join(refused.value.details)
    assert "emits.payload.payment_ref" in text and "does not declare 'ref'" in text, text

    outsider = await coordinator.create_team("crm")
    foreign = tmp_path / "capture.yaml"
    foreign.write_text(CAPTURE.replace("payments/capture", "crm/capture"))
    bad = await coordinator.acli("contract", "register", str(foreign), token=outsider)
    assert bad.returncode == 2, bad.stderr
    assert (
        "capture.yaml:13: emits.event" in bad.stderr and "may emit only its own team's events" in bad.stderr
    )


async def test_a_breaking_change_to_an_event_names_the_workflows_it_triggers(coordinator):
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "shipping")}
    await coordinator.register_contract(tokens["payments"], CAPTURED)
    await coordinator.register_contract(tokens["shipping"], SHIP)
    await coordinator.register_workflow(tokens["shipping"], ON_CAPTURED)
    # Compatible for publishers (a payload may now leave payment_ref out), but the trigger
    # maps it into a required run input.
    widened = CAPTURED.replace("version: 1.0.0", "version: 1.1.0").replace(
        "required: [order_id, payment_ref, amount_cents]", "required: [order_id, amount_cents]"
    )
    with pytest.raises(FailedPreconditionError) as refused:
        await coordinator.register_contract(tokens["payments"], widened)
    text = str(refused.value) + "\n" + "\n".join(refused.value.details)
    assert "would break 1 consumer" in text, text
    assert (
        "workflow shipping/ship-captured (v1, team shipping)" in text
        and "trigger 1 on payments/payment-captured" in text
    )
    assert "event.payment_ref" in text
