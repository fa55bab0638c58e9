"""Sensitive data follows the data: a field an upstream contract marks sensitive stays redacted
where it flows (a mapping, a for_each item, text built around it, the run output), in every view
but the input of the step whose team receives it. Real coordinator (with its UI), real agents."""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.store import codec
from coordinator.store.records import SpanRecord
from coordinator.telemetry.otlp import to_resource_spans
from coordinator.web._sessions import COOKIE_NAME
from tests.e2e.agent_harness import Agents, Team, agent_config, agents_fixture, contract_yaml, new_team, shell  # noqa: F401
from tests.support.coordinator import CoordinatorProcess
from tests.support.events import handled
from tests.support.wait import wait_until

CARD = "4111-2222-3333-4444"
CARDS = ["5500-0000-1111-2222", "3400-0000-2222-3333"]
SECRETS = [CARD, *CARDS]


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP backend the coordinator forwards its spans to (a plain gRPC server in threads, so
    it serves whichever event loop the tests run on)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def Export(self, request: Any, context: Any) -> Any:
        self.received.append(request.SerializeToString())
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture(scope="module")
def collector() -> Any:
    found = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    found.address = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield found
    server.stop(None)


@pytest.fixture(scope="module", name="coordinator_process")
def coordinator_with_ui(tmp_path_factory: pytest.TempPathFactory, collector: Any) -> Any:
    coordinator = CoordinatorProcess.start(
        tmp_path_factory.mktemp("coordinator"),
        "--ui",
        "127.0.0.1:0",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.address}"},
    )
    yield coordinator
    coordinator.stop()


def workflow(shop: str, vault: str, pay: str) -> str:
    return f"""
workflow: {shop}/flow
input: {{type: object, required: [order_id], properties: {{order_id: {{type: string}}}}}}
steps:
  issue: {{contract: "{vault}/issue@^1", input: {{order_id: "${{input.order_id}}"}}}}
  charge:
    contract: "{pay}/charge@^1"
    input:
      token: "${{steps.issue.output.card_token}}"
      note: "card ${{steps.issue.output.card_token}}"
      amount: "${{steps.issue.output.amount}}"
  label:
    contract: "{pay}/label@^1"
    for_each: "${{steps.issue.output.cards}}"
    input: {{card: "${{item}}"}}
output:
  token: "${{steps.issue.output.card_token}}"
  note: "card ${{steps.issue.output.card_token}}"
  order: "${{input.order_id}}"
  amount: "${{steps.issue.output.amount}}"
"""


async def _world(coordinator: CoordinatorProcess, agents: Agents) -> tuple[Team, Team, Team]:
    vault, pay, shop = [await new_team(coordinator, p) for p in ("vault", "pay", "shop")]
    await vault.register(
        contract_yaml(
            f"{vault.name}/issue",
            output_schema={
                "type": "object",
                "required": ["card_token", "cards", "amount"],
                "properties": {
                    "card_token": {"type": "string"},
                    "cards": {"type": "array", "items": {"type": "string"}},
                    "amount": {"type": "integer"},
                },
            },
            extra="sensitive: [output.card_token, output.cards]\n",
        )
    )
    string = {"type": "string"}
    await pay.register(
        contract_yaml(
            f"{pay.name}/charge",
            input_schema={
                "type": "object",
                "properties": {"token": string, "note": string, "amount": {"type": "integer"}},
            },
        )
    )
    await pay.register(
        contract_yaml(f"{pay.name}/label", input_schema={"type": "object", "properties": {"card": string}})
    )
    await shop.register(workflow(shop.name, vault.name, pay.name), kind="workflow")
    issue = shell(f"print({json.dumps(json.dumps({'card_token': CARD, 'cards': CARDS, 'amount': 7}))})")
    # Reports what it got without repeating it: an engine copying a value into an output its
    # contract does not mark sensitive is beyond what the workflow's flows can know.
    echo = shell(
        "import json, sys; print(json.dumps({'ok': True, 'lengths': {k: len(str(v)) for k, v in json.load(sys.stdin).items()}}))"
    )
    agents.start(
        vault, agent_config(vault, {f"{vault.name}/issue@1": issue}, token=vault.token), name="vault"
    )
    agents.start(
        pay,
        agent_config(pay, {f"{pay.name}/charge@1": echo, f"{pay.name}/label@1": echo}, token=pay.token),
        name="pay",
    )
    return vault, pay, shop


