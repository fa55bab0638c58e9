"""Hot reload: bindings added and removed while a task runs, without a restart; a broken change
is refused with its line and the running config stays."""

from __future__ import annotations

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    ECHO,
    Agents,
    CoordinatorProcess,
    agent_config,
    agents_fixture,
    contract_yaml,
    coordinator_fixture,
    shell,
    team_with_flow,
    wait_until,
    workflow_yaml,
)

SLOW = shell(
    "import json, sys, time; data = json.load(sys.stdin); time.sleep(2.5); print(json.dumps({'slow': True}))"
)


async def test_reload_adds_and_removes_bindings_while_a_task_runs(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    team = await team_with_flow(coordinator_process, heartbeat="3s")
    await team.register(contract_yaml(f"{team.name}/other", heartbeat="3s"))
    await team.register(workflow_yaml(team.name, f"{team.name}/other", name="other-flow"), kind="workflow")
    work, other = f"{team.name}/work@1", f"{team.name}/other@1"

    agent = agents.start(team, agent_config(team, {work: SLOW}))
    await agent.wait_for_log("registered")
    pid = agent.process.pid if agent.process else None
    in_flight = await team.start_run({})
    await team.wait_step_running(in_flight)

    # Swap the bindings while the slow task runs.
    agent.config_path.write_text(agent_config(team, {other: ECHO}))
    await agent.wait_for_log("config reloaded")
    served_at_once = await team.wait_run(await team.start_run({"x": 1}, workflow="other-flow"), within=30)
    assert served_at_once.status == pb.RUN_STATUS_SUCCEEDED

    # The in-flight task finished on the binding it started with.
    finished = await team.wait_run(in_flight)
    assert finished.status == pb.RUN_STATUS_SUCCEEDED, finished
    assert len(finished.steps[0].attempts) == 1

    # The removed binding is no longer polled.
    not_served = await team.start_run({})

    async def unserved() -> str:
        reason: str = (await team.get_run(not_served)).steps[0].waiting_reason
        return reason if reason.startswith("no agent") else ""

    # The coordinator's own word that no agent serves it any more (not a pause that "should be
    # enough" for a stale poll to have taken the task).
    reason = await wait_until(unserved, "the step never said that no agent serves it")
    assert reason.startswith(f"no agent of team {team.name} is serving {work}"), reason
    assert (await team.get_run(not_served)).steps[0].status == pb.STEP_STATUS_SCHEDULED

    # A broken change is refused with its line; the running config keeps serving.
    agent.config_path.write_text(agent_config(team, {other: ECHO}, concurrency="lots"))
    await agent.wait_for_log("config change not applied")
    assert f"{agent.config_path}:4: concurrency" in agent.log
    still = await team.wait_run(await team.start_run({}, workflow="other-flow"), within=30)
    assert still.status == pb.RUN_STATUS_SUCCEEDED

    # Adding the first binding back serves the queued run: no restart at any point.
    agent.config_path.write_text(agent_config(team, {other: ECHO, work: ECHO}))
    assert (await team.wait_run(not_served, within=30)).status == pb.RUN_STATUS_SUCCEEDED
    assert agent.running and agent.process is not None and agent.process.pid == pid
