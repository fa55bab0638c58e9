"""Contract and workflow lifecycle end to end: the real coordinator process, test agents over the
real gRPC API, and the CLI (docs/contracts.md, "Deprecation" and "Retiring a version";
docs/workflows.md, "Versions and commands").

payments owns payments/charge (majors 1 and 2); shipping owns shipping/checkout, which calls
charge@^1. Deprecation reaches shipping's runs (runs show, run --wait's stderr, the trace),
shipping's notices and payments' callers view; a passed sunset refuses new runs unless
overridden (recorded); retire is refused while used; workflows have versions that can be
started, rolled back, disabled and deleted.
"""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import InvalidArgumentError
from contracts.model import Deprecation
from coordinator.store.records import AuditRecord
from coordinator.store.sqlite import SqliteStore
from tests.support.agent import Call
from tests.support.events import handled
from tests.support.scenario import contract, wait_run
from tests.support.wait import wait_until

CHARGE_1 = contract("payments/charge", "1.0.0")
CHARGE_2 = contract("payments/charge", "2.0.0", output_props="{ref: {type: string}, fee: {type: integer}}")
CHECKOUT = """\
workflow: shipping/checkout
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.charge.output.ref}"}
"""
CHECKOUT_ON_2 = CHECKOUT.replace("payments/charge@^1", "payments/charge@^2")
FUTURE = (datetime.date.today() + datetime.timedelta(days=400)).isoformat()
PAST = "2020-01-01"


async def _world(coordinator, test_agent, *, block: asyncio.Event | None = None) -> dict[str, str]:
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "shipping")}
    assert (await coordinator.register_contract(tokens["payments"], CHARGE_1)).registered
    assert (await coordinator.register_contract(tokens["payments"], CHARGE_2)).registered
    assert (await coordinator.register_workflow(tokens["shipping"], CHECKOUT)).registered

    async def charge_1(call: Call) -> dict:
        if block is not None:
            await block.wait()
        return {"ref": f"v1-{call.input['order_id']}"}

    async def charge_2(call: Call) -> dict:
        return {"ref": f"v2-{call.input['order_id']}", "fee": 1}

    await test_agent(
        tokens["payments"], "payments", {"payments/charge@1": charge_1, "payments/charge@2": charge_2}
    )
    return tokens


def _json(result) -> object:
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


async def _past_sunset(coordinator, versions: list[str]) -> None:
    """Let the sunset pass: a sunset in the past cannot be set through the API (it must be today
    or later), so the store is written directly, with the coordinator stopped, as time would."""
    coordinator.stop()
    store = SqliteStore(coordinator.db)
    await store.open()
    try:
        await store.set_deprecation(
            "payments/charge",
            versions,
            Deprecation(PAST, "payments/charge@2"),
            AuditRecord(1, "payments", "contract.deprecate", "payments/charge@1", "payments"),
        )
    finally:
        await store.close()
    coordinator.restart()


