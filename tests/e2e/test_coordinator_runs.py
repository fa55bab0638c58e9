"""End-to-end runs: the real coordinator subprocess, test agents over the real gRPC API."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call, TaskFailed
from tests.support.scenario import contract, start_run, step, wait_run
from tests.support.wait import wait_until

CROSS_TEAM_WORKFLOW = """
workflow: shipping/order-to-cash
input:
  type: object
  required: [order_id, amount_cents]
  properties: {order_id: {type: string}, amount_cents: {type: integer}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}", amount_cents: "${input.amount_cents}"}
  reserve:
    contract: warehouse/reserve@^1
    input: {order_id: "${input.order_id}"}
  ship:
    contract: shipping/ship@^1
    input:
      order_id: "${input.order_id}"
      payment_ref: "${steps.charge.output.payment_ref}"
      reservation: "${steps.reserve.output.reservation}"
output:
  shipment_id: "${steps.ship.output.shipment_id}"
  payment_ref: "${steps.charge.output.payment_ref}"
"""


async def _three_teams(coordinator):
    tokens = {team: await coordinator.create_team(team) for team in ("payments", "warehouse", "shipping")}
    await coordinator.register_contract(
        tokens["payments"],
        contract(
            "payments/charge",
            input_props="{order_id: {type: string}, amount_cents: {type: integer}}",
            input_required="[order_id, amount_cents]",
            output_props="{payment_ref: {type: string}}",
            output_required="[payment_ref]",
        ),
    )
    await coordinator.register_contract(
        tokens["warehouse"],
        contract(
            "warehouse/reserve", output_props="{reservation: {type: string}}", output_required="[reservation]"
        ),
    )
    await coordinator.register_contract(
        tokens["shipping"],
        contract(
            "shipping/ship",
            input_props="{order_id: {type: string}, payment_ref: {type: string}, reservation: {type: string}}",
            input_required="[order_id, payment_ref, reservation]",
            output_props="{shipment_id: {type: string}}",
            output_required="[shipment_id]",
        ),
    )
    await coordinator.register_workflow(tokens["shipping"], CROSS_TEAM_WORKFLOW)
    return tokens


async def test_cross_team_run_of_three_teams_with_parallel_steps(coordinator, test_agent):
    tokens = await _three_teams(coordinator)
    entered = {"charge": asyncio.Event(), "reserve": asyncio.Event()}

    def meets(name, other, output):
        """Returns only once the other independent step has started too: had the coordinator
        run them one after the other, the first would wait here until the test times out."""

        async def handler(call: Call):
            entered[name].set()
            await asyncio.wait_for(entered[other].wait(), 30)
            return output(call)

        return handler

    await test_agent(
        tokens["payments"],
        "payments",
        {
            "payments/charge@1": meets(
                "charge", "reserve", lambda c: {"payment_ref": "pay-" + c.input["order_id"]}
            )
        },
    )
    await test_agent(
        tokens["warehouse"],
        "warehouse",
        {"warehouse/reserve@1": meets("reserve", "charge", lambda c: {"reservation": "res-1"})},
    )
    shipping = await test_agent(
        tokens["shipping"],
        "shipping",
        {"shipping/ship@1": lambda c: _ship(c)},
    )

    async with coordinator.client(tokens["shipping"]) as client:
        started = await start_run(client, "shipping/order-to-cash", {"order_id": "o-1", "amount_cents": 500})
        run = await wait_run(client, started.run.run_id)

    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {"shipment_id": "ship-o-1-pay-o-1-res-1", "payment_ref": "pay-o-1"}
    assert dict(run.pinned_versions) == {
        "payments/charge": "1.0.0",
        "warehouse/reserve": "1.0.0",
        "shipping/ship": "1.0.0",
    }
    # charge and reserve are independent: they ran at the same time (each waited for the other).
    assert all(event.is_set() for event in entered.values())
    # ship got both upstream outputs and a stable idempotency key.
    [ship_record] = shipping.records
    assert ship_record.key == f"{run.run_id}:ship"
    assert {s.id: s.team for s in run.steps} == {
        "charge": "payments",
        "reserve": "warehouse",
        "ship": "shipping",
    }


async def _ship(call: Call):
    return {
        "shipment_id": f"ship-{call.input['order_id']}-{call.input['payment_ref']}-{call.input['reservation']}"
    }


async def test_another_team_sees_only_its_own_step_payloads(coordinator, test_agent):
    tokens = await _three_teams(coordinator)
    for team, key, out in (
        ("payments", "payments/charge@1", {"payment_ref": "p"}),
        ("warehouse", "warehouse/reserve@1", {"reservation": "r"}),
        ("shipping", "shipping/ship@1", {"shipment_id": "s"}),
    ):
        await test_agent(tokens[team], team, {key: _const(out)})
    async with coordinator.client(tokens["shipping"]) as client:
        started = await start_run(client, "shipping/order-to-cash", {"order_id": "o-2", "amount_cents": 1})
        await wait_run(client, started.run.run_id)
    async with coordinator.client(tokens["payments"]) as client:
        run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=started.run.run_id))).run
    assert run.payload_hidden and run.input_json == ""
    assert step(run, "charge").output_json == json.dumps({"payment_ref": "p"}, separators=(",", ":"))
    assert step(run, "reserve").payload_hidden and step(run, "reserve").output_json == ""


def _const(output):
    async def handler(call: Call):
        return output

    return handler


RETRY_CONTRACT_EXTRA = "retry: {max_attempts: 3, initial_backoff: 50ms, non_retryable: [CardDeclined]}\n"

SINGLE_STEP_WORKFLOW = """
workflow: payments/single
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  work:
    contract: payments/work@^1
    input: {order_id: "${input.order_id}"}
    %s
