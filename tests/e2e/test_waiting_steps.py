"""Waiting steps (``wait_for``) end to end: the real coordinator subprocess, answers through the
real CLI and gRPC API. An approval granted, rejected, timed out (each on_timeout), and answered
after a kill -9 and restart of the coordinator; a team the step does not name refused; a signal
whose payload breaks its schema refused, a good one carried on as the step's output."""

from __future__ import annotations

import contextlib
import json

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call
from tests.support.scenario import contract, start_run, step, wait_run
from tests.support.wait import wait_until


def _workflow(name: str = "ship-order", approval: str = "{by: [finance]}") -> str:
    return f"""
workflow: shipping/{name}
input: {{type: object, required: [order_id], properties: {{order_id: {{type: string}}}}}}
steps:
  approve:
    wait_for:
      approval: {approval}
    input: {{order_id: "${{input.order_id}}"}}
  pack:
    contract: shipping/pack@^1
    when: "${{steps.approve.output.approved}}"
    input: {{order_id: "${{input.order_id}}"}}
output:
  approved: "${{steps.approve.output.approved}}"
  by: "${{steps.approve.output.by}}"
  comment: "${{steps.approve.output.comment}}"
  ref: "${{steps.pack.output.ref}}"
"""


SIGNAL_WORKFLOW = """
workflow: shipping/await-carrier
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  ack:
    wait_for:
      signal:
        name: carrier-ack
        by: [carrier]
        schema: {type: object, required: [tracking], properties: {tracking: {type: string, minLength: 3}}}
  pack:
    contract: shipping/pack@^1
    input: {order_id: "${steps.ack.output.tracking}"}
output: {ref: "${steps.pack.output.ref}"}
"""


async def _world(coordinator, test_agent, *workflows: str) -> dict[str, str]:
    tokens = {
        team: await coordinator.create_team(team) for team in ("shipping", "finance", "carrier", "sales")
    }
    await coordinator.register_contract(tokens["shipping"], contract("shipping/pack"))
    for text in workflows:
        await coordinator.register_workflow(tokens["shipping"], text)

    async def pack(call: Call):
        return {"ref": f"packed-{call.input['order_id']}"}

    await test_agent(tokens["shipping"], "shipping", {"shipping/pack@1": pack})
    return tokens


async def _waiting(coordinator, token: str, run_id: str, step_id: str) -> pb.Step:
    async with coordinator.client(token) as client:

        async def waiting():
            run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
            found = step(run, step_id)
            return found if found.waiting_reason.startswith("waiting for") else None

        return await wait_until(waiting, f"step {step_id} of run {run_id} waiting")


async def _start(coordinator, token: str, workflow: str, order: str) -> str:
    async with coordinator.client(token) as client:
        return (await start_run(client, workflow, {"order_id": order})).run.run_id


async def _finished(coordinator, token: str, run_id: str) -> pb.Run:
    async with coordinator.client(token) as client:
        return await wait_run(client, run_id)


async def test_approval_granted_by_a_named_team_rejected_and_a_stranger_refused(coordinator, test_agent):
    tokens = await _world(coordinator, test_agent, _workflow())
    granted = await _start(coordinator, tokens["shipping"], "shipping/ship-order", "o-1")
    waiting = await _waiting(coordinator, tokens["finance"], granted, "approve")
    assert waiting.waiting_for == "approval by finance"
    assert json.loads(waiting.input_json) == {"order_id": "o-1"}  # what finance decides on
    assert waiting.status == pb.STEP_STATUS_RUNNING
    shown = await coordinator.acli("runs", "show", granted, token=tokens["finance"])
    assert "waiting for approval by finance since" in shown.stdout, shown

    # A team the step does not name may not answer (nor see the run).
    refused = await coordinator.acli("runs", "approve", granted, "approve", token=tokens["sales"])
    assert refused.returncode == 3, refused
    # It is told only that it takes no part: the run's steps are none of its business.
    assert "team sales takes no part" in refused.stderr and "finance" not in refused.stderr, refused.stderr
    # A signal is not an approval's answer.
    wrong = await coordinator.acli(
        "runs", "signal", granted, "approve", "--data", "{}", token=tokens["finance"]
    )
    assert wrong.returncode != 0 and "approve or reject" in wrong.stderr, wrong

    ok = await coordinator.acli(
        "runs", "approve", granted, "approve", "--comment", "within budget", token=tokens["finance"]
    )
    assert ok.returncode == 0, ok
    run = await _finished(coordinator, tokens["shipping"], granted)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {
        "approved": True,
        "by": "finance",
        "comment": "within budget",
        "ref": "packed-o-1",
    }
    # The same answer again (a client's retry) is fine; a different one is refused.
    again = await coordinator.acli(
        "runs", "approve", granted, "approve", "--comment", "within budget", token=tokens["finance"]
    )
    assert again.returncode == 0, again
    late = await coordinator.acli("runs", "reject", granted, "approve", token=tokens["finance"])
    assert late.returncode != 0 and "already answered" in late.stderr, late

    rejected = await _start(coordinator, tokens["shipping"], "shipping/ship-order", "o-2")
    await _waiting(coordinator, tokens["shipping"], rejected, "approve")
    # The workflow's owner may answer too.
    no = await coordinator.acli(
        "runs", "reject", rejected, "approve", "--comment", "no", token=tokens["shipping"]
    )
    assert no.returncode == 0, no
    run = await _finished(coordinator, tokens["shipping"], rejected)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    output = json.loads(run.output_json)
    assert output["approved"] is False and output["by"] == "shipping" and output.get("ref") is None, output
    assert step(run, "pack").status == pb.STEP_STATUS_SKIPPED

    async with coordinator.client() as admin:
        entries = (await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest(team="shipping"))).entries
    actions = {(e.action, e.actor, e.object) for e in entries}
    assert ("run.approve", "finance", f"{granted}/approve") in actions
    assert ("run.reject", "shipping", f"{rejected}/approve") in actions