async def test_a_deprecation_reaches_the_callers_runs_notices_and_the_owner(coordinator, test_agent):
    tokens = await _world(coordinator, test_agent)
    deprecated = await coordinator.acli(
        "contract", "deprecate", "payments/charge@1", "--sunset", FUTURE,
        "--replacement", "payments/charge@2", token=tokens["payments"],
    )  # fmt: skip
    assert deprecated.returncode == 0, deprecated.stderr
    expected = f"payments/charge@1.0.0 is deprecated: sunset {FUTURE}, replacement payments/charge@2"

    waited = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-1"}', "--wait", token=tokens["shipping"]
    )
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout) == {"ref": "v1-o-1"}  # stdout stays the output only
    assert f"warning: {expected}" in waited.stderr

    runs = _json(await coordinator.acli("runs", "list", "--json", token=tokens["shipping"]))
    run_id = runs[0]["run_id"]
    shown = _json(await coordinator.acli("runs", "show", run_id, "--json", token=tokens["shipping"]))
    assert shown["warnings"] == [expected]
    text = await coordinator.acli("runs", "show", run_id, token=tokens["shipping"])
    assert f"warning   {expected}" in text.stdout

    # The trace: the run's span carries it.
    async def run_span_warnings() -> str:
        async with coordinator.client(tokens["shipping"]) as client:
            trace = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id))
        for span in trace.spans:
            if span.name == "run shipping/checkout":
                return json.loads(span.attributes_json).get("accord.warnings", "")
        return ""

    await wait_until(lambda: run_span_warnings(), what="the run's span with its warning")
    assert await run_span_warnings() == expected

    # The caller's notices.
    notices = _json(await coordinator.acli("notices", "--json", token=tokens["shipping"]))
    assert [
        (n["kind"], n["contract"], n["sunset"], n["replacement"], n["workflow"], n["step"]) for n in notices
    ] == [("deprecated", "payments/charge@1.0.0", FUTURE, "payments/charge@2", "shipping/checkout", "charge")]
    assert notices[0]["runs_last_30_days"] == 1 and not notices[0]["past_sunset"]
    # The owner: who still calls the deprecated version, how often.
    owner = _json(await coordinator.acli("notices", "--json", token=tokens["payments"]))
    assert [(n["kind"], n["contract"], n["team"], n["workflow"], n["runs_last_30_days"]) for n in owner] == [
        ("callers", "payments/charge@1.0.0", "shipping", "shipping/checkout", 1)
    ]
    consumers = _json(
        await coordinator.acli(
            "contract", "consumers", "payments/charge@1", "--json", token=tokens["payments"]
        )
    )
    assert consumers == [
        {
            "workflow": "shipping/checkout",
            "workflow_version": 1,
            "team": "shipping",
            "step": "charge",
            "calls": "payments/charge@^1",
            "runs_last_30_days": 1,
        }
    ]
    # Nobody calls major 2 yet.
    assert _json(await coordinator.acli("contract", "consumers", "payments/charge@2", "--json")) == []
    # Deprecation is audited.
    audit = _json(await coordinator.acli("audit", "--json", token=tokens["payments"]))
    assert any(e["action"] == "contract.deprecate" for e in audit)


