"""Drive an engine binding end to end: the real coordinator (``coordinator`` fixture of
tests/conftest.py), a team with one contract and a one-step workflow, and a real agent process
(``accord agent start``) bound to the engine under test."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.testing import AgentProcess
from tests.support.coordinator import CoordinatorProcess

REPO = Path(__file__).resolve().parents[2]
TERMINAL = {pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}


def contract_yaml(
    name: str,
    *,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    max_attempts: int = 1,
    start_to_close: str = "240s",
) -> str:
    return yaml.safe_dump(
        {
            "contract": name,
            "version": "1.0.0",
            "input": input_schema or {"type": "object"},
            "output": output_schema or {"type": "object"},
            "timeouts": {"heartbeat": "5s", "start_to_close": start_to_close},
            "retry": {"max_attempts": max_attempts, "initial_backoff": "100ms"},
        },
        sort_keys=False,
    )


def workflow_yaml(workflow: str, contract: str, input_schema: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "workflow": workflow,
            "input": input_schema,
            "steps": {"work": {"contract": f"{contract}@^1", "input": "${input}"}},
            "output": "${steps.work.output}",
        },
        sort_keys=False,
    )


@dataclass
class EngineTeam:
    """A team whose only workflow ``<team>/flow`` calls ``contract`` once, served by an agent."""

    coordinator: CoordinatorProcess
    name: str
    token: str
    contract: str
    workdir: Path
    agents: list[AgentProcess] = field(default_factory=list)

    async def start_agent(self, binding: dict[str, Any], env: dict[str, str] | None = None) -> AgentProcess:
        config = {
            "team": self.name,
            "coordinator": self.coordinator.address,
            "token": "${secret:ACCORD_TOKEN}",
            "concurrency": 4,
            # The team's default where a contract sets none (the examples' do not). A cancel
            # reaches the agent on its next heartbeat, every 30% of this: 6 s rather than the
            # platform's 30 s spares the cancel tests a 9 s wait, and still leaves a loaded
            # machine room before a heartbeat is missed.
            "timeouts": {"heartbeat": "6s"},
            "implements": {f"{self.contract}@1": binding},
        }
        path = self.workdir / f"agent-{len(self.agents)}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        agent = AgentProcess(
            path,
            workdir=self.workdir,
            agent_id=f"{self.name}-agent-{len(self.agents)}",
            env={"ACCORD_TOKEN": self.token, **(env or {})},
        )
        self.agents.append(agent.start())
        await agent.wait_for_log("registered", timeout=30)
        return agent

    def stop_agents(self) -> None:
        for agent in self.agents:
            if agent.running:
                agent.stop(timeout=30)

    async def start_run(self, value: Any) -> str:
        async with self.coordinator.client(self.token) as client:
            answer = await client.coordinator.StartRun(
                pb.StartRunRequest(workflow=f"{self.name}/flow", input_json=json.dumps(value))
            )
        return str(answer.run.run_id)

    async def get_run(self, run_id: str) -> Any:
        async with self.coordinator.client(self.token) as client:
            return (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run

    async def cancel_run(self, run_id: str) -> Any:
        async with self.coordinator.client(self.token) as client:
            return await client.coordinator.CancelRun(
                pb.CancelRunRequest(run_id=run_id, reason="test cancel")
            )

    async def wait_run(self, run_id: str, within: float = 120.0) -> Any:
        deadline = time.monotonic() + within
        run = None
        while time.monotonic() < deadline:
            run = await self.get_run(run_id)
            if run.status in TERMINAL:
                return run
            await asyncio.sleep(0.2)
        logs = "\n".join(a.log[-3000:] for a in self.agents)
        raise AssertionError(f"run {run_id} did not finish in {within}s: {run}\nagent log:\n{logs}")


async def engine_team(
    coordinator: CoordinatorProcess,
    workdir: Path,
    *,
    team: str = "payments",
    contract_source: str | None = None,
    contract: str | None = None,
    **contract_options: Any,
) -> EngineTeam:
    """Create ``team``, register its contract (the given YAML, or a generated one) and the
    workflow ``<team>/flow`` that calls it."""
    token = await coordinator.create_team(team)
    if contract_source is None:
        contract = contract or f"{team}/work"
        contract_source = contract_yaml(contract, **contract_options)
    else:
        contract = str(yaml.safe_load(contract_source)["contract"])
    await coordinator.register_contract(token, contract_source)
    # The workflow's input is the contract's, passed through whole.
    input_schema = yaml.safe_load(contract_source).get("input") or {"type": "object"}
    await coordinator.register_workflow(token, workflow_yaml(f"{team}/flow", contract, input_schema))
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    return EngineTeam(coordinator, team, token, contract, workdir)


def attempt_error(run: Any) -> tuple[Any, dict[str, Any]]:
    """The last attempt's error of the run's only step, and its details as a dict."""
    error = run.steps[0].attempts[-1].error
    return error, json.loads(error.details_json or "{}")
