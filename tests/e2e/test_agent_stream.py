"""The batched agent protocol (accord.agent.v2) with real processes: agents use one stream by
default and the v1 unary API when told to; credit bounds the tasks offered; kill -9 of either side
loses no result and runs nothing twice; a revoked token closes the stream."""

from __future__ import annotations

import json

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    ECHO,
    Agents,
    CoordinatorProcess,
    agent_config,
    agents_fixture,
    coordinator_fixture,
    shell,
    team_with_flow,
    wait_until,
)


@pytest.mark.parametrize("protocol", ["v2", "v1"])
async def test_runs_go_through_either_agent_api(
    coordinator_process: CoordinatorProcess, agents: Agents, protocol: str
) -> None:
    team = await team_with_flow(coordinator_process)
    agent = agents.start(team, agent_config(team, {f"{team.name}/work@1": ECHO}, protocol=protocol))
    await agent.wait_for_log("registered")
    run_ids = [await team.start_run({"i": i}) for i in range(5)]
    for i, run_id in enumerate(run_ids):
        run = await team.wait_run(run_id, within=30)
        assert run.status == pb.RUN_STATUS_SUCCEEDED, run
        assert json.loads(run.output_json) == {"echo": {"i": i}}
    assert ("agent API v2" in agent.log) == (protocol == "v2")