async def test_approval_timeouts_apply_on_timeout(coordinator, test_agent):
    tokens = await _world(
        coordinator,
        test_agent,
        _workflow("reject-late", "{by: [finance], timeout: 300ms}"),
        _workflow("approve-late", "{by: [finance], timeout: 300ms, on_timeout: approve}"),
        _workflow("fail-late", "{by: [finance], timeout: 300ms, on_timeout: fail}"),
    )
    runs = {
        name: await _start(coordinator, tokens["shipping"], f"shipping/{name}", name)
        for name in ("reject-late", "approve-late", "fail-late")
    }
    rejected = await _finished(coordinator, tokens["shipping"], runs["reject-late"])
    assert rejected.status == pb.RUN_STATUS_SUCCEEDED, rejected
    output = json.loads(rejected.output_json)
    assert output["approved"] is False and output["by"] == ""
    assert output["comment"] == "no answer within 300ms: rejected by its on_timeout"

    approved = await _finished(coordinator, tokens["shipping"], runs["approve-late"])
    assert approved.status == pb.RUN_STATUS_SUCCEEDED, approved
    assert json.loads(approved.output_json)["ref"] == "packed-approve-late", approved

    failed = await _finished(coordinator, tokens["shipping"], runs["fail-late"])
    assert failed.status == pb.RUN_STATUS_FAILED
    assert failed.error.type == "WaitTimeout"
    assert failed.error.message == "step approve: no approval by finance within 300ms"

    late = await coordinator.acli("runs", "approve", runs["fail-late"], "approve", token=tokens["finance"])
    assert late.returncode != 0 and "the run is failed" in late.stderr, late


async def test_an_approval_waits_across_a_kill_9_and_its_timer_too(coordinator, test_agent):
    tokens = await _world(
        coordinator,
        test_agent,
        _workflow(),
        _workflow("timed", "{by: [finance], timeout: 4s, on_timeout: approve}"),
    )
    answered = await _start(coordinator, tokens["shipping"], "shipping/ship-order", "o-1")
    timed = await _start(coordinator, tokens["shipping"], "shipping/timed", "o-2")
    await _waiting(coordinator, tokens["finance"], answered, "approve")
    timed_step = await _waiting(coordinator, tokens["finance"], timed, "approve")
    coordinator.restart()  # kill -9, then start again on the same database

    shown = await coordinator.acli("runs", "show", answered, "--json", token=tokens["finance"])
    approve = next(s for s in json.loads(shown.stdout)["steps"] if s["id"] == "approve")
    assert approve["status"] == "running" and approve["waiting_reason"].startswith(
        "waiting for approval by finance"
    )
    ok = await coordinator.acli("runs", "approve", answered, "approve", token=tokens["finance"])
    assert ok.returncode == 0, ok
    run = await _finished(coordinator, tokens["shipping"], answered)
    assert run.status == pb.RUN_STATUS_SUCCEEDED and json.loads(run.output_json)["ref"] == "packed-o-1", run

    run = await _finished(coordinator, tokens["shipping"], timed)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    approve_step = step(run, "approve")
    assert json.loads(approve_step.output_json)["approved"] is True
    # It fired from the restarted coordinator, not before it was due.
    assert approve_step.finished_unix_ms >= timed_step.started_unix_ms + 4000


