"""A real agent process whose token comes from a secret file follows a rotation without a
restart: it keeps its in-flight task, picks up the new token when the file changes, and the run
finishes; results refused with the old token are sent again with the new one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import UnauthenticatedError
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    ECHO,
    Agents,
    CoordinatorProcess,
    Team,
    agent_config,
    agents_fixture,
    coordinator_fixture,
    shell,
    team_with_flow,
    wait_until,
)


def _held_until(release: Path) -> dict[str, object]:
    """A binding whose task runs until ``release`` exists (the test decides when it ends)."""
    return shell(
        f"""
        import json, os, sys, time
        json.load(sys.stdin)
        while not os.path.exists({str(release)!r}):
            time.sleep(0.05)
        print(json.dumps({{"done": True}}))
        """
    )


def _write_secret(directory: Path, value: str) -> None:
    """Replace the secret file at once, as a secret manager or a Kubernetes volume does."""
    tmp = directory / ".ACCORD_TOKEN.tmp"
    tmp.write_text(value + "\n")
    os.replace(tmp, directory / "ACCORD_TOKEN")


def _file_config(team: Team, secrets: Path, binding: dict[str, object], protocol: str = "v2") -> str:
    return agent_config(
        team,
        {f"{team.name}/work@1": binding},
        secrets={"provider": "file", "path": str(secrets)},
        protocol=protocol,
    )


async def _refused(coordinator: CoordinatorProcess, token: str) -> bool:
    try:
        async with coordinator.client(token) as client:
            await client.coordinator.WhoAmI(pb.WhoAmIRequest())
    except UnauthenticatedError:
        return True
    return False


async def test_rotation_with_a_grace_period_keeps_the_in_flight_task(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    # Heartbeats every 3 s (timeout 10 s) go out through the rotation.
    team = await team_with_flow(coordinator_process, heartbeat="10s")
    secrets, release = tmp_path / "secrets", tmp_path / "release"
    secrets.mkdir()
    _write_secret(secrets, team.token)
    agent = agents.start(team, _file_config(team, secrets, _held_until(release)), env={"ACCORD_TOKEN": ""})
    await agent.wait_for_log("registered")
    in_flight = await team.start_run({"order": 1})
    await team.wait_step_running(in_flight)

    old = team.token
    rotated = await coordinator_process.acli("team", "rotate-token", team.name, "--grace", "3s", token=old)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    _write_secret(secrets, new)
    await agent.wait_for_log("token reloaded from the file secrets provider")
    assert "1 task(s) running on" in agent.log

    # The grace period runs out: only the new token works from then on. The in-flight task's
    # heartbeats, its result and its spans go out with it.
    await wait_until(lambda: _refused(coordinator_process, old), "the old token's grace period ends")
    release.touch()
    team.token = new
    run = await team.wait_run(in_flight)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert len(run.steps[0].attempts) == 1  # the same attempt: nothing was dropped or retried

    async def agent_spans() -> bool:
        async with coordinator_process.client(new) as client:
            trace = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=in_flight))
        return any(span.name == "agent.receive" for span in trace.spans)

    await wait_until(agent_spans, "the agent's spans, exported with the new token, are stored")

    # The agent serves on, with the new token.
    release.unlink()
    after = await team.start_run({"order": 2})
    await team.wait_step_running(after)
    release.touch()
    assert (await team.wait_run(after)).status == pb.RUN_STATUS_SUCCEEDED
    assert agent.running
    assert old not in agent.log and new not in agent.log


@pytest.mark.parametrize("protocol", ["v2", "v1"])
async def test_a_result_refused_after_rotation_is_sent_again_with_the_new_token(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path, protocol: str
) -> None:
    # Heartbeat timeout 30 s: the attempt's lease outlives the moments without a valid token.
    team = await team_with_flow(coordinator_process, heartbeat="30s")
    secrets, release = tmp_path / "secrets", tmp_path / "release"
    secrets.mkdir()
    _write_secret(secrets, team.token)
    agent = agents.start(
        team, _file_config(team, secrets, _held_until(release), protocol), env={"ACCORD_TOKEN": ""}
    )
    await agent.wait_for_log("registered")
    in_flight = await team.start_run({"order": 1})
    await team.wait_step_running(in_flight)

    # --grace 0: the old token is refused at once, before the secret file has the new one.
    rotated = await coordinator_process.acli("team", "rotate-token", team.name, "--grace", "0")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    release.touch()
    if protocol == "v1":
        await agent.wait_for_log("coordinator refused our token for complete")
    # v1: its polls; v2: its stream, closed UNAUTHENTICATED. It waits, it does not exit.
    await agent.wait_for_log("refuses this agent's token")
    assert agent.running

    _write_secret(secrets, new)
    await agent.wait_for_log("token reloaded from the file secrets provider")
    team.token = new
    run = await team.wait_run(in_flight)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert len(run.steps[0].attempts) == 1
    await agent.wait_for_log("registered 1 binding(s)", count=2)  # registered again, new token
    release.unlink()
    after = await team.start_run({"order": 2})
    await team.wait_step_running(after)
    release.touch()
    assert (await team.wait_run(after)).status == pb.RUN_STATUS_SUCCEEDED
    assert agent.stop() == 0
    assert new not in agent.log


async def test_an_agent_started_with_a_refused_token_from_a_file_still_exits_3(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    """Waiting for the file to change is for a running agent whose token was rotated; one that
    never got in says so and stops, as before."""
    team = await team_with_flow(coordinator_process)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    _write_secret(secrets, "not-the-token")
    agent = agents.start(team, _file_config(team, secrets, ECHO), env={"ACCORD_TOKEN": ""})
    assert agent.wait(60) == 3, agent.log
    assert "unknown or revoked token" in agent.log