async def test_after_the_sunset_a_run_is_refused_unless_overridden_and_the_override_is_recorded(
    coordinator, test_agent
):
    tokens = await _world(coordinator, test_agent)
    await _past_sunset(coordinator, ["1.0.0"])

    refused = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-1"}', "--wait", token=tokens["shipping"]
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "payments/charge@1.0.0 passed its sunset 2020-01-01; use payments/charge@2" in refused.stderr
    assert "--override sunset" in refused.stderr
    async with coordinator.client(tokens["shipping"]) as client:
        listed = await client.coordinator.ListRuns(pb.ListRunsRequest())
    assert list(listed.runs) == []  # nothing half-started

    bad = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-1"}', "--override", "sunset=",
        token=tokens["shipping"],
    )  # fmt: skip
    assert bad.returncode == 2 and "expected RULE=" in bad.stderr
    unknown = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-1"}', "--override", "speed=fast",
        token=tokens["shipping"],
    )  # fmt: skip
    assert unknown.returncode == 2 and "no such rule" in unknown.stderr

    overridden = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-2"}', "--wait",
        "--override", "sunset=month-end close; moving to v2 on Monday", token=tokens["shipping"],
    )  # fmt: skip
    assert overridden.returncode == 0, overridden.stderr
    assert json.loads(overridden.stdout) == {"ref": "v1-o-2"}
    assert "started with an override of sunset by shipping (request): month-end close" in overridden.stderr

    # In the workflow file, for triggered and scheduled runs too.
    with_override = CHECKOUT + 'overrides: {sunset: "the legacy path until the migration"}\n'
    assert (await coordinator.register_workflow(tokens["shipping"], with_override)).registered
    from_file = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-3"}', "--wait", token=tokens["shipping"]
    )
    assert from_file.returncode == 0, from_file.stderr

    async with coordinator.client() as admin:
        entries = (await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries
    overrides = [e for e in entries if e.action == "run.override"]
    details = [json.loads(e.details_json) for e in overrides]
    assert [(e.actor, e.owner_team) for e in overrides] == [
        ("shipping", "shipping"),
        ("shipping", "shipping"),
    ]
    assert [(d["rule"], d["reason"], d["from"], d["overridden"]) for d in details] == [
        ("sunset", "month-end close; moving to v2 on Monday", "request", ["payments/charge@1.0.0"]),
        ("sunset", "the legacy path until the migration", "workflow file", ["payments/charge@1.0.0"]),
    ]
    assert all(e.at_unix_ms > 0 for e in overrides)

    # Both are counted in the autonomy report of the team that made them, with their reasons.
    report = await coordinator.acli(
        "autonomy", "report", "--team", "shipping", "--json", token=tokens["shipping"]
    )
    assert report.returncode == 0, report.stderr
    [shipping] = [t for t in json.loads(report.stdout)["teams"] if t["team"] == "shipping"]
    assert shipping["changes"]["overrides"] == 2
    assert sorted(o["reason"] for o in shipping["overrides"]) == [
        "month-end close; moving to v2 on Monday",
        "the legacy path until the migration",
    ]


async def test_retire_is_refused_while_used_naming_each_user_then_accepted(coordinator, test_agent):
    block = asyncio.Event()
    tokens = await _world(coordinator, test_agent, block=block)
    async with coordinator.client(tokens["shipping"]) as client:
        started = await client.coordinator.StartRun(
            pb.StartRunRequest(workflow="shipping/checkout", input_json='{"order_id": "o-1"}')
        )
    run_id = started.run.run_id

    refused = await coordinator.acli("contract", "retire", "payments/charge@1", token=tokens["payments"])
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (
        "workflow shipping/checkout v1 (team shipping), step charge calls payments/charge@^1"
        in refused.stderr
    )
    assert f"run {run_id} (shipping/checkout v1, team shipping) is not finished" in refused.stderr
    assert (await coordinator.acli("contract", "show", "payments/charge@1")).stdout.count("retired") == 0

    # Another team may not retire it.
    denied = await coordinator.acli("contract", "retire", "payments/charge@1", token=tokens["shipping"])
    assert denied.returncode == 3, denied.stderr

    # shipping moves to major 2 and the run finishes: nothing uses major 1 any more.
    assert (await coordinator.register_workflow(tokens["shipping"], CHECKOUT_ON_2)).registered
    block.set()
    async with coordinator.client(tokens["shipping"]) as client:
        assert (await wait_run(client, run_id)).status == pb.RUN_STATUS_SUCCEEDED
    retired = await coordinator.acli("contract", "retire", "payments/charge@1", token=tokens["payments"])
    assert retired.returncode == 0, retired.stderr
    assert "retired payments/charge@1.0.0" in retired.stdout
    shown = _json(await coordinator.acli("contract", "show", "payments/charge@1", "--json"))
    assert shown["retired_unix_ms"] > 0

    # The old workflow version can no longer start: its only version in range is retired.
    old = await coordinator.acli(
        "run", "shipping/checkout@1", "--input", '{"order_id": "o-2"}', token=tokens["shipping"]
    )
    assert old.returncode == 2, old.stdout + old.stderr
    assert "every version of payments/charge in ^1 is retired (1.0.0)" in old.stderr
    # ... and no new workflow may call it.
    with pytest.raises(InvalidArgumentError) as refused_workflow:
        await coordinator.register_workflow(tokens["shipping"], CHECKOUT + "description: back to v1\n")
    assert "payments/charge@^1" in str(refused_workflow.value)
    notices = _json(await coordinator.acli("notices", "--json", token=tokens["shipping"]))
    assert notices == []  # the current version calls major 2, which is in service


async def test_workflow_versions_identical_register_older_version_rollback_delete(coordinator, test_agent):
    tokens = await _world(coordinator, test_agent)
    same = await coordinator.register_workflow(tokens["shipping"], CHECKOUT)
    assert not same.registered and same.workflow.version == 1
    assert "identical to its current version 1; nothing registered" in same.warnings[0]
    path = coordinator.home / "checkout.yaml"
    path.write_text(CHECKOUT)
    cli = await coordinator.acli("workflow", "register", str(path), token=tokens["shipping"])
    assert cli.returncode == 0 and "unchanged: shipping/checkout v1" in cli.stdout, cli.stdout + cli.stderr

    assert (await coordinator.register_workflow(tokens["shipping"], CHECKOUT_ON_2)).workflow.version == 2
    newest = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-1"}', "--wait", token=tokens["shipping"]
    )
    assert json.loads(newest.stdout) == {"ref": "v2-o-1"}
    older = await coordinator.acli(
        "run",
        "shipping/checkout@1",
        "--input",
        '{"order_id": "o-2"}',
        "--wait",
        "--json",
        token=tokens["shipping"],
    )
    assert older.returncode == 0, older.stderr
    older_run = json.loads(older.stdout)
    assert older_run["workflow_version"] == 1 and older_run["output"] == {"ref": "v1-o-2"}
    missing = await coordinator.acli("run", "shipping/checkout@9", "--input", "{}", token=tokens["shipping"])
    assert missing.returncode == 2 and "has no version 9" in missing.stderr

    rolled = await coordinator.acli(
        "workflow", "rollback", "shipping/checkout", "--to", "1", token=tokens["shipping"]
    )
    assert rolled.returncode == 0, rolled.stderr
    assert "rolled back shipping/checkout to the definition of v1, as v3" in rolled.stdout
    v3 = _json(await coordinator.acli("workflow", "show", "shipping/checkout", "--json"))
    assert v3["version"] == 3 and v3["source"] == CHECKOUT
    current = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-3"}', "--wait", token=tokens["shipping"]
    )
    assert json.loads(current.stdout) == {"ref": "v1-o-3"}
    twice = await coordinator.acli(
        "workflow", "rollback", "shipping/checkout", "--to", "1", token=tokens["shipping"]
    )
    assert twice.returncode == 0 and "is the definition of v1 already" in twice.stdout
    async with coordinator.client() as admin:
        entries = (await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries
    rollbacks = [e for e in entries if e.action == "workflow.rollback"]
    assert [(e.object, json.loads(e.details_json)) for e in rollbacks] == [
        ("shipping/checkout v3", {"to": 1, "from": 2})
    ]

    # Delete: v1 and v2 have runs, v3 is current; a v4 then frees v3.
    referenced = await coordinator.acli("workflow", "delete", "shipping/checkout@1", token=tokens["shipping"])
    assert referenced.returncode == 1 and f"run {older_run['run_id']}" in referenced.stderr
    current_refused = await coordinator.acli(
        "workflow", "delete", "shipping/checkout@3", token=tokens["shipping"]
    )
    assert current_refused.returncode == 1 and "is the current version" in current_refused.stderr
    assert (
        await coordinator.register_workflow(tokens["shipping"], CHECKOUT + "description: v4\n")
    ).registered
    ran_v3 = await coordinator.acli("workflow", "delete", "shipping/checkout@3", token=tokens["shipping"])
    assert ran_v3.returncode == 1 and "referenced by runs" in ran_v3.stderr, ran_v3.stderr
    bad_ref = await coordinator.acli("workflow", "delete", "shipping/checkout", token=tokens["shipping"])
    assert bad_ref.returncode == 2 and "name the version" in bad_ref.stderr
    # A version without runs goes.
    assert (
        await coordinator.register_workflow(tokens["shipping"], CHECKOUT + "description: v5\n")
    ).registered
    deleted = await coordinator.acli("workflow", "delete", "shipping/checkout@4", token=tokens["shipping"])
    assert deleted.returncode == 0, deleted.stderr
    versions = [e.object for e in (await _audit(coordinator)) if e.action == "workflow.delete"]
    assert versions == ["shipping/checkout v4"]
    gone = await coordinator.acli("run", "shipping/checkout@4", "--input", "{}", token=tokens["shipping"])
    assert gone.returncode == 2 and "has no version 4" in gone.stderr


async def _audit(coordinator) -> list[pb.AuditEntry]:
    async with coordinator.client() as admin:
        return list((await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries)


ORDER_PAID = """
contract: payments/order-paid
version: 1.0.0
kind: event
payload:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
"""
ON_PAID = CHECKOUT.replace("workflow: shipping/checkout", "workflow: shipping/charge-paid") + (
    'triggers:\n  - on: payments/order-paid@^1\n    input: {order_id: "${event.order_id}"}\n'
)


async def test_a_disabled_workflow_starts_nothing_its_triggers_do_not_fire_then_enabled(
    coordinator, test_agent
):
    tokens = await _world(coordinator, test_agent)
    assert (await coordinator.register_contract(tokens["payments"], ORDER_PAID)).registered
    assert (await coordinator.register_workflow(tokens["shipping"], ON_PAID)).registered

    disabled = await coordinator.acli("workflow", "disable", "shipping/charge-paid", token=tokens["shipping"])
    assert disabled.returncode == 0 and "shipping/charge-paid disabled" in disabled.stdout, disabled.stderr
    assert (
        "was disabled already"
        in (
            await coordinator.acli("workflow", "disable", "shipping/charge-paid", token=tokens["shipping"])
        ).stdout
    )
    denied = await coordinator.acli("workflow", "disable", "shipping/charge-paid", token=tokens["payments"])
    assert denied.returncode == 3

    async def publish(order_id: str) -> pb.Event:
        async with coordinator.client(tokens["payments"]) as client:
            response = await client.coordinator.PublishEvent(
                pb.PublishEventRequest(
                    contract="payments/order-paid@1", payload_json=json.dumps({"order_id": order_id})
                )
            )
            # The triggers run after the publish is answered (docs/workflows.md, "Triggers").
            return await handled(client, response.event.event_id)

    assert list((await publish("o-1")).triggered_runs) == []
    started = await coordinator.acli(
        "run", "shipping/charge-paid", "--input", '{"order_id": "o-2"}', token=tokens["shipping"]
    )
    assert started.returncode == 2 and "workflow is disabled" in started.stderr, started.stderr
    shown = _json(await coordinator.acli("workflow", "show", "shipping/charge-paid", "--json"))
    assert shown["disabled_unix_ms"] > 0
    listed = await coordinator.acli("workflow", "list", token=tokens["shipping"])
    assert "shipping/charge-paid  v1" in listed.stdout and "(disabled)" in listed.stdout
    assert "shipping/checkout  v1  " in listed.stdout and listed.stdout.count("(disabled)") == 1
    # Other workflows are not affected.
    other = await coordinator.acli(
        "run", "shipping/checkout", "--input", '{"order_id": "o-3"}', "--wait", token=tokens["shipping"]
    )
    assert other.returncode == 0, other.stderr

    enabled = await coordinator.acli("workflow", "enable", "shipping/charge-paid", token=tokens["shipping"])
    assert enabled.returncode == 0 and "enabled" in enabled.stdout
    event = await publish("o-4")
    assert len(event.triggered_runs) == 1
    async with coordinator.client(tokens["shipping"]) as client:
        finished = await wait_run(client, event.triggered_runs[0])
    assert json.loads(finished.output_json) == {"ref": "v1-o-4"}
    actions = [e.action for e in await _audit(coordinator)]
    assert actions.count("workflow.disable") == 1 and actions.count("workflow.enable") == 1


async def test_consumer_checks_consider_older_workflow_versions_that_unfinished_runs_use(
    coordinator, test_agent
):
    """v1 of the workflow reads ``ref``; v2 no longer does. While a run of v1 is unfinished, a
    change that drops ``ref`` breaks it and is refused; once the run ended, it registers."""
    block = asyncio.Event()
    tokens = await _world(coordinator, test_agent, block=block)
    async with coordinator.client(tokens["shipping"]) as client:
        started = await client.coordinator.StartRun(
            pb.StartRunRequest(workflow="shipping/checkout", input_json='{"order_id": "o-1"}')
        )
    no_ref = CHECKOUT.replace('output: {ref: "${steps.charge.output.ref}"}', "output: {}")
    assert (await coordinator.register_workflow(tokens["shipping"], no_ref)).workflow.version == 2
    drops_ref = contract(
        "payments/charge", "1.1.0", output_props="{ref: {type: string}}", output_required="[]"
    )
    dry = await coordinator.register_contract(tokens["payments"], drops_ref, dry_run=True)
    assert [(i.workflow, i.workflow_version, i.step) for i in dry.broken_consumers] == [
        ("shipping/checkout", 1, "(output mapping)")
    ]
    block.set()
    async with coordinator.client(tokens["shipping"]) as client:
        assert (await wait_run(client, started.run.run_id)).status == pb.RUN_STATUS_SUCCEEDED
    after = await coordinator.register_contract(tokens["payments"], drops_ref, dry_run=True)
    assert list(after.broken_consumers) == []


@pytest.mark.postgres
async def test_the_lifecycle_on_postgresql(pg_database, tmp_path):
    """The store-dependent parts on PostgreSQL: callers counted from the runs, an unfinished
    run blocking retire, disable, delete, retire."""
    from tests.support.agent import TestAgent
    from tests.support.coordinator import CoordinatorProcess

    coordinator = CoordinatorProcess.start(tmp_path / "home", "--store", pg_database.url, "--store-pool", "4")
    agents: list[TestAgent] = []
    try:

        async def make_agent(token, team, handlers):
            agent = TestAgent(coordinator.address, token, team, handlers)
            await agent.start()
            agents.append(agent)
            return agent

        block = asyncio.Event()
        tokens = await _world(coordinator, make_agent, block=block)
        deprecated = await coordinator.acli(
            "contract", "deprecate", "payments/charge@1", "--sunset", FUTURE, token=tokens["payments"]
        )
        assert deprecated.returncode == 0, deprecated.stderr
        async with coordinator.client(tokens["shipping"]) as client:
            started = await client.coordinator.StartRun(
                pb.StartRunRequest(workflow="shipping/checkout", input_json='{"order_id": "o-1"}')
            )
        assert list(started.run.warnings) == [f"payments/charge@1.0.0 is deprecated: sunset {FUTURE}"]
        refused = await coordinator.acli("contract", "retire", "payments/charge@1", token=tokens["payments"])
        assert refused.returncode == 1 and f"run {started.run.run_id}" in refused.stderr, refused.stderr
        block.set()
        async with coordinator.client(tokens["shipping"]) as client:
            assert (await wait_run(client, started.run.run_id)).status == pb.RUN_STATUS_SUCCEEDED
        owner = _json(await coordinator.acli("notices", "--json", token=tokens["payments"]))
        assert [(n["kind"], n["team"], n["runs_last_30_days"]) for n in owner] == [("callers", "shipping", 1)]

        assert (await coordinator.register_workflow(tokens["shipping"], CHECKOUT_ON_2)).registered
        assert (
            await coordinator.register_workflow(tokens["shipping"], CHECKOUT_ON_2 + "description: v3\n")
        ).registered
        deleted = await coordinator.acli(
            "workflow", "delete", "shipping/checkout@2", token=tokens["shipping"]
        )
        assert deleted.returncode == 0, deleted.stderr
        kept = await coordinator.acli("workflow", "delete", "shipping/checkout@1", token=tokens["shipping"])
        assert kept.returncode == 1 and started.run.run_id in kept.stderr
        retired = await coordinator.acli("contract", "retire", "payments/charge@1", token=tokens["payments"])
        assert retired.returncode == 0, retired.stderr
        assert (
            await coordinator.acli("workflow", "disable", "shipping/checkout", token=tokens["shipping"])
        ).returncode == 0
        off = await coordinator.acli(
            "run", "shipping/checkout", "--input", '{"order_id": "o-2"}', token=tokens["shipping"]
        )
        assert off.returncode == 2 and "workflow is disabled" in off.stderr
    finally:
        for agent in agents:
            await agent.stop()
        coordinator.kill9()
