"""The CLI against the real coordinator: how ``accord`` behaves for a user at the terminal
(messages on stderr, only the promised data on stdout, exit codes)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call, TaskFailed, TestAgent
from tests.support.coordinator import ACCORD, CoordinatorProcess
from tests.support.scenario import contract

NOTIFY_FLOW = """
workflow: crm/flow
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
steps:
  notify:
    contract: crm/notify@^1
    input: {order_id: "${input.order_id}"}
output:
  ref: "${steps.notify.output.ref}"
"""


async def _crm(coordinator: CoordinatorProcess) -> str:
    token = await coordinator.create_team("crm")
    await coordinator.register_contract(token, contract("crm/notify"))
    await coordinator.register_workflow(token, NOTIFY_FLOW)
    return token


async def test_run_wait_timeout_says_why_and_leaves_the_run_going(coordinator: CoordinatorProcess) -> None:
    token = await _crm(coordinator)
    started = time.monotonic()
    result = await coordinator.acli(
        "run", "crm/flow", "--input", '{"order_id": "o-1"}', "--wait", "--timeout", "5s", token=token
    )
    took = time.monotonic() - started
    assert result.returncode == 1, result
    assert result.stdout == ""
    # It waited out its 5 s and then gave up, rather than waiting for the run; the upper bound
    # leaves a loaded machine room to start and stop the CLI process.
    assert 4.5 <= took < 40, took
    lines = result.stderr.splitlines()
    waiting = [line for line in lines if line.startswith("waiting: ")]
    # Said once, although the time it has queued for changes at every refresh.
    assert len(waiting) == 1, result.stderr
    assert waiting[0].startswith("waiting: step notify: no agent of team crm is serving crm/notify@1"), (
        waiting
    )
    run_id = lines[-1].split()[2]
    assert lines[-1] == f"error: run {run_id} still running after 5s; see accord runs show {run_id}"
    async with coordinator.client(token) as client:
        run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
    assert run.status == pb.RUN_STATUS_RUNNING


async def test_run_wait_reports_the_reason_and_prints_only_the_output(
    coordinator: CoordinatorProcess, test_agent: Callable[..., Awaitable[TestAgent]]
) -> None:
    token = await _crm(coordinator)
    proc = await asyncio.create_subprocess_exec(
        ACCORD,
        *("run", "crm/flow", "-i", '{"order_id": "o-2"}', "--wait", "--timeout", "60s"),
        env=coordinator.env(token),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        first = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert first.startswith("waiting: step notify: no agent of team crm is serving crm/notify@1"), first

        async def notify(call: Call) -> dict[str, str]:
            return {"ref": "r-" + call.input["order_id"]}

        await test_agent(token, "crm", {"crm/notify@1": notify})
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr
    assert json.loads(stdout) == {"ref": "r-o-2"}


async def test_run_timeout_needs_wait_and_a_duration(coordinator: CoordinatorProcess) -> None:
    token = await _crm(coordinator)
    result = await coordinator.acli("run", "crm/flow", "--timeout", "5s", token=token)
    assert (result.returncode, result.stderr.strip()) == (2, "error: --timeout needs --wait")
    result = await coordinator.acli("run", "crm/flow", "--wait", "--timeout", "soon", token=token)
    assert result.returncode == 2
    assert "--timeout: 'soon' is not a duration" in result.stderr


async def test_runs_list_rejects_a_limit_out_of_range(coordinator: CoordinatorProcess) -> None:
    for limit in ("0", "-5", "1001"):
        result = await coordinator.acli("runs", "list", "--limit", limit)
        assert result.returncode == 2, result
        assert "Invalid value for '--limit'" in result.stderr, result.stderr
    result = await coordinator.acli("runs", "list", "--limit", "1000")
    assert result.returncode == 0, result.stderr


async def test_runs_list_names_an_unknown_team(coordinator: CoordinatorProcess) -> None:
    token = await _crm(coordinator)
    result = await coordinator.acli("runs", "list", "--team", "nosuchteam", token=token)
    assert result.returncode == 2, result
    assert result.stderr.strip() == "error: --team 'nosuchteam': there is no such team (teams: crm)"
    result = await coordinator.acli("runs", "list", "--team", "crm", token=token)  # no runs yet: fine
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


async def test_contract_diff_of_registered_versions_and_a_file(
    coordinator: CoordinatorProcess, tmp_path: Path
) -> None:
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/charge", "1.0.0"))
    more_output = {
        "output_props": "{ref: {type: string}, at: {type: string}}",
        "output_required": "[ref, at]",
    }
    wider = contract("payments/charge", "1.1.0", **more_output)
    await coordinator.register_contract(token, wider)

    # Both registered: the coordinator's DiffContracts, a range resolving to the newest.
    result = await coordinator.acli(
        "contract", "diff", "payments/charge@1.0.0", "payments/charge@^1", token=token
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.splitlines()[-1] == "ok payments/charge@1.1.0 is compatible with payments/charge@1.0.0"
    )

    # A file against what is registered: the file needs a new required input field.
    narrower = tmp_path / "charge.yaml"
    narrower.write_text(
        contract(
            "payments/charge",
            "1.2.0",
            input_props="{order_id: {type: string}, note: {type: string}}",
            input_required="[order_id, note]",
            **more_output,
        )
    )
    result = await coordinator.acli("contract", "diff", "payments/charge@1.1.0", str(narrower), token=token)
    assert result.returncode == 1, result
    assert "BREAKING" in result.stdout and "note" in result.stdout
    assert "payments/charge@1.2.0 breaks payments/charge@1.1.0" in result.stderr

    result = await coordinator.acli(
        "contract", "diff", "--json", str(narrower), "payments/charge@1.0.0", token=token
    )
    assert json.loads(result.stdout)["old"] == "payments/charge@1.2.0"

    result = await coordinator.acli("contract", "diff", "payments/charge@1", "payments/nosuch@1", token=token)
    assert result.returncode == 2, result
    assert "nosuch" in result.stderr and "Traceback" not in result.stderr

    # A missing file is still reported as a file.
    result = await coordinator.acli("contract", "diff", "nosuch.yaml", str(narrower), token=token)
    assert result.returncode == 2 and "nosuch.yaml" in result.stderr, result


async def test_workflow_validate_checks_without_registering(
    coordinator: CoordinatorProcess, tmp_path: Path
) -> None:
    token = await coordinator.create_team("crm")
    await coordinator.register_contract(token, contract("crm/notify"))
    good = tmp_path / "flow.yaml"
    good.write_text(NOTIFY_FLOW)
    result = await coordinator.acli("workflow", "validate", str(good), token=token)
    assert (result.returncode, result.stdout.strip()) == (0, "crm/flow: type-checks against the registry")
    listed = await coordinator.acli("workflow", "list", token=token)
    assert listed.stdout == ""  # not registered

    bad = tmp_path / "bad.yaml"
    bad.write_text(NOTIFY_FLOW.replace("steps.notify.output.ref", "steps.notify.output.nothing"))
    result = await coordinator.acli("workflow", "validate", str(bad), token=token)
    assert result.returncode == 2, result
    assert "nothing" in result.stdout + result.stderr


FAIL_FLOW = """
workflow: shipping/flow
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
steps:
  charge:
    contract: shipping/charge@^1
    input: {order_id: "${input.order_id}"}
  ship:
    contract: shipping/ship@^1
    input: {order_id: "${steps.charge.output.ref}"}
