"""An input that breaks the callee's contract: which component catches it, and the agent's own
check at the boundary.

1. With the real coordinator and a real agent process: a workflow maps a run-input field of
   type integer (which passes composition: the workflow input schema says integer) into a callee
   field with ``minimum: 1``; a run with 0 is caught by the COORDINATOR before any task exists
   (step failed with the JSON path, no attempt, the agent never saw it).
2. So the agent's branch cannot be reached through a correct coordinator. It is tested with the
   agent's ``Agent`` class in-process against the real coordinator, the task's input altered in
   transit (what a coordinator bug or a tampering proxy would hand it): the agent fails the
   attempt as a non-retryable ContractViolation naming the JSON path, before the engine is
   called, and the real coordinator records exactly that (one attempt although three are allowed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.sdk.trace import TracerProvider

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.agent import Agent, AgentOptions
from team_agent.client import AgentTask, GatewayClient
from team_agent.config import load_config
from team_agent.redact import Redactor
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    Agents,
    CoordinatorProcess,
    agent_config,
    agents_fixture,
    coordinator_fixture,
    new_team,
)

CHARGE = """
contract: {team}/charge
version: 1.0.0
input:
  type: object
  required: [order_id, amount_cents]
  properties:
    order_id: {{type: string}}
    amount_cents: {{type: integer, minimum: 1}}
    currency: {{type: string, enum: [usd, eur]}}
output:
  type: object
  required: [ref]
  properties: {{ref: {{type: string}}}}
retry: {{max_attempts: 3, initial_backoff: 50ms}}
"""
WORKFLOW = """
workflow: {team}/pay
input:
  type: object
  required: [order_id, amount]
  properties: {{order_id: {{type: string}}, amount: {{type: integer}}}}
steps:
  charge:
    contract: {team}/charge@^1
    input: {{order_id: "${{input.order_id}}", amount_cents: "${{input.amount}}", currency: usd}}
output: {{ref: "${{steps.charge.output.ref}}"}}
"""
ENGINE = """
import json, os
def charge(value, task):
    with open(os.environ["CALLS_FILE"], "a") as f:
        f.write(json.dumps(value) + "\\n")
    return {"ref": "charged-" + value["order_id"]}
"""


async def _team(coordinator: CoordinatorProcess):
    team = await new_team(coordinator, prefix="iv")
    await team.register(CHARGE.format(team=team.name))
    await team.register(WORKFLOW.format(team=team.name), kind="workflow")
    return team


def _binding(workdir: Path) -> dict[str, Any]:
    (workdir / "iv_engine.py").write_text(textwrap.dedent(ENGINE))
    return {"engine": "python", "with": {"callable": "iv_engine:charge", "path": [str(workdir)]}}


async def test_the_coordinator_catches_a_mapped_input_that_breaks_the_callee(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path, monkeypatch
) -> None:
    team = await _team(coordinator_process)
    calls = tmp_path / "calls.jsonl"
    agent = agents.start(
        team,
        agent_config(team, {f"{team.name}/charge@1": _binding(tmp_path)}),
        env={"CALLS_FILE": str(calls)},
    )
    await agent.wait_for_log("registered", timeout=30)

    ok = await team.wait_run(await team.start_run({"order_id": "o-1", "amount": 5}, workflow="pay"))
    assert ok.status == pb.RUN_STATUS_SUCCEEDED, ok  # the agent serves the step

    bad = await team.wait_run(await team.start_run({"order_id": "o-2", "amount": 0}, workflow="pay"))
    assert bad.status == pb.RUN_STATUS_FAILED, bad
    (charge,) = bad.steps
    assert charge.status == pb.STEP_STATUS_FAILED
    assert list(charge.attempts) == []  # no task was ever handed to an agent
    assert charge.error.type == "ContractViolation" and not charge.error.retryable
    assert "$.amount_cents" in charge.error.message, charge.error.message
    assert f"{team.name}/charge@1.0.0" in charge.error.message
    assert bad.error.type == "ContractViolation"
    # The agent ran only the good run's task.
    assert [json.loads(line)["order_id"] for line in calls.read_text().splitlines()] == ["o-1"]
    assert bad.run_id not in agent.log


class _TamperingClient(GatewayClient):
    """The real gateway client; the first task it receives has its input altered in transit."""

    def __init__(self, *args: Any, bad_input: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bad_input = bad_input
        self.tampered: list[AgentTask] = []

    def _tamper(self, task: AgentTask) -> AgentTask:
        if not self.tampered:
            task = dataclasses.replace(task, input_json=json.dumps(self.bad_input))
            self.tampered.append(task)
        return task

    async def poll(self, **kwargs: Any) -> AgentTask | None:  # the v1 agent API
        task = await super().poll(**kwargs)
        return None if task is None else self._tamper(task)

    async def open_stream(self, *args: Any, on_task: Any, **kwargs: Any) -> Any:  # v2
        return await super().open_stream(*args, on_task=lambda task: on_task(self._tamper(task)), **kwargs)


async def test_the_agent_fails_an_input_that_breaks_the_contract_non_retryable_with_the_path(
    coordinator_process: CoordinatorProcess, tmp_path: Path, monkeypatch
) -> None:
    team = await _team(coordinator_process)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("CALLS_FILE", str(calls))
    config_path = tmp_path / "agent.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "team": team.name,
                "coordinator": coordinator_process.address,
                "token": team.token,
                "concurrency": 2,
                "implements": {f"{team.name}/charge@1": _binding(tmp_path)},
            }
        )
    )
    loaded = load_config(config_path)
    redactor = Redactor(loaded.config.secret_values)
    # Two violations: a bound (the path names the field) and an unknown enum value.
    bad_input = {"order_id": "o-1", "amount_cents": 0, "currency": "gbp"}
    client = _TamperingClient(coordinator_process.address, lambda: team.token, redactor, bad_input=bad_input)
    agent = Agent(
        loaded,
        config_path=config_path,
        options=AgentOptions(agent_id=f"{team.name}-inproc", state_dir=tmp_path / "state", poll_wait=1.0),
        client=client,
        tracer=TracerProvider().get_tracer("test"),
        redactor=redactor,
    )
    stop = asyncio.Event()
    serving = asyncio.create_task(agent.run(stop))
    try:
        run = await team.wait_run(
            await team.start_run({"order_id": "o-1", "amount": 5}, workflow="pay"), within=30
        )
    finally:
        stop.set()
        await asyncio.wait_for(serving, 30)
        await client.close()

    assert len(client.tampered) == 1
    assert run.status == pb.RUN_STATUS_FAILED, run
    (charge,) = run.steps
    # Caught by the agent: one attempt although the contract allows three.
    (attempt,) = charge.attempts
    assert attempt.status == pb.ATTEMPT_STATUS_FAILED
    error = attempt.error
    assert error.type == "ContractViolation" and not error.retryable, error
    assert error.message.startswith(f"input breaks contract {team.name}/charge@1.0.0"), error.message
    assert "$.amount_cents" in error.message and "$.currency" in error.message, error.message
    details = json.loads(error.details_json)
    assert {v["path"] for v in details["input_violations"]} == {"$.amount_cents", "$.currency"}
    assert "not retryable" in run.error.message
    # Before the engine: it was never called.
    assert not calls.exists()
