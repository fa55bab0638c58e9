"""Several coordinators (replicas) on one PostgreSQL database, each answering for work another
one did: a task offered by one is claimed through another, a run finished by one's agents is
seen through another, a token revoked through one is refused by another.

Real coordinator processes on the real PostgreSQL; what the replicas hold is checked in the
database itself where a replica's answer alone could hide a difference. Chaos (replicas killed
and restarted under load): test_replicas_chaos.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

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