"""


async def test_runs_trace_shows_a_step_that_never_started(
    coordinator: CoordinatorProcess, test_agent: Callable[..., Awaitable[TestAgent]]
) -> None:
    token = await coordinator.create_team("shipping")
    await coordinator.register_contract(token, contract("shipping/charge"))
    await coordinator.register_contract(token, contract("shipping/ship"))
    await coordinator.register_workflow(token, FAIL_FLOW)

    async def decline(call: Call) -> dict[str, str]:
        raise TaskFailed("CardDeclined", "card expired", retryable=False)

    await test_agent(token, "shipping", {"shipping/charge@1": decline})
    result = await coordinator.acli("run", "shipping/flow", "-i", '{"order_id": "o"}', "--wait", token=token)
    assert result.returncode == 1, result
    # an ordinary hand-off to the idle agent is not a waiting line: only the error is on stderr
    assert result.stderr.startswith("error: run "), result.stderr
    run_id = result.stderr.splitlines()[-1].split()[2]
    result = await coordinator.acli("runs", "trace", run_id, token=token)
    assert result.returncode == 0, result.stderr
    text = result.stdout.splitlines()
    width = text[1].index("team")
    lines = {line[:width].strip(): line.rstrip() for line in text[2:]}
    ship, charge = lines["ship · shipping/ship@1.0.0"], lines["charge · shipping/charge@1.0.0"]
    assert ship.endswith("not started"), result.stdout
    assert "error" not in ship and "µs" not in ship, result.stdout
    assert "CardDeclined: card expired" in charge, result.stdout
    # `runs show` says the same as the trace (and the UI): not started, not "cancelled".
    shown = await coordinator.acli("runs", "show", run_id, token=token)
    step_line = next(line for line in shown.stdout.splitlines() if line.strip().startswith("ship "))
    assert "not started" in step_line and "cancelled" not in step_line, shown.stdout
    assert not any("error  error" in line for line in lines.values()), result.stdout
