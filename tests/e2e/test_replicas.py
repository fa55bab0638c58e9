"""Several coordinators (replicas) on one PostgreSQL database, each answering for work another
one did: a task offered by one is claimed through another, a run finished by one's agents is
seen through another, a token revoked through one is refused by another.

Real coordinator processes on the real PostgreSQL; what the replicas hold is checked in the
database itself where a replica's answer alone could hide a difference. Chaos (replicas killed
and restarted under load): test_replicas_chaos.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import psycopg
import pytest

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts.errors import RemoteError
from tests.support.agent import Call, TestAgent
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas, stored_runs
from tests.support.scenario import contract, start_run
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres

TWO_STEPS = """
workflow: payments/two-steps
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  first:
    contract: payments/first@^1
    input: {order_id: "${input.order_id}"}
  second:
    contract: payments/second@^1
    input: {order_id: "${steps.first.output.ref}"}
output: {ref: "${steps.second.output.ref}"}
"""


def _stored_status(url: str, run_id: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    return str(row[0]) if row else ""


def _offered(url: str, attempt_id: str) -> bool:
    with psycopg.connect(url) as conn:
        return (
            conn.execute("SELECT 1 FROM offers WHERE attempt_id = %s", (attempt_id,)).fetchone() is not None
        )


async def test_a_task_offered_by_one_replica_is_claimed_through_another_that_drives_the_run(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """A starts the run (and keeps its state cached); the first step is done through B, which
    offers the second; an agent polling A then claims it. A's cached state does not know the
    second step's attempt: it must read the run again, not take the offer for a stale one."""
    url = pg_database.schema_url()
    replicas = Replicas.start(tmp_path, url, 2)
    a, b = replicas
    agents: list[TestAgent] = []
    try:
        token = await a.create_team("payments")
        for name in ("first", "second"):
            await a.register_contract(token, contract(f"payments/{name}"))
        await a.register_workflow(token, TWO_STEPS)

        async def step(call: Call) -> dict[str, str]:
            return {"ref": f"{call.input['order_id']}>{call.task.step_id}"}

        async with a.client(token) as client:
            started = await start_run(client, "payments/two-steps", {"order_id": "o-1"})
        run_id = started.run.run_id
        agents.append(TestAgent(b.address, token, "payments", {"payments/first@1": step}, poll_wait_ms=500))
        await agents[-1].start()
        await wait_until(
            lambda: asyncio.to_thread(_offered, url, f"{run_id}:second:1"),
            "the second step offered (by B)",
            60,
        )
        agents.append(TestAgent(a.address, token, "payments", {"payments/second@1": step}, poll_wait_ms=500))
        await agents[-1].start()
        try:
            await wait_until(
                lambda: asyncio.to_thread(lambda: _stored_status(url, run_id) == "succeeded"),
                "the run succeeded",
                60,
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{stored_runs(url, [run_id])}\n{replicas.logs()}") from None
        assert [(r.step_id, r.attempt, r.outcome, r.accepted) for r in agents[1].records] == [
            ("second", 1, "completed", True)
        ]
    finally:
        for agent in agents:
            await agent.stop()
        replicas.kill_all()


async def test_an_agent_reports_through_one_replica_a_task_it_took_through_another(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """A starts the run and keeps its state cached (the step's attempt scheduled); the agent
    takes the task through B, then heartbeats and completes it through A (its client moved on).
    A's cache is behind: the agent must not be told its lease is lost nor its result ignored."""
    url = pg_database.schema_url()
    replicas = Replicas.start(tmp_path, url, 2)
    a, b = replicas
    try:
        token = await a.create_team("payments")
        await a.register_contract(token, contract("payments/first", extra="timeouts: {heartbeat: 30s}\n"))
        await a.register_contract(token, contract("payments/second"))
        await a.register_workflow(token, TWO_STEPS)
        async with a.client(token) as client:
            started = await start_run(client, "payments/two-steps", {"order_id": "o-1"})
        run_id = started.run.run_id
        binding = agent_pb.Binding(contract="payments/first", major=1, engine="python")
        register = agent_pb.RegisterAgentRequest(agent_id="agent-1", bindings=[binding], concurrency=1)
        async with b.client(token) as through_b, a.client(token) as through_a:
            await through_b.agent.RegisterAgent(register)
            answer = await through_b.agent.PollTask(
                agent_pb.PollTaskRequest(agent_id="agent-1", wait_ms=30_000)
            )
            assert answer.task.attempt_id == f"{run_id}:first:1", answer

            async def known_to_a() -> bool:  # agents are read again from the store every 0.5 s
                try:
                    await through_a.agent.Heartbeat(
                        agent_pb.HeartbeatRequest(agent_id="agent-1", attempt_id=answer.task.attempt_id)
                    )
                except RemoteError as exc:
                    return "not registered" not in str(exc)
                return True

            await wait_until(known_to_a, "A knows the agent registered through B", 30)
            beat = await through_a.agent.Heartbeat(
                agent_pb.HeartbeatRequest(agent_id="agent-1", attempt_id=answer.task.attempt_id)
            )
            assert not beat.lease_lost and not beat.cancel_requested, beat
            done = await through_a.agent.CompleteTask(
                agent_pb.CompleteTaskRequest(
                    agent_id="agent-1",
                    attempt_id=answer.task.attempt_id,
                    output_json=json.dumps({"ref": "r-1"}),
                    request_id="complete-1",
                )
            )
            assert done.accepted
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT data_json FROM attempts WHERE attempt_id = %s", (answer.task.attempt_id,)
            ).fetchone()
        assert row is not None and json.loads(row[0])["status"] == "succeeded", row
    finally:
        replicas.kill_all()
