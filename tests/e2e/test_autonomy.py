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


def _agent_config(tmp_path: Path, coordinator, token: str, prefix: str) -> Path:
    """A real agent's config: the shell engine answering ``{ref: PREFIX-ORDER}``."""
    import yaml

    code = f"import json, sys; print(json.dumps({{'ref': '{prefix}-' + json.load(sys.stdin)['order_id']}}))"
    path = tmp_path / f"agent-{prefix}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "team": "payments",
                "coordinator": coordinator.address,
                "token": token,
                "implements": {
                    "payments/charge@2": {"engine": "shell", "with": {"command": ["python3", "-c", code]}}
                },
            }
        )
    )
    return path


async def test_real_agents_restarting_or_replicated_are_no_binding_change_a_new_config_is(
    coordinator, tmp_path: Path
):
    """``accord agent start`` processes with ids as the default makes them (host-pid): a restart
    with the same config and a second replica register again, as new agents, but change nothing
    that serves the contract; a changed command does, once. The report over time (--by day) adds
    up to the same."""
    import socket

    from team_agent.testing import AgentProcess

    payments = await coordinator.create_team("payments")
    assert (await coordinator.register_contract(payments, CHARGE_2)).registered
    checkout = CHECKOUT_2.replace("shipping/checkout", "payments/checkout")
    assert (await coordinator.register_workflow(payments, checkout)).registered
    v1, v2 = (_agent_config(tmp_path, coordinator, payments, p) for p in ("v1", "v2"))
    host = socket.gethostname()
    agents: list[AgentProcess] = []

    async def start(config: Path, agent_id: str) -> AgentProcess:
        agent = AgentProcess(config, workdir=tmp_path, agent_id=agent_id).start()
        agents.append(agent)
        await agent.wait_for_log("registered 1 binding(s)", timeout=60)
        return agent

    try:
        first = await start(v1, f"{host}-4101")
        r1 = await _run(coordinator, payments, "payments/checkout", "o-1")
        assert first.stop() == 0, first.log
        restarted = await start(v1, f"{host}-4102")  # the same config, a new process
        replica = await start(v1, f"{host}-b-5001")  # a second replica beside it
        r2 = await _run(coordinator, payments, "payments/checkout", "o-2")
        assert json.loads(r2.output_json) == {"ref": "v1-o-2"}
        assert restarted.stop() == 0 and replica.stop() == 0
        await start(v2, f"{host}-4103")  # a new command: what serves the contract changed
        r3 = await _run(coordinator, payments, "payments/checkout", "o-3")
        assert json.loads(r3.output_json) == {"ref": "v2-o-3"}
    finally:
        for agent in agents:
            if agent.running:
                agent.kill()
    assert r1.status == pb.RUN_STATUS_SUCCEEDED

    async with coordinator.client() as admin:
        audit = list((await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries)
    registered = [e for e in audit if e.action == "agent.register"]
    assert [e.object for e in registered] == [
        f"{host}-4101",
        f"{host}-4102",
        f"{host}-b-5001",
        f"{host}-4103",
    ]
    fingerprints = [json.loads(e.details_json)["fingerprints"]["payments/charge@2"] for e in registered]
    assert fingerprints[0] == fingerprints[1] == fingerprints[2] != fingerprints[3]

    report = json.loads((await coordinator.acli("autonomy", "report", "--json", token=payments)).stdout)
    [team] = report["teams"]
    assert team["changes"]["agent_binding_changes"] == 2  # first served, then the new command
    assert team["contracts"]["payments/charge"]["changes"] == 3  # 2.0.0 and the two binding changes
    changes = json.loads((await coordinator.acli("autonomy", "changes", "--json", token=payments)).stdout)
    agent_changes = [c for c in changes if c["kind"] == "agent"]
    assert [(c["change"], c["bindings"]) for c in agent_changes] == [
        (f"{host}-4103", ["payments/charge@2"]),
        (f"{host}-4101", ["payments/charge@2"]),
    ]
    assert agent_changes[0]["time_to_production"]["ms"] == r3.finished_unix_ms - registered[3].at_unix_ms
    assert agent_changes[1]["time_to_production"]["ms"] == r1.finished_unix_ms - registered[0].at_unix_ms

    # over time, by day: the periods cover the report's window and add up to its figures
    daily = json.loads(
        (
            await coordinator.acli(
                "autonomy", "report", "--json", "--since", "3d", "--by", "day", token=payments
            )
        ).stdout
    )
    assert daily["by"] == "day" and 3 <= len(daily["periods"]) <= 4
    assert daily["periods"][0]["start_ms"] == daily["since_ms"]
    assert daily["periods"][-1]["end_ms"] == daily["until_ms"]
    [team] = daily["teams"]
    for key in ("contract_versions", "workflow_versions", "agent_binding_changes"):
        assert sum(p["changes"][key] for p in team["over_time"]) == team["changes"][key]
    today = team["over_time"][-1]
    assert today["period"] == time.strftime("%Y-%m-%d", time.gmtime(daily["until_ms"] / 1000))
    text = await coordinator.acli("autonomy", "report", "--by", "day", token=payments)
    assert "  by day:" in text.stdout and today["period"] in text.stdout
    bad = await coordinator.acli("autonomy", "report", "--by", "fortnight", token=payments)
    assert bad.returncode == 2 and "--by must be day, week or month" in bad.stderr
    too_many = await coordinator.acli("autonomy", "report", "--since", "500d", "--by", "day", token=payments)
    assert too_many.returncode == 2 and "more than 400" in too_many.stderr


async def test_a_period_holding_more_rows_than_a_report_reads_says_what_it_covers(tmp_path: Path):
    """``--autonomy-rows 3``: the report reads the newest 3 audit entries, and says that its
    figures cover only from after the oldest of them, in the JSON and the CLI's text."""
    from tests.support.coordinator import CoordinatorProcess

    coordinator = CoordinatorProcess.start(tmp_path / "home", "--autonomy-rows", "3")
    try:
        payments = await coordinator.create_team("payments")
        for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
            assert (
                await coordinator.register_contract(payments, CHARGE_1.replace("1.0.0", version))
            ).registered
        async with coordinator.client() as admin:
            audit = list((await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries)
        assert len(audit) > 3
        covered = sorted(e.at_unix_ms for e in audit)[-3] + 1
        result = await coordinator.acli("autonomy", "report", "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        cut = report["truncated"]
        assert cut["covered_from_ms"] == covered == report["since_ms"]
        assert cut["requested_since_ms"] < covered and "3 audit entries" in cut["why"]
        assert "covers" in result.stderr and "only" in result.stderr  # a warning beside the JSON
        [team] = report["teams"]
        # only what was read whole: the versions registered at or after covered_from_ms
        expected = sum(1 for e in audit if e.action == "contract.register" and e.at_unix_ms >= covered)
        assert team["changes"]["contract_versions"] == expected < 4
        assert report["periods"][0]["start_ms"] == covered
        text = await coordinator.acli("autonomy", "report")
        assert "TRUNCATED: covers only from" in text.stdout and "3 audit entries" in text.stdout
        # a period the limit does not cut says nothing
        short = json.loads((await coordinator.acli("autonomy", "report", "--json", "--since", "1ms")).stdout)
        assert short["truncated"] is None
    finally:
        coordinator.kill9()
