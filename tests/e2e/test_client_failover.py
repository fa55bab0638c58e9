"""Clients given several coordinators (ACCORD_COORDINATOR=a,b; an agent config's coordinator
list) move on to the next one when one does not answer, saying so, and get their work done."""

from __future__ import annotations

import socket
import subprocess

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    ECHO,
    Agents,
    agent_config,
    agents_fixture,
    coordinator_fixture,
    team_with_flow,
)
from tests.support.coordinator import ACCORD, CoordinatorProcess


def _dead_address() -> str:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _cli(coordinator: CoordinatorProcess, addresses: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**coordinator.env(coordinator.admin_token), "ACCORD_COORDINATOR": addresses}
    return subprocess.run([ACCORD, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_cli_moves_on_to_the_next_coordinator(coordinator_process: CoordinatorProcess) -> None:
    coordinator = coordinator_process
    dead = _dead_address()
    result = _cli(coordinator, f"{dead},{coordinator.address}", "team", "list")
    assert result.returncode == 0, result.stderr
    assert f"the coordinator at {dead} stopped answering" in result.stderr
    assert f"trying {coordinator.address}" in result.stderr


def test_a_bad_address_list_is_exit_2(coordinator_process: CoordinatorProcess) -> None:
    result = _cli(coordinator_process, f"{coordinator_process.address},nope", "team", "list")
    assert result.returncode == 2
    assert "ACCORD_COORDINATOR: nope is not host:port" in result.stderr


async def test_an_agent_with_a_list_of_coordinators_serves_through_the_one_that_answers(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    team = await team_with_flow(coordinator_process)
    dead = _dead_address()
    config = agent_config(
        team, {f"{team.name}/work@1": ECHO}, coordinator=[dead, coordinator_process.address]
    )
    agent = agents.start(team, config)
    run = await team.wait_run(await team.start_run({}), within=30)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert f"the coordinator at {dead} stopped answering" in agent.log