async def test_signal_payload_is_checked_against_its_schema(coordinator, test_agent):
    tokens = await _world(coordinator, test_agent, SIGNAL_WORKFLOW)
    run_id = await _start(coordinator, tokens["shipping"], "shipping/await-carrier", "o-1")
    waiting = await _waiting(coordinator, tokens["carrier"], run_id, "ack")
    assert waiting.waiting_for == "signal carrier-ack from carrier"

    bad = await coordinator.acli(
        "runs", "signal", run_id, "ack", "--data", '{"tracking": 12}', token=tokens["carrier"]
    )
    assert bad.returncode == 2, bad
    assert "does not match its schema" in bad.stderr and "tracking" in bad.stderr, bad.stderr
    approve = await coordinator.acli("runs", "approve", run_id, "ack", token=tokens["carrier"])
    assert approve.returncode != 0 and "accord runs signal" in approve.stderr, approve
    stranger = await coordinator.acli(
        "runs", "signal", run_id, "ack", "--data", '{"tracking": "t-1"}', token=tokens["finance"]
    )
    assert stranger.returncode == 3, stranger

    still = await _waiting(coordinator, tokens["carrier"], run_id, "ack")
    assert still.status == pb.STEP_STATUS_RUNNING
    good = await coordinator.acli(
        "runs", "signal", run_id, "ack", "--data", '{"tracking": "t-123"}', token=tokens["carrier"]
    )
    assert good.returncode == 0, good
    run = await _finished(coordinator, tokens["shipping"], run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {"ref": "packed-t-123"}


async def test_ui_offers_approve_and_reject_only_to_a_team_allowed_to(tmp_path):
    import httpx

    from tests.support.agent import TestAgent
    from tests.support.coordinator import CoordinatorProcess

    home = tmp_path / "ui-home"
    proc = CoordinatorProcess.start(home, "--ui", "127.0.0.1:0")
    try:
        ui = "http://" + json.loads((home / "coordinator.json").read_text())["ui"]
        tokens = {team: await proc.create_team(team) for team in ("shipping", "finance", "sales")}
        await proc.register_contract(tokens["shipping"], contract("shipping/pack"))
        await proc.register_workflow(tokens["shipping"], _workflow())

        async def pack(call: Call):
            return {"ref": f"packed-{call.input['order_id']}"}

        agent = TestAgent(proc.address, tokens["shipping"], "shipping", {"shipping/pack@1": pack})
        await agent.start()
        run_ids = [await _start(proc, tokens["shipping"], "shipping/ship-order", f"o-{n}") for n in (1, 2)]
        for run_id in run_ids:
            await _waiting(proc, tokens["shipping"], run_id, "approve")

        async def page(team: str, run_id: str) -> tuple[httpx.AsyncClient, str, dict]:
            client = httpx.AsyncClient(base_url=ui, timeout=20)
            session = await client.post(
                "/api/v1/session", json={"token": tokens[team]}, headers={"Origin": ui}
            )
            assert session.status_code == 200, session.text
            shown = await client.get(f"/api/v1/runs/{run_id}")
            return client, session.json()["csrf"], shown.json()

        client, csrf, shown = await page("sales", run_ids[0])
        async with contextlib.aclosing(client):
            assert "permissions" not in shown or shown.get("permissions", {}).get("answer") in (None, [])
            refused = await client.post(
                f"/api/v1/runs/{run_ids[0]}/steps/approve/answer",
                json={"approve": True},
                headers={"X-Accord-CSRF": csrf},
            )
            assert refused.status_code == 403, refused.text

        client, csrf, shown = await page("finance", run_ids[0])
        async with contextlib.aclosing(client):
            assert shown["permissions"]["answer"] == ["approve"]
            step_shown = next(s for s in shown["run"]["steps"] if s["id"] == "approve")
            assert step_shown["waiting_for"] == "approval by finance"
            node = next(n for n in shown["graph"]["nodes"] if n["id"] == "approve")
            assert node["wait_for"] == "approval by finance" and node["status"] == "running"
            for run_id, approve in zip(run_ids, (True, False), strict=True):
                answered = await client.post(
                    f"/api/v1/runs/{run_id}/steps/approve/answer",
                    json={"approve": approve, "comment": "from the UI"},
                    headers={"X-Accord-CSRF": csrf},
                )
                assert answered.status_code == 200, answered.text
        approved, rejected = [await _finished(proc, tokens["shipping"], run_id) for run_id in run_ids]
        assert json.loads(approved.output_json)["approved"] is True
        assert json.loads(rejected.output_json)["approved"] is False
        client, csrf, shown = await page("finance", run_ids[0])
        async with contextlib.aclosing(client):
            assert shown["permissions"]["answer"] == []  # answered: nothing left to offer
        await agent.stop()
    finally:
        proc.stop()