output: {ref: "${steps.work.output.ref}"}
"""


async def _single(coordinator, extra: str = RETRY_CONTRACT_EXTRA, step_extra: str = "") -> str:
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/work", extra=extra))
    await coordinator.register_workflow(token, SINGLE_STEP_WORKFLOW % step_extra)
    return token


async def test_a_report_sent_again_is_accepted_again_and_no_other_is(coordinator):
    """An agent whose answer was lost sends its result again with the same request id: accepted
    again (the attempt records the report that ended it; no request row is written for it).
    Another report on the ended attempt is not accepted."""
    token = await _single(coordinator)
    binding = agent_pb.Binding(contract="payments/work", major=1, engine="python")
    async with coordinator.client(token) as client:
        await client.agent.RegisterAgent(
            agent_pb.RegisterAgentRequest(agent_id="agent-1", bindings=[binding], concurrency=1)
        )
        started = await start_run(client, "payments/single", {"order_id": "o"})
        task = (
            await client.agent.PollTask(agent_pb.PollTaskRequest(agent_id="agent-1", wait_ms=30_000))
        ).task
        complete = agent_pb.CompleteTaskRequest(
            agent_id="agent-1", attempt_id=task.attempt_id, output_json='{"ref": "r"}', request_id="done-1"
        )
        assert (await client.agent.CompleteTask(complete)).accepted
        assert (await client.agent.CompleteTask(complete)).accepted
        complete.request_id = "done-2"
        assert not (await client.agent.CompleteTask(complete)).accepted
        failed = agent_pb.FailTaskRequest(
            agent_id="agent-1",
            attempt_id=task.attempt_id,
            error=common_pb.TaskError(type="Late", message="m"),
            request_id="done-1",
        )
        assert not (await client.agent.FailTask(failed)).accepted
        run = await wait_run(client, started.run.run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    with sqlite3.connect(coordinator.db) as db:
        rows = db.execute(
            "SELECT scope, request_id FROM requests WHERE scope IN ('complete', 'fail')"
        ).fetchall()
    assert rows == []


async def test_retry_then_success(coordinator, test_agent):
    token = await _single(coordinator)

    async def flaky(call: Call):
        if call.attempt == 1:
            raise TaskFailed("EngineError", "the engine hiccupped")
        return {"ref": f"ok-{call.attempt}"}

    agent = await test_agent(token, "payments", {"payments/work@1": flaky})
    async with coordinator.client(token) as client:
        started = await start_run(client, "payments/single", {"order_id": "o"})
        run = await wait_run(client, started.run.run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    assert json.loads(run.output_json) == {"ref": "ok-2"}
    attempts = step(run, "work").attempts
    assert [a.status for a in attempts] == [pb.ATTEMPT_STATUS_FAILED, pb.ATTEMPT_STATUS_SUCCEEDED]
    assert attempts[0].error.type == "EngineError"
    # Every attempt carried the same idempotency key.
    assert {r.key for r in agent.records} == {f"{run.run_id}:work"}


async def test_non_retryable_failure_by_type_and_by_flag(coordinator, test_agent):
    token = await _single(coordinator)

    async def declined(call: Call):
        if call.input["order_id"] == "by-type":
            raise TaskFailed("CardDeclined", "the card was declined")
        raise TaskFailed("BadRequest", "never retry this", retryable=False)

    await test_agent(token, "payments", {"payments/work@1": declined})
    async with coordinator.client(token) as client:
        for order in ("by-type", "by-flag"):
            started = await start_run(client, "payments/single", {"order_id": order})
            run = await wait_run(client, started.run.run_id)
            assert run.status == pb.RUN_STATUS_FAILED
            assert len(step(run, "work").attempts) == 1
            assert "not retryable" in run.error.message
    assert run.error.type == "BadRequest"


async def test_gives_up_after_max_attempts_clamped_to_the_contract(coordinator, test_agent):
    # The team default (sent by its agent) asks for 10 attempts; the contract allows 3.
    token = await _single(coordinator, step_extra="retry: {initial_backoff: 10ms}")

    async def always(call: Call):
        raise TaskFailed("EngineError", f"failure {call.attempt}")

    team_retry = common_pb.RetryPolicy(max_attempts=10, initial_backoff_ms=10)
    await test_agent(token, "payments", {"payments/work@1": always}, team_retry=team_retry)
    async with coordinator.client(token) as client:
        started = await start_run(client, "payments/single", {"order_id": "o"})
        run = await wait_run(client, started.run.run_id)
    assert run.status == pb.RUN_STATUS_FAILED
    assert len(step(run, "work").attempts) == 3
    assert "gave up after 3 attempts" in run.error.message


async def test_heartbeat_timeout_then_new_attempt(coordinator, test_agent):
    # 2 s, not less: the second attempt, heartbeating every 0.1 s from this (possibly starved)
    # test process, must not time out too on a loaded machine.
    token = await _single(
        coordinator, extra="retry: {max_attempts: 3, initial_backoff: 10ms}\ntimeouts: {heartbeat: 2s}\n"
    )

    async def hangs_first(call: Call):
        if call.attempt == 1:
            call.stop_heartbeats()
            await asyncio.sleep(3600)  # hung for good (cancelled when the agent stops)
        return {"ref": f"attempt-{call.attempt}"}

    await test_agent(token, "payments", {"payments/work@1": hangs_first}, heartbeat_s=0.1)
    async with coordinator.client(token) as client:
        started = await start_run(client, "payments/single", {"order_id": "o"})
        run = await wait_run(client, started.run.run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    attempts = step(run, "work").attempts
    assert attempts[0].status == pb.ATTEMPT_STATUS_TIMED_OUT
    assert attempts[0].error.type == "HeartbeatTimeout"
    assert json.loads(run.output_json) == {"ref": "attempt-2"}


async def test_start_to_close_timeout_and_late_completion_is_ignored(coordinator, test_agent):
    # 2 s, not less: the second attempt must finish within it on a loaded machine too.
    token = await _single(coordinator, extra="retry: {max_attempts: 2, initial_backoff: 10ms}\ntimeout: 2s\n")
    second_started = asyncio.Event()

    async def slow_first(call: Call):
        if call.attempt == 1:
            # Heartbeats keep flowing; the deadline still passes. It completes late, once the
            # second attempt has started, unless a heartbeat tells it first that it lost its lease.
            await asyncio.wait_for(second_started.wait(), 60)
        else:
            second_started.set()
        return {"ref": f"attempt-{call.attempt}"}

    agent = await test_agent(token, "payments", {"payments/work@1": slow_first}, heartbeat_s=0.1)
    async with coordinator.client(token) as client:
        started = await start_run(client, "payments/single", {"order_id": "o"})
        run = await wait_run(client, started.run.run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    attempts = step(run, "work").attempts
    assert attempts[0].status == pb.ATTEMPT_STATUS_TIMED_OUT
    assert attempts[0].error.type == "StartToCloseTimeout"
    assert json.loads(run.output_json) == {"ref": "attempt-2"}
    # The first attempt learnt it lost its lease (or its late completion was refused).
    first = next(r for r in agent.records if r.attempt == 1)
    await wait_until(
        lambda: first.outcome == "lost" or first.accepted is False,
        f"the first attempt neither lost its lease nor was refused: {first}",
    )


async def test_cancel_reaches_the_in_flight_task_through_heartbeat(coordinator, test_agent):
    token = await _single(coordinator)
    started_event = asyncio.Event()

    async def forever(call: Call):
        started_event.set()
        await asyncio.sleep(30)
        return {"ref": "never"}

    agent = await test_agent(token, "payments", {"payments/work@1": forever}, heartbeat_s=0.05)
    async with coordinator.client(token) as client:
        started = await start_run(client, "payments/single", {"order_id": "o"})
        await asyncio.wait_for(started_event.wait(), 5)
        cancelled = await client.coordinator.CancelRun(
            pb.CancelRunRequest(run_id=started.run.run_id, reason="test")
        )
        assert cancelled.run.status == pb.RUN_STATUS_CANCELLED
        await wait_until(lambda: agent.cancelled, "the cancel never reached the agent's heartbeat")
        assert agent.cancelled == [f"{started.run.run_id}:work:1"]
        run = await wait_run(client, started.run.run_id)
    assert step(run, "work").attempts[0].status == pb.ATTEMPT_STATUS_CANCELLED
    assert "cancelled by payments: test" in run.error.message


async def test_idempotent_start(coordinator, test_agent):
    token = await _single(coordinator)
    await test_agent(token, "payments", {"payments/work@1": _const({"ref": "x"})})
    async with coordinator.client(token) as client:
        first, second = await asyncio.gather(
            start_run(client, "payments/single", {"order_id": "o"}, key="k-1"),
            start_run(client, "payments/single", {"order_id": "o"}, key="k-1"),
        )
        third = await start_run(client, "payments/single", {"order_id": "o"}, key="k-1")
        other = await start_run(client, "payments/single", {"order_id": "o"}, key="k-2")
    assert first.run.run_id == second.run.run_id == third.run.run_id
    assert sorted([first.created, second.created]) == [False, True]
    assert third.created is False
    assert other.run.run_id != first.run.run_id and other.created


FAN_OUT_WORKFLOW = """
workflow: crm/fan
input: {type: object, required: [skus], properties: {skus: {type: array, items: {type: string}}}}
steps:
  prepare:
    contract: crm/work@^1
    input: {order_id: "prep"}
  notify:
    contract: crm/work@^1
    for_each: "${input.skus}"
    concurrency: 2
    input: {order_id: "${item}"}
  never:
    contract: crm/work@^1
    when: "${steps.prepare.output.skip_me}"
    input: {order_id: "x"}