def steps_of(run: Any) -> dict[str, Any]:
    return {s.id: s for s in run.steps}


def payload(text: str) -> Any:
    return json.loads(text) if text else None


async def test_a_sensitive_output_stays_redacted_where_it_flows(
    coordinator_process: CoordinatorProcess, agents: Agents, collector: Collector
) -> None:
    vault, pay, shop = await _world(coordinator_process, agents)
    run_id = await shop.start_run({"order_id": "o-1"})
    run = await shop.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run

    # The team that receives it as its own step's input sees it: it needs it.
    as_pay = steps_of(await pay.get_run(run_id))
    assert payload(as_pay["charge"].input_json) == {"token": CARD, "note": f"card {CARD}", "amount": 7}
    assert sorted(payload(as_pay[f"label[{i}]"].input_json)["card"] for i in range(2)) == sorted(CARDS)
    # The engine really got the values.
    assert payload(as_pay["charge"].output_json)["lengths"] == {
        "token": len(CARD),
        "note": len(CARD) + 5,
        "amount": 1,
    }

    # The workflow's owner sees where they flowed as [redacted], and the rest in clear.
    as_shop = await shop.get_run(run_id)
    shop_steps = steps_of(as_shop)
    assert payload(shop_steps["issue"].output_json) == {
        "card_token": "[redacted]",
        "cards": "[redacted]",
        "amount": 7,
    }
    assert payload(shop_steps["charge"].input_json) == {
        "token": "[redacted]",
        "note": "[redacted]",
        "amount": 7,
    }
    for i in range(2):
        assert payload(shop_steps[f"label[{i}]"].input_json) == {"card": "[redacted]"}
    assert payload(shop_steps["label"].input_json) == "[redacted]"  # the array it went over
    assert payload(as_shop.output_json) == {
        "token": "[redacted]",
        "note": "[redacted]",
        "order": "o-1",
        "amount": 7,
    }

    # The upstream team sees its own step whole and nothing of the others' payloads.
    as_vault = steps_of(await vault.get_run(run_id))
    assert payload(as_vault["issue"].output_json)["card_token"] == CARD
    assert as_vault["charge"].payload_hidden and as_vault["charge"].input_json == ""

    # The platform admin sees every payload's structure but no sensitive value (it receives
    # none as its own step's input): over gRPC and in `accord runs show`.
    async with coordinator_process.client() as admin:
        as_admin = (await admin.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
    admin_steps = steps_of(as_admin)
    assert payload(admin_steps["issue"].output_json) == {
        "card_token": "[redacted]",
        "cards": "[redacted]",
        "amount": 7,
    }
    assert payload(admin_steps["charge"].input_json) == {
        "token": "[redacted]",
        "note": "[redacted]",
        "amount": 7,
    }
    assert payload(admin_steps["label[0]"].input_json) == {"card": "[redacted]"}
    assert payload(as_admin.output_json)["token"] == "[redacted]"
    assert "steps.charge.input.token" in as_admin.sensitive_flows
    shown = await coordinator_process.acli("runs", "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert "[redacted]" in shown.stdout and "amount" in shown.stdout
    for secret in SECRETS:
        assert secret not in str(as_admin), f"{secret} shown to the admin over gRPC"
        assert secret not in shown.stdout, f"{secret} shown to the admin by accord runs show"

    # runs list (the summaries) shows the run output redacted too.
    async with coordinator_process.client(shop.token) as client:
        listed = await client.coordinator.ListRuns(pb.ListRunsRequest(workflow=f"{shop.name}/flow"))
    [summary] = [r for r in listed.runs if r.run_id == run_id]
    assert payload(summary.output_json)["note"] == "[redacted]"

    # The UI's JSON API, signed in as the owner, the receiving team and the admin: never in clear.
    for team in (shop, pay, Team(coordinator_process, "the admin", coordinator_process.admin_token)):
        text = await _ui_run(coordinator_process, team.token, run_id)
        assert "[redacted]" in text
        for secret in SECRETS:
            assert secret not in text, f"{secret} shown in the UI to {team.name}"

    # Spans: the receiving team's agent exports one quoting the values (as a careless adapter
    # would); the coordinator stores it scrubbed.
    await _export(coordinator_process.address, pay.token, run, f"charged card {CARD} then {CARDS[0]}")
    db = coordinator_process.home / "coordinator.db"
    await wait_until(
        lambda: "pay.charge" in _stored_spans(db, run.trace_id), "the exported span was not stored"
    )
    spans = _stored_spans(db, run.trace_id)
    for secret in SECRETS:
        assert secret not in spans, f"{secret} in a stored span"
    # ...and forwards it to the OTLP backend scrubbed as well.
    await wait_until(
        lambda: any(b"pay.charge" in r for r in collector.received), "the span was not forwarded"
    )
    forwarded = b"".join(collector.received)
    assert b"charge.note" in forwarded  # the attribute arrived, its value scrubbed
    for secret in SECRETS:
        assert secret.encode() not in forwarded, f"{secret} in a forwarded span"


async def _export(address: str, token: str, run: Any, note: str) -> None:
    span = SpanRecord(
        run.trace_id,
        "e100000000000001",
        "",
        "pay.charge",
        time.time_ns(),
        time.time_ns() + 1000,
        service="accord-agent",
        attributes={"accord.run_id": run.run_id, "charge.note": note},
    )
    async with grpc.aio.insecure_channel(address) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
        await stub.Export(
            trace_service_pb2.ExportTraceServiceRequest(resource_spans=to_resource_spans([span])),
            metadata=(("authorization", f"Bearer {token}"),),
        )


async def _ui_run(coordinator: CoordinatorProcess, token: str, run_id: str) -> str:
    state = json.loads((coordinator.home / "coordinator.json").read_text())
    url = f"http://{state['ui']}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        signed = await client.post("/api/v1/session", json={"token": token}, headers={"Origin": url})
        assert signed.status_code == 200, signed.text
        cookie = signed.cookies.get(COOKIE_NAME)
    async with httpx.AsyncClient(base_url=url, cookies={COOKIE_NAME: cookie or ""}, timeout=30) as client:
        response = await client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200, response.text
    assert response.json()["run"]["run_id"] == run_id
    return response.text


def _stored_spans(db: Path, trace_id: str) -> str:
    """The trace's stored rows as they are, and as the store reads them."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            "SELECT * FROM spans WHERE trace_id IN (?, ?)", (codec.span_id_to_db(trace_id), trace_id)
        ).fetchall()
    return "\n".join(f"{tuple(row)!r}\n{codec.span_from_row(row)!r}" for row in rows)


async def test_a_sensitive_event_field_stays_redacted_in_the_run_it_starts(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    vault, pay, shop = [await new_team(coordinator_process, p) for p in ("vault", "pay", "shop")]
    await vault.register(
        f"""
contract: {vault.name}/card-issued
version: 1.0.0
kind: event
payload: {{type: object, required: [card], properties: {{card: {{type: string}}}}}}
sensitive: [input.card]
"""
    )
    string = {"type": "string"}
    await pay.register(
        contract_yaml(
            f"{pay.name}/charge",
            input_schema={"type": "object", "properties": {"token": string, "note": string}},
        )
    )
    await shop.register(
        f"""
workflow: {shop.name}/on-card
input: {{type: object, required: [card], properties: {{card: {{type: string}}}}}}
steps:
  charge: {{contract: "{pay.name}/charge@^1", input: {{token: "${{input.card}}", note: "card ${{input.card}}"}}}}
output: {{note: "card ${{input.card}}"}}
triggers:
  - on: "{vault.name}/card-issued@^1"
    input: {{card: "${{event.card}}"}}
""",
        kind="workflow",
    )
    echo = shell("import json, sys; json.load(sys.stdin); print(json.dumps({'ok': True}))")
    agents.start(pay, agent_config(pay, {f"{pay.name}/charge@1": echo}, token=pay.token), name="pay")
    async with coordinator_process.client(vault.token) as client:
        published = await client.coordinator.PublishEvent(
            pb.PublishEventRequest(
                contract=f"{vault.name}/card-issued@1", payload_json=json.dumps({"card": CARD})
            )
        )
        [run_id] = (await handled(client, published.event.event_id)).triggered_runs
    run = await shop.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run

    assert payload(steps_of(await pay.get_run(run_id))["charge"].input_json) == {
        "token": CARD,
        "note": f"card {CARD}",
    }
    as_shop = await shop.get_run(run_id)
    assert payload(as_shop.input_json) == {"card": "[redacted]"}
    assert payload(steps_of(as_shop)["charge"].input_json) == {"token": "[redacted]", "note": "[redacted]"}
    assert payload(as_shop.output_json) == {"note": "[redacted]"}
    text = await _ui_run(coordinator_process, shop.token, run_id)
    assert CARD not in text and "[redacted]" in text


async def test_an_error_quoting_a_sensitive_value_is_redacted_for_other_viewers(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    vault, pay, shop = [await new_team(coordinator_process, p) for p in ("vault", "pay", "shop")]
    await vault.register(
        contract_yaml(
            f"{vault.name}/issue",
            output_schema={
                "type": "object",
                "required": ["card_token"],
                "properties": {"card_token": {"type": "string"}},
            },
            extra="sensitive: [output.card_token]\n",
        )
    )
    # The callee wants a tokenised card: the raw number fails its schema, and the violation
    # quotes the value it refuses.
    await pay.register(
        contract_yaml(
            f"{pay.name}/charge",
            input_schema={"type": "object", "properties": {"token": {"type": "string", "pattern": "^tok_"}}},
        )
    )
    await shop.register(
        f"""
workflow: {shop.name}/bad
input: {{type: object}}
steps:
  issue: {{contract: "{vault.name}/issue@^1", input: {{}}}}
  charge: {{contract: "{pay.name}/charge@^1", input: {{token: "${{steps.issue.output.card_token}}"}}}}
""",
        kind="workflow",
    )
    issue = shell(f"print({json.dumps(json.dumps({'card_token': CARD}))})")
    agents.start(
        vault, agent_config(vault, {f"{vault.name}/issue@1": issue}, token=vault.token), name="vault"
    )
    run_id = await shop.start_run({}, workflow="bad")
    run = await shop.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_FAILED, run

    # The receiving team sees why its step could not start, value included.
    as_pay = steps_of(await pay.get_run(run_id))["charge"]
    assert as_pay.error.type == "ContractViolation" and CARD in as_pay.error.message, as_pay.error
    # Everybody else sees the reason without the value.
    as_shop = await shop.get_run(run_id)
    charge = steps_of(as_shop)["charge"]
    assert charge.error.type == "ContractViolation", charge.error
    assert "the mapped input does not match" in charge.error.message and "[redacted]" in charge.error.message
    assert CARD not in charge.error.message and CARD not in as_shop.error.message, as_shop
    text = await _ui_run(coordinator_process, shop.token, run_id)
    assert CARD not in text and "the mapped input does not match" in text
    assert run_id in coordinator_process.log() and CARD not in coordinator_process.log()
    async with coordinator_process.client(shop.token) as client:
        listed = await client.coordinator.ListRuns(pb.ListRunsRequest(workflow=f"{shop.name}/bad"))
    [summary] = listed.runs
    assert "the mapped input does not match" in summary.error.message and CARD not in summary.error.message


async def test_a_field_marked_sensitive_in_a_later_minor_version_is_redacted_where_it_flows(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    # The workflow is registered against 1.0.0, which forgot to mark the card sensitive; 1.1.0
    # (a compatible minor) marks it. Runs pin 1.1.0: its taint decides, not the registration's.
    vault, pay, shop = [await new_team(coordinator_process, p) for p in ("vault", "pay", "shop")]
    output = {"type": "object", "required": ["card_token"], "properties": {"card_token": {"type": "string"}}}
    await vault.register(contract_yaml(f"{vault.name}/issue", output_schema=output))
    string = {"type": "string"}
    await pay.register(
        contract_yaml(
            f"{pay.name}/charge",
            input_schema={"type": "object", "properties": {"token": string, "note": string}},
        )
    )
    await shop.register(
        f"""
workflow: {shop.name}/flow
input: {{type: object}}
steps:
  issue: {{contract: "{vault.name}/issue@^1", input: {{}}}}
  charge:
    contract: "{pay.name}/charge@^1"
    input: {{token: "${{steps.issue.output.card_token}}", note: "card ${{steps.issue.output.card_token}}"}}
output: {{token: "${{steps.issue.output.card_token}}"}}
""",
        kind="workflow",
    )
    await vault.register(
        contract_yaml(
            f"{vault.name}/issue",
            output_schema=output,
            version="1.1.0",
            extra="sensitive: [output.card_token]\n",
        )
    )
    issue = shell(f"print({json.dumps(json.dumps({'card_token': CARD}))})")
    echo = shell("import json, sys; json.load(sys.stdin); print(json.dumps({'ok': True}))")
    agents.start(
        vault, agent_config(vault, {f"{vault.name}/issue@1": issue}, token=vault.token), name="vault"
    )
    agents.start(pay, agent_config(pay, {f"{pay.name}/charge@1": echo}, token=pay.token), name="pay")
    run_id = await shop.start_run({})
    run = await shop.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert run.pinned_versions[f"{vault.name}/issue"] == "1.1.0"

    # The receiving team sees its own step's input whole.
    as_pay = steps_of(await pay.get_run(run_id))
    assert payload(as_pay["charge"].input_json) == {"token": CARD, "note": f"card {CARD}"}
    # Every other view: [redacted] where the card flowed.
    as_shop = await shop.get_run(run_id)
    assert payload(steps_of(as_shop)["charge"].input_json) == {"token": "[redacted]", "note": "[redacted]"}
    assert payload(as_shop.output_json) == {"token": "[redacted]"}
    async with coordinator_process.client() as admin:
        as_admin = (await admin.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
    assert payload(steps_of(as_admin)["charge"].input_json) == {"token": "[redacted]", "note": "[redacted]"}
    for viewer, seen in (("shop", as_shop), ("the admin", as_admin)):
        assert payload(seen.output_json) == {"token": "[redacted]"}, viewer
    async with coordinator_process.client(shop.token) as client:
        listed = await client.coordinator.ListRuns(pb.ListRunsRequest(workflow=f"{shop.name}/flow"))
        watched = [
            u.run async for u in client.coordinator.stream("WatchRun", pb.WatchRunRequest(run_id=run_id))
        ]
    [summary] = listed.runs
    assert watched and CARD not in str(summary) and CARD not in str(watched), watched
    for token in (shop.token, pay.token):
        text = await _ui_run(coordinator_process, token, run_id)
        assert CARD not in text and "[redacted]" in text


EMITTED = ["6011-0000-4444-5555", "6011-0000-6666-7777"]


async def test_a_sensitive_value_emitted_into_an_event_stays_redacted_in_it_and_in_the_run_it_starts(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    # vault's issue marks its card sensitive and emits it in card-issued (whose contract marks
    # nothing); vault's notify receives the card through its run's flows and emits it too. shop
    # starts a run on each event, and its step calls audit's log with the card in text.
    vault, audit, shop = [await new_team(coordinator_process, p) for p in ("vault", "audit", "shop")]
    string = {"type": "string"}
    await vault.register(
        f"""
contract: {vault.name}/card-issued
version: 1.0.0
kind: event
payload: {{type: object, required: [card], properties: {{card: {{type: string}}, order: {{type: string}}}}}}
"""
    )
    await vault.register(
        f"""
contract: {vault.name}/card-checked
version: 1.0.0
kind: event
payload: {{type: object, required: [card], properties: {{card: {{type: string, pattern: "^tok_"}}}}}}
"""
    )
    await vault.register(
        contract_yaml(
            f"{vault.name}/issue",
            input_schema={"type": "object", "properties": {"order": string}},
            output_schema={
                "type": "object",
                "required": ["card_token"],
                "properties": {"card_token": string},
            },
            extra=f"""
sensitive: [output.card_token]
emits:
  event: "{vault.name}/card-issued@1"
  payload: {{card: "${{output.card_token}}", order: "${{input.order}}"}}
""",
        )
    )
    await vault.register(
        contract_yaml(
            f"{vault.name}/notify",
            input_schema={"type": "object", "required": ["card"], "properties": {"card": string}},
            extra=f"""
emits:
  event: "{vault.name}/card-issued@1"
  payload: {{card: "${{input.card}}"}}
""",
        )
    )
    # Its payload does not fit card-checked (no tok_ prefix): not published, and the warning
    # saying so must not quote the card.
    await vault.register(
        contract_yaml(
            f"{vault.name}/check",
            input_schema={"type": "object", "required": ["card"], "properties": {"card": string}},
            extra=f"""
emits:
  event: "{vault.name}/card-checked@1"
  payload: {{card: "${{input.card}}"}}
""",
        )
    )
    await vault.register(
        f"""
workflow: {vault.name}/issue-flow
input: {{type: object}}
steps:
  issue: {{contract: "{vault.name}/issue@^1", input: {{order: "o-7"}}}}
  notify: {{contract: "{vault.name}/notify@^1", input: {{card: "${{steps.second.output.card_token}}"}}}}
  second: {{contract: "{vault.name}/issue@^1", input: {{order: "o-8"}}}}
  check: {{contract: "{vault.name}/check@^1", input: {{card: "${{steps.issue.output.card_token}}"}}}}
""",
        kind="workflow",
    )
    await audit.register(
        contract_yaml(f"{audit.name}/log", input_schema={"type": "object", "properties": {"note": string}})
    )
    await shop.register(
        f"""
workflow: {shop.name}/on-card
input: {{type: object, required: [card], properties: {{card: {{type: string}}, order: {{type: string}}}}}}
steps:
  log: {{contract: "{audit.name}/log@^1", input: {{note: "card ${{input.card}}"}}}}
output: {{card: "${{input.card}}"}}
triggers:
  - on: "{vault.name}/card-issued@^1"
    input: {{card: "${{event.card}}"}}
""",
        kind="workflow",
    )
    # issue answers the first card for order o-7 and the second for o-8 (the one notify gets).
    issue = shell(
        "import json, sys; order = json.load(sys.stdin).get('order');"
        f" print(json.dumps({{'card_token': {EMITTED!r}[0 if order == 'o-7' else 1]}}))"
    )
    echo = shell("import json, sys; json.load(sys.stdin); print(json.dumps({'ok': True}))")
    bindings = {f"{vault.name}/issue@1": issue, f"{vault.name}/notify@1": echo, f"{vault.name}/check@1": echo}
    agents.start(vault, agent_config(vault, bindings, token=vault.token), name="vault")
    agents.start(audit, agent_config(audit, {f"{audit.name}/log@1": echo}, token=audit.token), name="audit")
    source = await vault.wait_run(await vault.start_run({}, workflow="issue-flow"))
    assert source.status == pb.RUN_STATUS_SUCCEEDED, source

    # The events: the card is [redacted] in their payload for every viewer (the publishing
    # team and the admin too: no team receives an event as its own step's input).
    async with coordinator_process.client(vault.token) as client:
        listed = (
            await client.coordinator.ListEvents(pb.ListEventsRequest(contract=f"{vault.name}/card-issued"))
        ).events
        assert len(listed) == 3, listed  # issue's (twice: two orders) and notify's
        events = [await handled(client, e.event_id) for e in listed]
    for event in events:
        assert payload(event.payload_json)["card"] == "[redacted]", event
    assert sorted(payload(e.payload_json).get("order", "") for e in events) == ["", "o-7", "o-8"]
    async with coordinator_process.client() as admin:
        as_admin = (
            await admin.coordinator.ListEvents(pb.ListEventsRequest(contract=f"{vault.name}/card-issued"))
        ).events
    shown = await coordinator_process.acli("event", "show", events[0].event_id, "--json")
    listed_cli = await coordinator_process.acli("event", "list", "--json")
    assert shown.returncode == 0 and listed_cli.returncode == 0, shown.stderr + listed_cli.stderr
    assert "[redacted]" in shown.stdout
    for secret in EMITTED:
        assert secret not in str(listed) + str(as_admin), f"{secret} shown in an event"
        assert secret not in shown.stdout + listed_cli.stdout, f"{secret} shown by accord event"

    runs = [run_id for e in events for run_id in e.triggered_runs]
    assert len(runs) == 3, events
    for run_id in runs:
        run = await shop.wait_run(run_id)
        assert run.status == pb.RUN_STATUS_SUCCEEDED, run
        # The receiving team (audit's log) sees its own step's input whole: it needs it.
        [card] = [c for c in EMITTED if c in steps_of(await audit.get_run(run_id))["log"].input_json]
        assert payload(steps_of(await audit.get_run(run_id))["log"].input_json) == {"note": f"card {card}"}
        # Everybody else: the run input, the step's input, the run output.
        async with coordinator_process.client() as admin:
            by_admin = (await admin.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
        for viewer, seen in (("shop", await shop.get_run(run_id)), ("the admin", by_admin)):
            assert payload(seen.input_json) == {"card": "[redacted]"}, viewer
            assert payload(steps_of(seen)["log"].input_json) == {"note": "[redacted]"}, viewer
            assert payload(seen.output_json) == {"card": "[redacted]"}, viewer
            assert card not in str(seen), viewer
        async with coordinator_process.client(shop.token) as client:
            listed_runs = await client.coordinator.ListRuns(
                pb.ListRunsRequest(workflow=f"{shop.name}/on-card")
            )
            watched = [
                u.run async for u in client.coordinator.stream("WatchRun", pb.WatchRunRequest(run_id=run_id))
            ]
        assert watched and card not in str(listed_runs) and card not in str(watched)
        shown_run = await coordinator_process.acli("runs", "show", run_id, "--json", token=shop.token)
        assert shown_run.returncode == 0 and card not in shown_run.stdout, shown_run.stdout
        for token in (shop.token, audit.token, coordinator_process.admin_token):
            text = await _ui_run(coordinator_process, token, run_id)
            assert card not in text and "[redacted]" in text

        # A span audit's agent exports quoting the card is stored scrubbed.
        await _export(coordinator_process.address, audit.token, run, f"logged card {card}")
        db, trace_id = coordinator_process.home / "coordinator.db", run.trace_id
        await wait_until(
            lambda db=db, trace_id=trace_id: "pay.charge" in _stored_spans(db, trace_id),
            "the span was not stored",
        )
        assert card not in _stored_spans(db, trace_id)

    # The emission that did not fit card-checked was logged, without the card.
    log = coordinator_process.log()
    assert f"emits {vault.name}/card-checked@1 and it was not published" in log
    for secret in EMITTED:
        assert secret not in log, f"{secret} in the coordinator log"
