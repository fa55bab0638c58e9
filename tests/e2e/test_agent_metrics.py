"""The agent's metrics: a real agent process serving /metrics (``--metrics``), scraped after it
ran a task."""

from __future__ import annotations

import re

import httpx

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


def _value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{.*\}})?\s+(\S+)$", line)
        if match and all(f'{key}="{val}"' in (match.group(1) or "") for key, val in labels.items()):
            total += float(match.group(2))
    return total


async def test_an_agent_serves_its_task_counts_and_durations(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    team = await team_with_flow(coordinator_process)
    agent = agents.start(
        team,
        agent_config(team, {f"{team.name}/work@1": ECHO}),
        extra_args=["--metrics", "127.0.0.1:0"],
    )
    await agent.wait_for_log("serving metrics for Prometheus on http://")
    address = re.search(r"serving metrics for Prometheus on (http://\S+/metrics)", agent.log)
    assert address is not None
    run = await team.wait_run(await team.start_run({"n": 1}))
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    contract = f"{team.name}/work@1"

    async with httpx.AsyncClient() as http:
        text = (await http.get(address.group(1))).text
    assert _value(text, "accord_agent_tasks_total", contract=contract, outcome="succeeded") == 1
    assert (
        _value(text, "accord_agent_task_duration_seconds_count", contract=contract, outcome="succeeded") == 1
    )
    assert _value(text, "accord_agent_tasks_running", contract=contract) == 0
    assert run.run_id not in text
