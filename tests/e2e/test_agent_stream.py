"""The batched agent protocol (accord.agent.v2) with real processes: agents use one stream by
default and the v1 unary API when told to; credit bounds the tasks offered; kill -9 of the agent
with a batch of results on disk loses nothing and runs nothing twice; a revoked token closes the
stream; two replicas on PostgreSQL share streams and run each task once.

Also run on v2, as every agent now is by default: the agent tests of test_agent_*.py (kill -9 of the
coordinator under a running task delivers once, failover across a ``coordinator:`` list, token
rotation, graceful stop handing tasks back)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.agent.v2 import agent_stream_service_pb2 as stream_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.outbox import entries_on_disk
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
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas


def held(marker: Path, release: Path) -> dict[str, Any]:
    """A shell binding that appends "<run id> <attempt>" to ``marker``, then waits (60 s at most)
    for ``release`` to exist."""
    return shell(
        f"""
        import json, os, sys, time
        data = json.load(sys.stdin)
        with open({str(marker)!r}, "a") as f:
            f.write(os.environ["ACCORD_RUN_ID"] + " " + os.environ["ACCORD_ATTEMPT"] + "\\n")
        deadline = time.monotonic() + 60
        while not os.path.exists({str(release)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(json.dumps({{"i": data.get("i")}}))
        """
    )


def executions(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


async def attempts_of(team: Team, run_ids: list[str]) -> list[Any]:
    return [a for run_id in run_ids for s in (await team.get_run(run_id)).steps for a in s.attempts]


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


async def test_credit_never_offers_more_tasks_than_free_slots(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    """Six runs wait; an agent with two slots takes two and no more: the other four are there for
    an agent started later, which runs them all."""
    team = await team_with_flow(coordinator_process, heartbeat="20s")
    marker, release = tmp_path / "ran", tmp_path / "release"
    binding = {f"{team.name}/work@1": held(marker, release)}
    small = agents.start(team, agent_config(team, binding, concurrency=2, protocol="v2"), name="small")
    await small.wait_for_log("registered")
    run_ids = [await team.start_run({"i": i}) for i in range(6)]
    await wait_until(lambda: len(executions(marker)) >= 2, "the first agent never ran two tasks")
    big = agents.start(team, agent_config(team, binding, concurrency=4, protocol="v2"), name="big")
    await wait_until(lambda: len(executions(marker)) >= 6, "the second agent never ran the other four")
    attempts = await attempts_of(team, run_ids)
    assert sorted(a.agent_id for a in attempts) == sorted([small.agent_id] * 2 + [big.agent_id] * 4)
    release.touch()
    runs = [await team.wait_run(run_id, within=30) for run_id in run_ids]
    assert all(run.status == pb.RUN_STATUS_SUCCEEDED for run in runs)
    assert len(executions(marker)) == 6


async def test_kill_9_of_the_agent_with_results_on_disk_loses_none_and_runs_none_twice(
    coordinator: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    """Four results end together while no coordinator answers: they reach the outbox (in batches:
    how many results share one depends on when each ends, see test_outbox.py for a log read
    back after a crash), the agent is killed -9, and a new one delivers every result once."""
    # Heartbeat timeout 30 s: the leases outlive the coordinator's absence.
    team = await team_with_flow(coordinator, heartbeat="30s")
    marker, release = tmp_path / "ran", tmp_path / "release"
    config = agent_config(team, {f"{team.name}/work@1": held(marker, release)}, concurrency=4, protocol="v2")
    agent = agents.start(team, config)
    run_ids = [await team.start_run({"i": i}) for i in range(4)]
    await wait_until(lambda: len(executions(marker)) == 4, "the agent never ran the four tasks")
    coordinator.kill9()
    release.touch()  # the four end together while no coordinator answers
    outbox = agent.state_dir / "outbox"

    def results_on_disk() -> list[str]:
        return [entry.attempt_id for entry in entries_on_disk(outbox)]

    await wait_until(lambda: len(results_on_disk()) == 4, "the four results never reached the outbox")
    agent.kill()
    coordinator.restart()
    restarted = agents.start(team, config)  # same name: same agent id and state dir
    runs = [await team.wait_run(run_id, within=60) for run_id in run_ids]
    for i, run in enumerate(runs):
        assert run.status == pb.RUN_STATUS_SUCCEEDED, run
        assert json.loads(run.output_json) == {"i": i}
        assert [a.status for a in run.steps[0].attempts] == [pb.ATTEMPT_STATUS_SUCCEEDED]
    await restarted.wait_for_log("left in the outbox")
    assert len(executions(marker)) == 4
    await wait_until(lambda: not entries_on_disk(outbox), "the delivered results stayed in the outbox")


async def test_a_revoked_token_closes_the_stream(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process)
    made = await coordinator_process.acli("team", "token", "create", "agent", token=team.token)
    assert made.returncode == 0, made.stderr
    agent_token = made.stdout.strip()
    agent = agents.start(
        team,
        agent_config(team, {f"{team.name}/work@1": ECHO}, protocol="v2"),
        env={"ACCORD_TOKEN": agent_token},
    )
    await agent.wait_for_log("agent API v2")
    revoked = await coordinator_process.acli("team", "token", "revoke", "agent", token=team.token)
    assert revoked.returncode == 0, revoked.stderr
    await wait_until(
        lambda: (
            "stream of " + agent.agent_id + " closed: its token is refused now" in coordinator_process.log()
        ),
        "the coordinator never closed the agent's stream",
    )
    # The token never came from a file the agent could read again: it stops, exit 3.
    assert await asyncio.to_thread(agent.wait, 60) == 3, agent.log
    assert "unknown or revoked token" in agent.log


@pytest.mark.postgres
async def test_two_replicas_on_postgres_share_streams_and_run_each_task_once(
    pg_database: TestDatabase, agents: Agents, tmp_path: Path
) -> None:
    replicas = Replicas.start(tmp_path / "replicas", pg_database.schema_url(), 2)
    try:
        a, b = replicas
        team = await team_with_flow(a)
        marker = tmp_path / "ran"
        counting = shell(
            f"""
            import json, os, sys
            data = json.load(sys.stdin)
            with open({str(marker)!r}, "a") as f:
                f.write(os.environ["ACCORD_RUN_ID"] + "\\n")
            print(json.dumps({{"i": data["i"]}}))
            """
        )
        binding = {f"{team.name}/work@1": counting}
        # One agent streams from each replica; runs are started through both.
        for n, first in enumerate((a, b)):
            other = b if first is a else a
            agents.start(
                team,
                agent_config(
                    team, binding, coordinator=[first.address, other.address], concurrency=3, protocol="v2"
                ),
                name=f"agent-{n}",
            )
        for agent in agents.started:
            await agent.wait_for_log("agent API v2")
        through_b = Team(b, team.name, team.token)
        run_ids = [await (team if i % 2 else through_b).start_run({"i": i}) for i in range(20)]
        runs = [await team.wait_run(run_id, within=60) for run_id in run_ids]
        assert all(run.status == pb.RUN_STATUS_SUCCEEDED for run in runs), runs
        assert [json.loads(run.output_json) for run in runs] == [{"i": i} for i in range(20)]
        ran = executions(marker)
        assert sorted(ran) == sorted(run_ids)  # each task ran once
        served = {a.agent_id for a in await attempts_of(team, run_ids)}
        assert served <= {agent.agent_id for agent in agents.started}
    finally:
        replicas.kill_all()


async def test_an_agent_falls_back_to_v1_on_a_coordinator_without_streams(
    agents: Agents, tmp_path: Path
) -> None:
    """A coordinator that does not serve accord.agent.v2 (older, or --agent-streams off) answers the
    stream UNIMPLEMENTED: the agent says so in one line and serves through the v1 calls."""
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--agent-streams", "off")
    try:
        team = await team_with_flow(coordinator)
        agent = agents.start(team, agent_config(team, {f"{team.name}/work@1": ECHO}, protocol="v2"))
        run = await team.wait_run(await team.start_run({"i": 1}), within=30)
        assert run.status == pb.RUN_STATUS_SUCCEEDED, run
        assert agent.log.count("does not serve accord.agent.v2 (an older coordinator): using the v1") == 1
        assert "agent API v2" not in agent.log
    finally:
        coordinator.stop()


async def _open_raw(coordinator: CoordinatorProcess, token: str, *messages: Any) -> Any:
    """Send ``messages`` on a raw stream; the error that closed it (or None)."""
    async with grpc.aio.insecure_channel(coordinator.address) as channel:
        call = channel.stream_stream(
            "/accord.agent.v2.AgentStreamService/Connect",
            request_serializer=stream_pb.AgentMessage.SerializeToString,
            response_deserializer=stream_pb.CoordinatorMessage.FromString,
        )(metadata=(("authorization", f"Bearer {token}"),), timeout=30)
        try:
            for message in messages:
                await call.write(message)
            while True:
                answer = await call.read()
                if answer is grpc.aio.EOF:
                    return None
        except grpc.aio.AioRpcError as exc:
            return exc


async def test_the_stream_bounds_what_an_agent_sends(coordinator_process: CoordinatorProcess) -> None:
    team = await team_with_flow(coordinator_process)
    hello = stream_pb.AgentMessage(
        hello=stream_pb.Hello(
            registration=agent_pb.RegisterAgentRequest(
                agent_id=f"{team.name}-raw",
                bindings=[agent_pb.Binding(contract=f"{team.name}/work", major=1)],
            )
        )
    )
    no_hello = await _open_raw(coordinator_process, team.token, stream_pb.AgentMessage(credit=1))
    assert no_hello.code() == grpc.StatusCode.FAILED_PRECONDITION and "Hello" in no_hello.details()
    too_many = stream_pb.AgentMessage(
        heartbeats=[stream_pb.HeartbeatItem(attempt_id=f"x:y:{i}") for i in range(257)]
    )
    refused = await _open_raw(coordinator_process, team.token, hello, too_many)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT and "limit is 256" in refused.details()
    credit = await _open_raw(coordinator_process, team.token, hello, stream_pb.AgentMessage(credit=-1))
    assert credit.code() == grpc.StatusCode.INVALID_ARGUMENT and "credit" in credit.details()
    # More slots than the concurrency registered (1 here: none given).
    beyond = await _open_raw(coordinator_process, team.token, hello, stream_pb.AgentMessage(credit=2))
    assert beyond.code() == grpc.StatusCode.INVALID_ARGUMENT, beyond.details()
    assert "concurrency registered, 1" in beyond.details()
    huge = stream_pb.AgentMessage(
        results=[
            stream_pb.Result(
                request_id="r",
                attempt_id="x:y:1",
                complete=stream_pb.Complete(output_json=json.dumps({"x": "a" * (2 * 1024 * 1024)})),
            )
        ]
    )
    # A result too large is refused in its ack, naming the limit; the stream stays open.
    async with grpc.aio.insecure_channel(coordinator_process.address) as channel:
        call = channel.stream_stream(
            "/accord.agent.v2.AgentStreamService/Connect",
            request_serializer=stream_pb.AgentMessage.SerializeToString,
            response_deserializer=stream_pb.CoordinatorMessage.FromString,
        )(metadata=(("authorization", f"Bearer {team.token}"),), timeout=30)
        await call.write(hello)
        assert (await call.read()).HasField("welcome")
        await call.write(huge)
        (ack,) = (await call.read()).acks
        assert not ack.accepted and ack.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert "--max-payload" in ack.message
        call.cancel()
