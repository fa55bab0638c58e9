"""The autonomy report, end to end: a scripted history replayed on the real coordinator with real
agents, and every figure of ``accord autonomy report`` / ``accord autonomy changes`` checked
against what the script did -- the times against the audit entries and runs the coordinator
itself recorded (docs/governance.md, "The autonomy report").

The history: teams register; payments' breaking change is refused naming shipping's workflow;
retiring the old major is refused until shipping moves to the new one; the admin registers a
contract for crm (a platform intervention); crm overrides a policy rule; payments' agent changes
a binding's configuration, runs fail, a further change fixes it; payments' event starts crm's
workflow (an event hand-off).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call, TaskFailed
from tests.support.events import handled
from tests.support.scenario import contract, wait_run

CHARGE_1 = contract(
    "payments/charge",
    "1.0.0",
    output_props="{ref: {type: string}, fee: {type: string}}",
    output_required="[ref, fee]",
)
CHARGE_1_1_BREAKING = CHARGE_1.replace("1.0.0", "1.1.0").replace(
    "fee: {type: string}", "fee: {type: integer}"
)
CHARGE_2 = contract("payments/charge", "2.0.0")
ORDER_PAID = """\
contract: payments/order-paid
version: 1.0.0
kind: event
payload: {type: object, required: [order_id], properties: {order_id: {type: string}}}
"""
BOOK = contract("shipping/book", input_props="{order_id: {type: string}, fee: {type: string}}")
CHECKOUT_1 = """\
workflow: shipping/checkout
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge: {contract: payments/charge@^1, input: {order_id: "${input.order_id}"}}
  book: {contract: shipping/book@^1, input: {order_id: "${input.order_id}", fee: "${steps.charge.output.fee}"}}
output: {ref: "${steps.charge.output.ref}"}
"""
CHECKOUT_2 = """\
workflow: shipping/checkout
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge: {contract: payments/charge@^2, input: {order_id: "${input.order_id}"}}
output: {ref: "${steps.charge.output.ref}"}
"""
NOTIFY = contract("crm/notify", "1.0.0")
ON_PAID = """\
workflow: crm/on-paid
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  notify: {contract: crm/notify@^1, input: {order_id: "${input.order_id}"}}
triggers:
  - on: payments/order-paid@^1
    input: {order_id: "${event.order_id}"}
"""
POLICY = """\
rules:
  - id: contract-owner
    applies_to: contract
    level: require
    overridable: true
    message: "contracts need an owner"
    condition: {required: [owner]}
