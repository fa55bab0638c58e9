"""Events end to end: the real coordinator, a test agent over the real gRPC API, and the CLI.

payments owns the event contract payments/order-paid; shipping owns a workflow that the event
triggers. Publishing starts the workflow with the trigger's mapped input and it runs to the end;
a bad payload and another team's publish are refused; ListEvents names the runs an event
started; the triggered run's span links to the span that published the event. All with the
in-process event bus, the default (tests/e2e/test_events_nats.py: the same over NATS).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import time

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import InvalidArgumentError, PermissionDeniedError
from tests.support.agent import Call
from tests.support.coordinator import ACCORD
from tests.support.events import handled
from tests.support.scenario import contract, wait_run

ORDER_PAID = """
contract: payments/order-paid
version: 1.0.0
kind: event
description: An order was paid in full.
payload:
  type: object
  required: [order_id, amount_cents]
  properties:
    order_id: {type: string}
    amount_cents: {type: integer, minimum: 1}
"""

SHIP = contract(
    "shipping/ship",
    input_props="{order_id: {type: string}, amount_cents: {type: integer}, note: {type: string}}",
    input_required="[order_id, amount_cents, note]",
    output_props="{shipment_id: {type: string}}",
    output_required="[shipment_id]",
)

ON_PAID = """
workflow: shipping/ship-paid-orders
input:
  type: object
  required: [order_id, amount_cents, note]
  properties: {order_id: {type: string}, amount_cents: {type: integer}, note: {type: string}}
steps:
  ship:
    contract: shipping/ship@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}", note: "${input.note}"}
output: {shipment_id: "${steps.ship.output.shipment_id}"}
triggers:
  - on: payments/order-paid@^1
    input: {order_id: "${event.order_id}", amount_cents: "${event.amount_cents}", note: "paid order ${event.order_id}"}
"""

PUBLISHER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PUBLISHER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
async def world(coordinator, test_agent):
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "shipping")}
    await coordinator.register_contract(tokens["payments"], ORDER_PAID)
    await coordinator.register_contract(tokens["shipping"], SHIP)
    await coordinator.register_workflow(tokens["shipping"], ON_PAID)
    shipped: list[dict] = []

    async def ship(call: Call):
        shipped.append(call.input)
        return {"shipment_id": f"s-{call.input['order_id']}"}

    await test_agent(tokens["shipping"], "shipping", {"shipping/ship@1": ship})
    return tokens, shipped


async def _publish(coordinator, token: str, payload, **fields) -> pb.Event:
    """Publish, then wait until the event's triggers ran (they run after the answer)."""
    async with coordinator.client(token) as client:
        response = await client.coordinator.PublishEvent(
            pb.PublishEventRequest(
                contract="payments/order-paid@1", payload_json=json.dumps(payload), **fields
            )
        )
        assert response.event.event_id.startswith("evt-")
        return await handled(client, response.event.event_id)


async def _tail(coordinator, team: str, token: str) -> subprocess.Popen[str]:
    """``accord event tail --team TEAM --json``, once it follows: it shows only what is published
    after it started, and says when it does."""
    # Started once; read off the loop by its callers.
    tail = coordinator.cli_started("event", "tail", "--team", team, "--every", "0.1", "--json", token=token)
    try:
        ready = await asyncio.wait_for(asyncio.to_thread(tail.stderr.readline), 60)
        assert ready.startswith("following new events"), ready
    except BaseException:
        tail.kill()
        tail.wait()
        raise
    return tail


async def _run_span(coordinator, token: str, run: pb.Run, within: float = 30.0) -> pb.Span:
    """The run's own span (emitted when the run ends, stored a moment later)."""
    deadline = time.monotonic() + within
    async with coordinator.client(token) as client:
        while True:
            trace = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run.run_id))
            for span in trace.spans:
                if span.name == f"run {run.workflow}":
                    return span
            assert time.monotonic() < deadline, f"no run span in {trace}"
            await asyncio.sleep(0.1)


