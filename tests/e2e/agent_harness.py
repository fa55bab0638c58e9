"""Harness for the agent's end-to-end tests: a real coordinator process, teams with a one-step
workflow over one contract, and real agent processes (``team_agent.testing.AgentProcess``).

No tests here; the ``test_agent_*`` modules import from it (pytest puts this directory on
sys.path). The coordinator is ``tests.support.coordinator.CoordinatorProcess`` (the shared
harness: a subprocess that can be crashed and restarted on the same port and database); here it
is shared by the tests of a module, each test using its own team.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.testing import AgentProcess
from tests.support.coordinator import CoordinatorProcess
from tests.support.wait import wait_until  # noqa: F401 - re-exported for the test modules

TERMINAL = {pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}


@dataclass
class Team:
    """A team with one contract (``<team>/work@1``) and a one-step workflow (``<team>/flow``)."""

    coordinator: CoordinatorProcess
    name: str
    token: str
    runs: list[str] = field(default_factory=list)

    async def register(self, source: str, kind: str = "contract") -> None:
        async with self.coordinator.client(self.token) as client:
            if kind == "contract":
                await client.coordinator.RegisterContract(
                    pb.RegisterContractRequest(source_text=source, source_name=f"{kind}.yaml")
                )
            else:
                await client.coordinator.RegisterWorkflow(
                    pb.RegisterWorkflowRequest(source_text=source, source_name=f"{kind}.yaml")
                )

    async def start_run(self, value: Any, workflow: str = "flow") -> str:
        async with self.coordinator.client(self.token) as client:
            answer = await client.coordinator.StartRun(
                pb.StartRunRequest(workflow=f"{self.name}/{workflow}", input_json=json.dumps(value))
            )
        self.runs.append(answer.run.run_id)
        return str(answer.run.run_id)

    async def get_run(self, run_id: str) -> Any:
        async with self.coordinator.client(self.token) as client:
            return (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run

    async def wait_run(self, run_id: str, within: float = 60.0) -> Any:
        deadline = time.monotonic() + within
        run = None
        while time.monotonic() < deadline:
            try:
                run = await self.get_run(run_id)
            except Exception:  # the coordinator may be restarting
                run = None
            if run is not None and run.status in TERMINAL:
                return run
            await asyncio.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish in {within}s: {run}")

    async def wait_step_running(self, run_id: str, within: float = 60.0) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            run = await self.get_run(run_id)
            if any(s.status == pb.STEP_STATUS_RUNNING for s in run.steps):
                return run
            await asyncio.sleep(0.05)
        raise AssertionError(f"no step of {run_id} started running")


def contract_yaml(
    name: str,
    *,
    input_schema: dict[str, Any] | None = None,
    output_schema: dict[str, Any] | None = None,
    heartbeat: str = "2s",
    start_to_close: str = "60s",
    max_attempts: int = 1,
    version: str = "1.0.0",
    extra: str = "",
) -> str:
    document = {
        "contract": name,
        "version": version,
        "input": input_schema or {"type": "object"},
        "output": output_schema or {"type": "object"},
        "timeouts": {"heartbeat": heartbeat, "start_to_close": start_to_close},
        "retry": {"max_attempts": max_attempts, "initial_backoff": "100ms"},
    }
    return yaml.safe_dump(document, sort_keys=False) + textwrap.dedent(extra)


def workflow_yaml(team: str, contract: str, name: str = "flow") -> str:
    return yaml.safe_dump(
        {
            "workflow": f"{team}/{name}",
            "input": {"type": "object"},
            "steps": {"work": {"contract": f"{contract}@^1", "input": "${input}"}},
            "output": "${steps.work.output}",
        },
        sort_keys=False,
    )


async def new_team(coordinator: CoordinatorProcess, prefix: str = "t") -> Team:
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    async with coordinator.client() as admin:
        answer = await admin.coordinator.CreateTeam(pb.CreateTeamRequest(name=name))
    return Team(coordinator, name, answer.token)


async def team_with_flow(coordinator: CoordinatorProcess, **contract: Any) -> Team:
    """A new team with ``<team>/work@1.0.0`` and the workflow ``<team>/flow`` calling it."""
    team = await new_team(coordinator)
    await team.register(contract_yaml(f"{team.name}/work", **contract))
    await team.register(workflow_yaml(team.name, f"{team.name}/work"), kind="workflow")
    return team


def agent_config(team: Team, bindings: dict[str, Any], **top: Any) -> str:
    """An agent config for ``team``: the token comes from the ACCORD_TOKEN secret."""
    document = {
        "team": team.name,
        "coordinator": team.coordinator.address,
        "token": "${secret:ACCORD_TOKEN}",
        "concurrency": 4,
        **top,
        "implements": bindings,
    }
    return yaml.safe_dump(document, sort_keys=False)


def shell(code: str, **options: Any) -> dict[str, Any]:
    """A shell binding running python code (input on stdin, output on stdout)."""
    return {"engine": "shell", "with": {"command": ["python3", "-c", textwrap.dedent(code)], **options}}


ECHO = shell("import json, sys; print(json.dumps({'echo': json.load(sys.stdin)}))")


class Agents:
    """Starts agent processes for a test and stops them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[AgentProcess] = []

    def start(
        self,
        team: Team,
        config_text: str,
        *,
        name: str = "agent",
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> AgentProcess:
        path = self.workdir / f"{name}.yaml"
        path.write_text(config_text)
        agent = AgentProcess(
            path,
            workdir=self.workdir,
            agent_id=f"{team.name}-{name}",
            env={"ACCORD_TOKEN": team.token, **(env or {})},
            **options,
        )
        self.started.append(agent.start())
        return agent

    def stop_all(self) -> None:
        for agent in self.started:
            if agent.running:
                try:
                    agent.stop(timeout=20)
                except subprocess.TimeoutExpired:
                    agent.kill()


@pytest.fixture(scope="module", name="coordinator_process")
def coordinator_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    coordinator = CoordinatorProcess.start(tmp_path_factory.mktemp("coordinator"))
    yield coordinator
    coordinator.stop()


@pytest.fixture(name="agents")
async def agents_fixture(tmp_path: Path) -> AsyncIterator[Agents]:
    running = Agents(tmp_path)
    yield running
    await asyncio.to_thread(running.stop_all)