"""


async def _run(coordinator, token: str, workflow: str, order: str) -> pb.Run:
    async with coordinator.client(token) as client:
        started = await client.coordinator.StartRun(
            pb.StartRunRequest(workflow=workflow, input_json=json.dumps({"order_id": order}))
        )
        return await wait_run(client, started.run.run_id)


async def test_a_scripted_history_gives_the_figures_it_should(coordinator, test_agent, tmp_path: Path):
    tokens = {t: await coordinator.create_team(t) for t in ("payments", "shipping", "crm")}
    payments, shipping, crm = tokens["payments"], tokens["shipping"], tokens["crm"]
    assert (await coordinator.register_contract(payments, CHARGE_1)).registered
    assert (await coordinator.register_contract(payments, ORDER_PAID)).registered

    broken = {"on": False}

    async def charge(call: Call) -> dict:
        if broken["on"]:
            raise TaskFailed("BadConfig", "the new endpoint refuses us", retryable=False)
        return {"ref": f"r-{call.input['order_id']}", "fee": "1"}

    agent = await test_agent(
        payments, "payments", {"payments/charge@1": charge, "payments/charge@2": charge}, agent_id="pay-1"
    )
    agent.fingerprint = "f1"
    await agent.register()  # the binding configuration as first deployed

    # shipping composes; its first run
    assert (await coordinator.register_contract(shipping, BOOK)).registered

    async def book(call: Call) -> dict:
        return {"ref": "b"}

    await test_agent(shipping, "shipping", {"shipping/book@1": book}, agent_id="ship-1")
    assert (await coordinator.register_workflow(shipping, CHECKOUT_1)).registered
    r1 = await _run(coordinator, shipping, "shipping/checkout", "o-1")
    assert r1.status == pb.RUN_STATUS_SUCCEEDED

    # payments' breaking change is refused, naming shipping's workflow
    refused = await coordinator.acli(
        "contract", "register", _file(tmp_path, CHARGE_1_1_BREAKING), token=payments
    )
    assert refused.returncode == 1 and "team shipping" in refused.stderr
    assert (await coordinator.register_contract(payments, CHARGE_2)).registered
    not_yet = await coordinator.acli("contract", "retire", "payments/charge@1", token=payments)
    assert not_yet.returncode == 1 and "shipping/checkout" in not_yet.stderr
    # ... until shipping moves to the new major
    assert (await coordinator.register_workflow(shipping, CHECKOUT_2)).registered
    r2 = await _run(coordinator, shipping, "shipping/checkout", "o-2")
    assert r2.status == pb.RUN_STATUS_SUCCEEDED
    assert (await coordinator.acli("contract", "retire", "payments/charge@1", token=payments)).returncode == 0

    # the platform steps in for crm; crm's event-driven workflow
    assert (await coordinator.register_contract(coordinator.admin_token, NOTIFY)).registered
    assert (await coordinator.register_workflow(crm, ON_PAID)).registered

    async def notify(call: Call) -> dict:
        return {"ref": "n"}

    await test_agent(crm, "crm", {"crm/notify@1": notify})

    # a policy, and crm's override of it
    assert (await coordinator.acli("policy", "apply", _file(tmp_path, POLICY))).returncode == 0
    overridden = await coordinator.acli(
        "contract", "register", _file(tmp_path, NOTIFY.replace("1.0.0", "1.1.0")),
        "--override", "contract-owner=owner named after the reorg", token=crm,
    )  # fmt: skip
    assert overridden.returncode == 0, overridden.stderr

    # payments changes what serves its contract: runs fail; a further change fixes it
    broken["on"], agent.fingerprint = True, "f2"
    await agent.register()
    r3 = await _run(coordinator, shipping, "shipping/checkout", "o-3")
    assert r3.status == pb.RUN_STATUS_FAILED
    broken["on"], agent.fingerprint = False, "f3"
    await agent.register()
    r4 = await _run(coordinator, shipping, "shipping/checkout", "o-4")
    assert r4.status == pb.RUN_STATUS_SUCCEEDED

    # the event hand-off
    async with coordinator.client(payments) as client:
        published = await client.coordinator.PublishEvent(
            pb.PublishEventRequest(contract="payments/order-paid@1", payload_json='{"order_id": "o-5"}')
        )
        event = await handled(client, published.event.event_id)
    async with coordinator.client(crm) as client:
        r5 = await wait_run(client, event.triggered_runs[0])
    assert r5.status == pb.RUN_STATUS_SUCCEEDED

    # ---- the figures, against what the coordinator recorded ----
    async with coordinator.client() as admin:
        audit = list(
            (
                await admin.coordinator.ListAuditLog(
                    pb.ListAuditLogRequest(page=common_pb.PageRequest(page_size=1000))
                )
            ).entries
        )

    def at(action: str, obj: str) -> int:
        return next(e.at_unix_ms for e in audit if e.action == action and e.object == obj)

    result = await coordinator.acli("autonomy", "report", "--json")
    assert result.returncode == 0, result.stderr
    report = {t["team"]: t for t in json.loads(result.stdout)["teams"]}
    assert set(report) == {"payments", "shipping", "crm"}

    pay = report["payments"]
    assert pay["changes"] == {
        "contract_versions": 3,  # charge 1.0.0 and 2.0.0, order-paid 1.0.0 (1.1.0 was refused)
        "workflow_versions": 0,
        "agent_binding_changes": 4,  # registered, then f1, f2, f3
        "retirements": 1,
        "overrides": 0,
    }
    assert [(r["contract"], r["consumer_teams"]) for r in pay["refused_breaking_changes"]] == [
        ("payments/charge@1.1.0", ["shipping"]),
        ("payments/charge@1", ["shipping"]),
    ]
    [needed] = pay["needed_other_teams"]
    assert needed["change"] == "retire payments/charge@1" and needed["teams"] == ["shipping"]
    first_refusal = next(e.at_unix_ms for e in audit if e.action == "contract.retire.refused")
    assert needed["waited"]["ms"] == at("contract.retire", "payments/charge@1") - first_refusal
    assert pay["cross_team_dependencies"] == {
        "calls": [],
        "called_by": ["shipping"],
        "events_from": [],
        "events_to": ["crm"],
    }
    assert pay["platform_interventions"] == 0
    dora = pay["dora"]
    # Used changes: charge 1.0.0 (r1), charge 2.0.0 (r2, r3 failed, r4), the agent as registered
    # and f1 (r1, r2), f2 (r3 failed), f3 (r4); failed: charge 2.0.0 and f2.
    assert (dora["changes"], dora["changes_with_runs"], dora["failed_changes"]) == (7, 5, 2)
    assert dora["change_failure_rate"] == 0.4
    assert dora["time_to_restore"]["ms"] == r4.finished_unix_ms - r3.finished_unix_ms
    # Lead times: charge 1.0.0 -> r1, f1 -> r1, charge 2.0.0 -> r2, f3 -> r4 (f2 never succeeded;
    # the agent's first registration was changed again before any run; order-paid is pinned by none).
    leads = [
        r1.finished_unix_ms - at("contract.register", "payments/charge@1.0.0"),
        r1.finished_unix_ms - _agent_change(audit, "f1"),
        r2.finished_unix_ms - at("contract.register", "payments/charge@2.0.0"),
        r4.finished_unix_ms - _agent_change(audit, "f3"),
    ]
    assert dora["lead_time"]["ms"] == int(statistics.median(leads))
    assert pay["contracts"]["payments/charge"]["failed_changes"] == 2

    ship = report["shipping"]
    assert ship["changes"]["workflow_versions"] == 2 and ship["changes"]["contract_versions"] == 1
    assert ship["cross_team_dependencies"]["calls"] == ["payments"]
    # shipping's changes: book 1.0.0 and its agent (both first used by r1), checkout v1 (r1), v2 (r2)
    ship_agent = next(e.at_unix_ms for e in audit if e.action == "agent.register" and e.object == "ship-1")
    assert ship["time_to_deploy"]["ms"] == int(
        statistics.median(
            [
                r1.finished_unix_ms - at("contract.register", "shipping/book@1.0.0"),
                r1.finished_unix_ms - ship_agent,
                r1.finished_unix_ms - at("workflow.register", "shipping/checkout v1"),
                r2.finished_unix_ms - at("workflow.register", "shipping/checkout v2"),
            ]
        )
    )
    assert ship["dora"]["change_failure_rate"] == 0.25  # v2 was followed by r3's failure

    crm_report = report["crm"]
    assert crm_report["platform_interventions"] == 1
    assert [(o["rule"], o["actor"], o["reason"]) for o in crm_report["overrides"]] == [
        ("contract-owner", "crm", "owner named after the reorg")
    ]
    assert crm_report["changes"]["overrides"] == 1
    assert crm_report["cross_team_dependencies"]["events_from"] == ["payments"]
    assert crm_report["time_to_deploy"] is not None

    # a team sees its own report only
    own = json.loads((await coordinator.acli("autonomy", "report", "--json", token=crm)).stdout)
    assert [t["team"] for t in own["teams"]] == ["crm"]
    denied = await coordinator.acli("autonomy", "report", "--team", "payments", token=crm)
    assert denied.returncode == 3

    text = await coordinator.acli("autonomy", "report", "--team", "payments")
    assert "change failure rate 40% (2 of 5)" in text.stdout
    assert "how each figure is computed:" in text.stdout and "change_failure_rate:" in text.stdout

    # the audit of the last changes
    changes = json.loads((await coordinator.acli("autonomy", "changes", "--last", "8", "--json")).stdout)
    assert [(c["kind"], c["change"]) for c in changes] == [
        ("agent", "pay-1"),
        ("agent", "pay-1"),
        ("contract", "crm/notify@1.1.0"),
        ("agent", _crm_agent(audit)),
        ("workflow", "crm/on-paid v1"),
        ("contract", "crm/notify@1.0.0"),
        ("retire", "payments/charge@1"),
        ("workflow", "shipping/checkout v2"),
    ]
    by = {(c["kind"], c["change"]): c for c in changes}
    retire = by[("retire", "payments/charge@1")]
    assert retire["teams_involved"] == ["payments", "shipping"]
    assert retire["by_others"] == ["team shipping changed workflow shipping/checkout first"]
    assert by[("contract", "crm/notify@1.0.0")]["by_others"] == ["made by the platform (admin)"]
    notify_1_1 = by[("contract", "crm/notify@1.1.0")]
    assert notify_1_1["by_others"] == ["override of contract-owner by crm: owner named after the reorg"]
    assert notify_1_1["time_to_production"]["ms"] == r5.finished_unix_ms - at(
        "contract.register", "crm/notify@1.1.0"
    )
    assert by[("workflow", "crm/on-paid v1")]["teams_involved"] == ["crm", "payments"]
    assert not any(c["bottleneck"] for c in changes)  # two teams at most, minutes not weeks
    last5 = await coordinator.acli("autonomy", "changes", "--last", "5")
    assert last5.returncode == 0 and last5.stdout.count("teams involved:") == 5


def _file(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"f{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(text)
    return str(path)


def _agent_change(audit: list[pb.AuditEntry], fingerprint: str) -> int:
    return next(
        e.at_unix_ms
        for e in audit
        if e.action == "agent.register"
        and fingerprint in json.loads(e.details_json).get("fingerprints", {}).values()
    )


def _crm_agent(audit: list[pb.AuditEntry]) -> str:
    return next(e.object for e in audit if e.action == "agent.register" and e.owner_team == "crm")


async def test_the_report_still_covers_runs_that_retention_deleted(tmp_path: Path):
    """Retention deletes a finished run; its digest (no payloads) stays as long as the audit log,
    so the time to deploy and the failure rate are still those of the runs."""
    from contracts.errors import NotFoundError
    from tests.support.agent import TestAgent
    from tests.support.coordinator import CoordinatorProcess

    coordinator = CoordinatorProcess.start(tmp_path / "home", "--retention", "1s")
    agent = None
    try:
        payments = await coordinator.create_team("payments")
        assert (await coordinator.register_contract(payments, CHARGE_2)).registered
        checkout = CHECKOUT_2.replace("shipping/checkout", "payments/checkout")
        assert (await coordinator.register_workflow(payments, checkout)).registered

        async def charge(call: Call) -> dict:
            if call.input["order_id"] == "bad":
                raise TaskFailed("Declined", "no", retryable=False)
            return {"ref": "r"}

        agent = TestAgent(coordinator.address, payments, "payments", {"payments/charge@2": charge})
        await agent.start()
        ok = await _run(coordinator, payments, "payments/checkout", "o-1")
        failed = await _run(coordinator, payments, "payments/checkout", "bad")
        assert (ok.status, failed.status) == (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED)
        async with coordinator.client(payments) as client:
            for run in (ok, failed):  # wait for retention to delete them (the event waited for)
                deadline = time.monotonic() + 60  # an upper bound on a loaded machine, not a timing
                while True:
                    try:
                        await client.coordinator.GetRun(pb.GetRunRequest(run_id=run.run_id))
                    except NotFoundError:
                        break
                    assert time.monotonic() < deadline, f"retention never deleted {run.run_id}"
                    await asyncio.sleep(0.1)
            audit = list((await client.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries)
        registered = next(e.at_unix_ms for e in audit if e.object == "payments/checkout v1")
        report = json.loads((await coordinator.acli("autonomy", "report", "--json", token=payments)).stdout)
        [team] = report["teams"]
        workflow_lead = ok.finished_unix_ms - registered
        contract_lead = ok.finished_unix_ms - next(
            e.at_unix_ms for e in audit if e.object == "payments/charge@2.0.0"
        )
        assert team["changes"]["workflow_versions"] == 1
        # The contract version, the workflow version and the agent's registration: each used by
        # both runs, one of which failed.
        assert (
            team["dora"]["changes"],
            team["dora"]["changes_with_runs"],
            team["dora"]["failed_changes"],
        ) == (3, 3, 3)
        agent_lead = ok.finished_unix_ms - next(e.at_unix_ms for e in audit if e.action == "agent.register")
        assert team["contracts"]["payments/charge"]["lead_time"]["ms"] == int(
            statistics.median([contract_lead, agent_lead])
        )
        changes = json.loads((await coordinator.acli("autonomy", "changes", "--json", token=payments)).stdout)
        [workflow_change] = [c for c in changes if c["kind"] == "workflow"]
        assert workflow_change["time_to_production"]["ms"] == workflow_lead
    finally:
        if agent is not None:
            await agent.stop()
        coordinator.kill9()