output:
  refs: "${steps.notify.output}"
"""


async def test_fan_out_with_concurrency_limit_and_when(coordinator, test_agent):
    token = await coordinator.create_team("crm")
    await coordinator.register_contract(
        token,
        contract("crm/work", output_props="{ref: {type: string}, skip_me: {type: boolean}}"),
    )
    await coordinator.register_workflow(token, FAN_OUT_WORKFLOW)
    active = 0
    peak = 0
    entered = 0
    two_in = asyncio.Event()

    async def handler(call: Call):
        nonlocal active, peak, entered
        if call.input["order_id"] == "prep":
            return {"ref": "prep", "skip_me": False}
        active += 1
        peak = max(peak, active)
        entered += 1
        if entered == 2:
            two_in.set()
        if entered <= 2:
            # The first two items wait for each other: the limit of 2 is used, however late
            # the second dispatch comes on a loaded machine.
            await asyncio.wait_for(two_in.wait(), 30)
        await asyncio.sleep(0.15)  # time for a third item to show up, were the limit not kept
        active -= 1
        return {"ref": "done-" + call.input["order_id"]}

    await test_agent(token, "crm", {"crm/work@1": handler}, concurrency=8)
    skus = [f"s{i}" for i in range(6)]
    async with coordinator.client(token) as client:
        started = await start_run(client, "crm/fan", {"skus": skus})
        run = await wait_run(client, started.run.run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert peak == 2
    assert json.loads(run.output_json) == {"refs": [{"ref": f"done-{s}"} for s in skus]}
    ids = {s.id for s in run.steps}
    assert {f"notify[{i}]" for i in range(6)} <= ids
    assert step(run, "notify[3]").idempotency_key == f"{run.run_id}:notify[3]"
    assert step(run, "never").status == pb.STEP_STATUS_SKIPPED


async def test_runs_show_explains_why_a_step_waits(coordinator, test_agent):
    token = await _single(coordinator)
    async with coordinator.client(token) as client:
        first = await start_run(client, "payments/single", {"order_id": "a"})
        waiting = step(
            (await client.coordinator.GetRun(pb.GetRunRequest(run_id=first.run.run_id))).run, "work"
        )
        assert waiting.status == pb.STEP_STATUS_SCHEDULED
        assert waiting.waiting_reason.startswith("no agent of team payments is serving payments/work@1")

        release = asyncio.Event()
        took_first = asyncio.Event()

        async def blocks(call: Call):
            took_first.set()
            await release.wait()
            return {"ref": call.input["order_id"]}

        await test_agent(token, "payments", {"payments/work@1": blocks}, concurrency=1)
        await asyncio.wait_for(took_first.wait(), 30)  # the agent took the first run's task
        second = await start_run(client, "payments/single", {"order_id": "b"})

        async def queued_reason() -> str:
            run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=second.run.run_id))).run
            reason = step(run, "work").waiting_reason
            return reason if "is busy" in reason else ""

        reason = await wait_until(queued_reason, "the second run's step never said why it waits")
        assert "1 agent of team payments serving payments/work@1 is busy" in reason, reason
        shown = await coordinator.acli("runs", "show", second.run.run_id, token=token)
        assert "waiting: queued for" in shown.stdout
        release.set()
        assert (await wait_run(client, second.run.run_id)).status == pb.RUN_STATUS_SUCCEEDED
