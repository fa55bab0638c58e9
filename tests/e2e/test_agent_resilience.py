"""Resilience with real processes: a coordinator crash and restart under a running task, an agent killed with
-9, replicas sharing one queue, graceful stop handing tasks back, and the outbox across restarts."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.outbox import entries_on_disk
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    Agents,
    CoordinatorProcess,
    agent_config,
    agents_fixture,
    shell,
    team_with_flow,
    wait_until,
)


@pytest.fixture(name="coordinator_process")
def restartable_coordinator(coordinator: CoordinatorProcess) -> CoordinatorProcess:
    """The shared ``coordinator`` fixture: one per test, as these tests crash and restart it."""
    return coordinator


def counting(
    marker: Path, *, sleep: float, first_attempt_sleep: float | None = None, meet: int = 0
) -> dict[str, object]:
    """A shell binding that appends one line per execution to ``marker``, then sleeps. With
    ``meet``, it first waits (60 s at most) until ``meet`` executions have started: that many run
    at the same time."""
    first = sleep if first_attempt_sleep is None else first_attempt_sleep
    return shell(
        f"""
        import json, os, sys, time
        data = json.load(sys.stdin)
        with open({str(marker)!r}, "a") as f:
            f.write(os.environ["ACCORD_ATTEMPT"] + " " + str(os.getpid()) + "\\n")
        deadline = time.monotonic() + 60
        while len(open({str(marker)!r}).read().splitlines()) < {meet} and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep({first} if os.environ["ACCORD_ATTEMPT"] == "1" else {sleep})
        print(json.dumps({{"attempt": int(os.environ["ACCORD_ATTEMPT"])}}))
        """
    )


def executions(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


async def test_coordinator_crash_under_a_running_task_delivers_once(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process, heartbeat="20s", max_attempts=3)
    marker = tmp_path / "ran"
    agent = agents.start(team, agent_config(team, {f"{team.name}/work@1": counting(marker, sleep=1.5)}))
    run_id = await team.start_run({})
    # RUNNING only means an agent claimed the attempt (it may still be fetching the contract):
    # wait for the engine's own marker, so the kill lands under a task that really runs.
    await wait_until(lambda: executions(marker), "the engine never started the task")

    coordinator_process.kill9()
    # The task finishes while the coordinator is down; its result waits in the outbox.
    outbox = agent.state_dir / "outbox"
    await wait_until(lambda: entries_on_disk(outbox), "the result never reached the outbox")
    assert len(executions(marker)) == 1
    coordinator_process.restart()

    run = await team.wait_run(run_id, within=30)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert [a.status for a in run.steps[0].attempts] == [pb.ATTEMPT_STATUS_SUCCEEDED]
    await agent.wait_for_log("delivered")
    assert len(executions(marker)) == 1
    # Logged as delivered, then removed: wait for the removal itself.
    await wait_until(lambda: not entries_on_disk(outbox), "the delivered result stayed in the outbox")


async def test_an_agent_killed_mid_task_loses_its_lease_to_another_replica(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    # 3 s, not less: the survivor's attempt must not time out too while a loaded machine starves
    # its agent process for a moment.
    team = await team_with_flow(coordinator_process, heartbeat="3s", max_attempts=3)
    marker = tmp_path / "ran"
    binding = {f"{team.name}/work@1": counting(marker, sleep=0.1, first_attempt_sleep=60)}
    doomed = agents.start(team, agent_config(team, binding), name="doomed")
    run_id = await team.start_run({})
    await wait_until(lambda: executions(marker), "the engine never started the first attempt")
    doomed.kill()
    orphan = int(executions(marker)[0].split()[1])

    survivor = agents.start(team, agent_config(team, binding), name="survivor")
    try:
        run = await team.wait_run(run_id, within=30)
    finally:
        with_orphan = orphan
        try:
            os.killpg(with_orphan, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    attempts = run.steps[0].attempts
    assert [a.status for a in attempts] == [pb.ATTEMPT_STATUS_TIMED_OUT, pb.ATTEMPT_STATUS_SUCCEEDED]
    assert attempts[0].agent_id == doomed.agent_id and attempts[1].agent_id == survivor.agent_id


async def test_two_replicas_share_one_queue(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process, heartbeat="5s")
    marker = tmp_path / "ran"
    # The first two executions wait for each other: with one task at a time per replica, the
    # second can only be the other replica's, however the machine's load delays either one.
    binding = {f"{team.name}/work@1": counting(marker, sleep=0.1, meet=2)}
    first = agents.start(team, agent_config(team, binding, concurrency=1), name="r1")
    second = agents.start(team, agent_config(team, binding, concurrency=1), name="r2")
    await first.wait_for_log("registered")
    await second.wait_for_log("registered")
    run_ids = [await team.start_run({"i": i}) for i in range(6)]
    runs = [await team.wait_run(run_id, within=30) for run_id in run_ids]
    assert all(run.status == pb.RUN_STATUS_SUCCEEDED for run in runs)
    served_by = [run.steps[0].attempts[0].agent_id for run in runs]
    assert set(served_by) == {first.agent_id, second.agent_id}
    assert len(executions(marker)) == 6


async def test_sigterm_lets_short_tasks_finish_and_hands_long_ones_back(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process, heartbeat="5s", max_attempts=1)
    marker = tmp_path / "ran"
    binding = {f"{team.name}/work@1": counting(marker, sleep=0.1, first_attempt_sleep=60)}
    agent = agents.start(team, agent_config(team, binding), grace=1.0)
    run_id = await team.start_run({})
    await wait_until(lambda: executions(marker), "the engine never started the task")
    assert await asyncio.to_thread(agent.stop) == 0
    assert "handing 1 task(s) back" in agent.log
    # Released, not failed: the step gets a new attempt although max_attempts is 1.
    replacement = agents.start(team, agent_config(team, binding), name="replacement")
    run = await team.wait_run(run_id, within=30)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert [a.agent_id for a in run.steps[0].attempts] == [agent.agent_id, replacement.agent_id]


async def test_the_outbox_survives_an_agent_restart(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process, heartbeat="30s")
    marker = tmp_path / "ran"
    config = agent_config(team, {f"{team.name}/work@1": counting(marker, sleep=1.0)})
    agent = agents.start(team, config)
    run_id = await team.start_run({})
    await wait_until(lambda: executions(marker), "the engine never started the task")
    coordinator_process.stop()
    outbox = agent.state_dir / "outbox"
    await wait_until(lambda: entries_on_disk(outbox), "the result never reached the outbox")
    # Stopped while the coordinator is down: the result stays on disk.
    assert await asyncio.to_thread(agent.stop) == 0
    assert len(entries_on_disk(outbox)) == 1

    coordinator_process.restart()
    restarted = agents.start(team, config)  # same name: same agent id and state dir
    assert restarted.state_dir == agent.state_dir
    run = await team.wait_run(run_id, within=30)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    await restarted.wait_for_log("left in the outbox")
    assert len(executions(marker)) == 1
    # The entry goes once the coordinator's answer is back, which may come after the run is seen
    # finished: wait for that, not for the log line that says delivery began.
    await wait_until(lambda: not entries_on_disk(outbox), "the delivered result stayed in the outbox")