async def test_an_event_starts_the_triggered_workflow_with_the_mapped_input(coordinator, world):
    tokens, shipped = world
    event = await _publish(
        coordinator,
        tokens["payments"],
        {"order_id": "o-1", "amount_cents": 1200},
        trace_context={"traceparent": f"00-{PUBLISHER_TRACE}-{PUBLISHER_SPAN}-01"},
        request_id="pub-1",
    )
    assert event.contract == "payments/order-paid" and event.contract_version == "1.0.0"
    assert len(event.triggered_runs) == 1
    run_id = event.triggered_runs[0]

    async with coordinator.client(tokens["shipping"]) as client:
        run = await wait_run(client, run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert run.workflow == "shipping/ship-paid-orders"
    mapped = {"order_id": "o-1", "amount_cents": 1200, "note": "paid order o-1"}
    assert json.loads(run.input_json) == mapped
    assert shipped == [mapped]
    assert json.loads(run.output_json) == {"shipment_id": "s-o-1"}

    # The same request id is the same event: no second run.
    again = await _publish(
        coordinator, tokens["payments"], {"order_id": "o-1", "amount_cents": 1200}, request_id="pub-1"
    )
    assert again.event_id == event.event_id and list(again.triggered_runs) == [run_id]

    # ListEvents names the runs an event started, for the publisher and for the triggered team.
    for team in ("payments", "shipping"):
        async with coordinator.client(tokens[team]) as client:
            listed = await client.coordinator.ListEvents(pb.ListEventsRequest(contract="payments/order-paid"))
        assert [(e.event_id, list(e.triggered_runs)) for e in listed.events] == [(event.event_id, [run_id])]
    assert json.loads(listed.events[0].payload_json or "null") is None  # shipping: not its payload

    # The run is a trace of its own, linked to the span that published the event.
    span = await _run_span(coordinator, tokens["shipping"], run)
    assert run.trace_id != PUBLISHER_TRACE
    assert span.trace_id == run.trace_id and span.parent_span_id == ""
    assert json.loads(span.links_json) == [{"trace_id": PUBLISHER_TRACE, "span_id": PUBLISHER_SPAN}]


async def test_a_run_triggered_without_a_trace_context_has_no_link(coordinator, world):
    tokens, _ = world
    event = await _publish(coordinator, tokens["payments"], {"order_id": "o-2", "amount_cents": 5})
    async with coordinator.client(tokens["shipping"]) as client:
        run = await wait_run(client, event.triggered_runs[0])
    span = await _run_span(coordinator, tokens["shipping"], run)
    assert json.loads(span.links_json or "[]") == []


async def test_a_payload_that_breaks_the_event_contract_is_refused_with_its_path(coordinator, world):
    tokens, shipped = world
    with pytest.raises(InvalidArgumentError) as refused:
        await _publish(coordinator, tokens["payments"], {"order_id": "o-3", "amount_cents": 0})
    text = str(refused.value)
    assert "payments/order-paid@1.0.0" in text
    assert "$.amount_cents" in text and "minimum" in text
    async with coordinator.client(tokens["payments"]) as client:
        listed = await client.coordinator.ListEvents(pb.ListEventsRequest())
    assert list(listed.events) == [] and shipped == []


async def test_publishing_another_teams_event_is_refused_naming_the_owner(coordinator, world):
    tokens, shipped = world
    with pytest.raises(PermissionDeniedError) as refused:
        await _publish(coordinator, tokens["shipping"], {"order_id": "o-4", "amount_cents": 10})
    assert "owned by team payments" in str(refused.value)
    assert shipped == []


def _cli(
    coordinator, *args: str, token: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ACCORD, *args],
        env={**coordinator.env(token), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=coordinator.home,
    )


async def test_cli_event_publish_and_list(coordinator, world, tmp_path):
    tokens, shipped = world
    payload_file = tmp_path / "paid.json"
    payload_file.write_text('{"order_id": "o-5", "amount_cents": 700}')
    published = await asyncio.to_thread(
        _cli,
        coordinator,
        "event", "publish", "payments/order-paid@^1", "--payload", f"@{payload_file}", "--wait",
        token=tokens["payments"],
        env={"TRACEPARENT": f"00-{PUBLISHER_TRACE}-{PUBLISHER_SPAN}-01"},
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    event_id, run_id = published.stdout.split()
    assert event_id.startswith("evt-")
    async with coordinator.client(tokens["shipping"]) as client:
        run = await wait_run(client, run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    assert shipped == [{"order_id": "o-5", "amount_cents": 700, "note": "paid order o-5"}]
    span = await _run_span(coordinator, tokens["shipping"], run)
    assert json.loads(span.links_json) == [{"trace_id": PUBLISHER_TRACE, "span_id": PUBLISHER_SPAN}]

    listed = await asyncio.to_thread(_cli, coordinator, "event", "list", "--json", token=tokens["payments"])
    assert listed.returncode == 0, listed.stderr
    [event] = json.loads(listed.stdout)
    assert event["event_id"] == event_id and event["triggered_runs"] == [run_id]
    assert event["payload"] == {"order_id": "o-5", "amount_cents": 700}
    assert event["trace_context"]["traceparent"] == f"00-{PUBLISHER_TRACE}-{PUBLISHER_SPAN}-01"

    text = await asyncio.to_thread(_cli, coordinator, "event", "list", token=tokens["shipping"])
    assert text.returncode == 0 and f"{event_id}  payments/order-paid@1.0.0  started {run_id}" in text.stdout

    bad = await asyncio.to_thread(
        _cli, coordinator, "event", "publish", "payments/order-paid@1", "--payload", '{"order_id": 5}',
        token=tokens["payments"],
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stdout == ""
    assert "$.amount_cents" in bad.stderr and "$.order_id" in bad.stderr

    not_json = await asyncio.to_thread(
        _cli, coordinator, "event", "publish", "payments/order-paid@1", "--payload", "{order",
        token=tokens["payments"],
    )  # fmt: skip
    assert not_json.returncode == 2 and "--payload: not valid JSON" in not_json.stderr

    foreign = await asyncio.to_thread(
        _cli, coordinator, "event", "publish", "payments/order-paid@1", "--payload", '{"order_id": "x", "amount_cents": 1}',
        token=tokens["shipping"],
    )  # fmt: skip
    assert foreign.returncode == 3 and "owned by team payments" in foreign.stderr
    assert len(shipped) == 1


async def test_the_link_survives_a_coordinator_restart_before_the_run_ends(coordinator, test_agent):
    """The run span is emitted when the run ends: the link is kept with the run, not in memory."""
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "shipping")}
    await coordinator.register_contract(tokens["payments"], ORDER_PAID)
    await coordinator.register_contract(tokens["shipping"], SHIP)
    await coordinator.register_workflow(tokens["shipping"], ON_PAID)
    event = await _publish(
        coordinator,
        tokens["payments"],
        {"order_id": "o-6", "amount_cents": 1},
        trace_context={"traceparent": f"00-{PUBLISHER_TRACE}-{PUBLISHER_SPAN}-01"},
    )
    coordinator.restart()  # kill -9: the run is waiting for an agent of shipping

    async def ship(call: Call):
        return {"shipment_id": "s-6"}

    await test_agent(tokens["shipping"], "shipping", {"shipping/ship@1": ship})
    async with coordinator.client(tokens["shipping"]) as client:
        run = await wait_run(client, event.triggered_runs[0])
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    span = await _run_span(coordinator, tokens["shipping"], run)
    assert json.loads(span.links_json) == [{"trace_id": PUBLISHER_TRACE, "span_id": PUBLISHER_SPAN}]


async def test_a_publish_retried_after_a_crash_half_way_starts_no_run_twice(coordinator, world):
    """A coordinator that started the triggered runs and died before it stored the event: the
    publisher's retry with its request id (on this or any coordinator) is the same event, so the
    runs it starts are the ones already started. The crash is reproduced by deleting what the
    first publish stored last (the event and its request record), as if never written."""
    tokens, _ = world
    payload = {"order_id": "o-9", "amount_cents": 900}
    first = await _publish(coordinator, tokens["payments"], payload, request_id="pub-crash")
    assert len(first.triggered_runs) == 1
    with sqlite3.connect(coordinator.db) as db:
        db.execute("DELETE FROM events WHERE event_id = ?", (first.event_id,))
        db.execute("DELETE FROM requests WHERE scope = 'event' AND request_id = 'pub-crash'")
    again = await _publish(coordinator, tokens["payments"], payload, request_id="pub-crash")
    assert again.event_id == first.event_id
    assert list(again.triggered_runs) == list(first.triggered_runs)
    # The same request id with another payload is another event: refused, saying so.
    with pytest.raises(InvalidArgumentError, match="another payload"):
        await _publish(
            coordinator, tokens["payments"], {**payload, "amount_cents": 1}, request_id="pub-crash"
        )


async def test_cli_event_tail_show_and_list_by_team(coordinator, world):
    tokens, _ = world
    tail = await _tail(coordinator, "payments", tokens["payments"])
    try:
        first = await _publish(coordinator, tokens["payments"], {"order_id": "o-t1", "amount_cents": 3})
        line = await asyncio.wait_for(asyncio.to_thread(tail.stdout.readline), 60)
        shown = json.loads(line)
        assert shown["event_id"] == first.event_id and shown["contract"] == "payments/order-paid"
        assert shown["payload"] == {"order_id": "o-t1", "amount_cents": 3}
    finally:
        tail.kill()
        tail.wait()

    show = await asyncio.to_thread(
        _cli, coordinator, "event", "show", first.event_id, "--json", token=tokens["payments"]
    )
    assert show.returncode == 0, show.stderr
    event = json.loads(show.stdout)
    assert event["handled_unix_ms"] and len(event["triggered_runs"]) == 1 and event["source_run"] == ""
    missing = await asyncio.to_thread(
        _cli, coordinator, "event", "show", "evt-nope", token=tokens["payments"]
    )
    assert missing.returncode == 2 and "event 'evt-nope' does not exist" in missing.stderr

    for team, expected in (("payments", [first.event_id]), ("shipping", [])):
        listed = await asyncio.to_thread(
            _cli, coordinator, "event", "list", "--team", team, "--json", token=tokens["shipping"]
        )
        assert listed.returncode == 0, listed.stderr
        assert [e["event_id"] for e in json.loads(listed.stdout)] == expected

    # publish without --wait: the event id at once; with --wait --json: the event once handled.
    quick = await asyncio.to_thread(
        _cli, coordinator, "event", "publish", "payments/order-paid@1", "--payload", '{"order_id": "o-t2", "amount_cents": 1}',
        token=tokens["payments"],
    )  # fmt: skip
    assert (
        quick.returncode == 0 and quick.stdout.strip().startswith("evt-") and len(quick.stdout.split()) == 1
    )
    waited = await asyncio.to_thread(
        _cli, coordinator, "event", "publish", "payments/order-paid@1", "--payload", '{"order_id": "o-t3", "amount_cents": 1}', "--wait", "--json",
        token=tokens["payments"],
    )  # fmt: skip
    assert waited.returncode == 0, waited.stderr
    assert (
        json.loads(waited.stdout)["handled_unix_ms"] and len(json.loads(waited.stdout)["triggered_runs"]) == 1
    )


STOCK_COUNTED = """
contract: warehouse/stock-counted
version: 1.0.0
kind: event
payload:
  type: object
  required: [n]
  properties: {n: {type: integer}}
"""


async def test_cli_event_tail_shows_a_burst_of_more_than_one_page_whole(coordinator):
    """250 events published between two looks of ``event tail`` (it is stopped meanwhile, so they
    are): all 250 shown, each once. (A look reads pages of 200, newest first, until
    it reaches an event it saw: with one page only, the oldest 50 were never shown.)"""
    token = await coordinator.create_team("warehouse")
    await coordinator.register_contract(token, STOCK_COUNTED)
    tail = await _tail(coordinator, "warehouse", token)
    try:
        tail.send_signal(signal.SIGSTOP)
        async with coordinator.client(token) as client:
            for n in range(250):
                await client.coordinator.PublishEvent(
                    pb.PublishEventRequest(
                        contract="warehouse/stock-counted@1", payload_json=json.dumps({"n": n})
                    )
                )
        tail.send_signal(signal.SIGCONT)
        shown = []
        while len(shown) < 250:
            line = await asyncio.wait_for(asyncio.to_thread(tail.stdout.readline), 60)
            shown.append(json.loads(line)["payload"]["n"])
        assert sorted(shown) == list(range(250))  # each once (within one ms, by id: any order)
    finally:
        tail.kill()
        tail.wait()


async def test_list_answers_leave_large_payloads_and_sources_out(coordinator, world):
    """Issue 15: list answers never carry whole payloads. ListEvents leaves out a payload larger
    than 16 KiB (GetEvent has it), ListWorkflows every source text (GetWorkflow has it; the
    triggers are still named); ``event tail --json`` still prints each payload whole."""
    tokens, _ = world
    note = "n" * 40_000
    tail = await _tail(coordinator, "payments", tokens["payments"])
    try:
        big = {"order_id": "o-big", "amount_cents": 5, "note": note}
        first = await _publish(coordinator, tokens["payments"], big)
        shown = json.loads(await asyncio.wait_for(asyncio.to_thread(tail.stdout.readline), 60))
        assert shown["event_id"] == first.event_id and shown["payload"] == big
    finally:
        tail.kill()
        tail.wait()
    for i in range(4):
        await _publish(coordinator, tokens["payments"], {**big, "order_id": f"o-big-{i}"})
    size = len(json.dumps(big, separators=(",", ":")))
    async with coordinator.client(tokens["payments"]) as client:
        listed = await client.coordinator.ListEvents(pb.ListEventsRequest(team="payments"))
        assert len(listed.events) == 5 and listed.ByteSize() < 8 * 1024
        assert all(e.payload_json == "" and e.payload_omitted for e in listed.events)
        assert {e.payload_bytes for e in listed.events} == {size, size + 2}
        whole = (await client.coordinator.GetEvent(pb.GetEventRequest(event_id=first.event_id))).event
        assert json.loads(whole.payload_json) == big and not whole.payload_omitted
    async with coordinator.client(tokens["shipping"]) as client:  # another team: hidden, not left out
        other = (await client.coordinator.ListEvents(pb.ListEventsRequest(team="payments"))).events
        assert other and all(not e.payload_omitted and e.payload_bytes == 0 for e in other)
    cli = await asyncio.to_thread(
        _cli, coordinator, "event", "list", "--team", "payments", "--json", token=tokens["payments"]
    )
    assert cli.returncode == 0, cli.stderr
    assert all(e["payload"] is None and e["payload_omitted"] for e in json.loads(cli.stdout))

    await coordinator.register_workflow(tokens["shipping"], ON_PAID + "# " + "w" * 40_000 + "\n")
    async with coordinator.client(tokens["shipping"]) as client:
        workflows = await client.coordinator.ListWorkflows(pb.ListWorkflowsRequest(team="shipping"))
        [workflow] = workflows.workflows
        assert workflow.version == 2 and workflow.source_text == "" and workflows.ByteSize() < 8 * 1024
        assert list(workflow.triggers) == ["payments/order-paid"]
        got = await client.coordinator.GetWorkflow(pb.GetWorkflowRequest(name="shipping/ship-paid-orders"))
        assert got.workflow.source_text.endswith("w" * 100 + "\n")
    cli = await asyncio.to_thread(_cli, coordinator, "workflow", "list", "--json", token=tokens["shipping"])
    assert cli.returncode == 0 and json.loads(cli.stdout)[0]["name"] == "shipping/ship-paid-orders"
