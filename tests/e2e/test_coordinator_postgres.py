"""`accord coordinator start --store postgresql://...`: real coordinator processes on a real
PostgreSQL (one database for the module; tests that need an empty one get a fresh schema in it).

Two coordinators serve side by side: tokens and contracts shared, clients that move on, a commit on
one waking what waits on the other. Kills and restarts under load: test_replicas_chaos.py.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.tokens import hash_token
from tests.support.agent import Call, TaskFailed, TestAgent
from tests.support.coordinator import ACCORD, CoordinatorProcess, coordinator_env
from tests.support.postgres import TestDatabase
from tests.support.scenario import contract, start_run, wait_run

pytestmark = pytest.mark.postgres

# Shorter than an agent's 60 s long poll and the 600 s fallback re-read the wake-up tests set:
# only a wake-up finishes those within it (it guards against a hang, it times nothing).
WAKE_GUARD_S = 45.0

FLOW = """
workflow: payments/flow
input:
  type: object
  required: [order_id]
  properties: {order_id: {type: string}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
output:
  ref: "${steps.charge.output.ref}"
"""


def _admin_hash(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT value FROM settings WHERE key = 'admin_token_hash'").fetchone()
    assert row is not None
    return str(row[0])


async def test_a_coordinator_on_postgresql_serves_a_run_end_to_end(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--store", pg_database.url, "--store-pool", "4")
    agent: TestAgent | None = None
    try:
        assert coordinator.admin_token, coordinator.log()
        assert _admin_hash(pg_database.url) == hash_token(coordinator.admin_token)
        assert not (coordinator.home / "coordinator.db").exists()  # no SQLite file beside it
        payments = await coordinator.create_team("payments")
        await coordinator.register_contract(
            payments, contract("payments/charge", extra="retry: {max_attempts: 3, initial_backoff: 50ms}\n")
        )
        await coordinator.register_workflow(payments, FLOW)

        async def charge(call: Call) -> dict[str, str]:
            if call.attempt == 1:  # the retry's backoff is a durable timer, claimed from PostgreSQL
                raise TaskFailed("Declined", "try again")
            return {"ref": f"ch-{call.input['order_id']}"}

        agent = TestAgent(coordinator.address, payments, "payments", {"payments/charge@1": charge})
        await agent.start()
        async with coordinator.client(payments) as client:
            started = await start_run(client, "payments/flow", {"order_id": "o-1"}, key="order-1")
            run = await wait_run(client, started.run.run_id, within=30)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
            assert run.output_json.replace(" ", "") == '{"ref":"ch-o-1"}'
            again = await start_run(client, "payments/flow", {"order_id": "o-1"}, key="order-1")
            assert again.run.run_id == started.run.run_id  # the idempotency key, kept by PostgreSQL

        # Everything is in the database: a restarted coordinator has it.
        with psycopg.connect(pg_database.url) as conn:
            attempts = conn.execute(
                "SELECT count(*) FROM attempts WHERE run_id = %s", (started.run.run_id,)
            ).fetchone()
            status = conn.execute(
                "SELECT status FROM runs WHERE run_id = %s", (started.run.run_id,)
            ).fetchone()
        assert attempts == (2,) and status == ("succeeded",)
        await agent.stop()
        agent = None
        coordinator.restart()
        listed = await coordinator.acli("runs", "list", "--json", token=payments)
        assert listed.returncode == 0 and started.run.run_id in listed.stdout, listed.stderr
    finally:
        if agent is not None:
            await agent.stop()
        coordinator.kill9()


async def test_coordinators_started_at_once_on_an_empty_database_share_one_admin_token(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    url = pg_database.schema_url()
    replicas = [CoordinatorProcess.spawn(tmp_path / f"home-{n}", "--store", url) for n in range(2)]
    try:
        for replica in replicas:
            replica.wait_started()
        written = [r for r in replicas if (r.home / "admin.token").exists()]
        assert len(written) == 1, [r.log() for r in replicas]
        token = written[0].admin_token
        assert _admin_hash(url) == hash_token(token)
        other = next(r for r in replicas if r is not written[0])
        assert "created by another coordinator" in other.log(), other.log()
        # Both serve, both take the one token, and both see what the other wrote.
        other.admin_token = token
        await other.create_team("payments")
        for replica in replicas:
            async with replica.client(token) as client:
                teams = await client.coordinator.ListTeams(pb.ListTeamsRequest())
            assert [t.name for t in teams.teams] == ["payments"]
    finally:
        for replica in replicas:
            replica.kill9()


def test_a_postgresql_that_is_not_there_is_exit_3_naming_host_and_port(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [
            ACCORD,
            "coordinator",
            "start",
            "--store",
            "postgresql://postgres@127.0.0.1:1/x",
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        env=coordinator_env(home, ACCORD_UI="off"),
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot connect to PostgreSQL at 127.0.0.1:1/x: Connection refused"), (
        lines
    )
    assert not (home / "coordinator.json").exists() and not (home / "admin.token").exists()


async def test_the_store_comes_from_accord_store_and_a_db_flag_wins_over_it(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    url = pg_database.schema_url()
    from_env = CoordinatorProcess.start(tmp_path / "env", env={"ACCORD_STORE": url})
    try:
        await from_env.create_team("crm")
        assert _admin_hash(url) == hash_token(from_env.admin_token)
        assert not from_env.db.exists()
    finally:
        from_env.kill9()
    # The flag on the command line wins over the variable: SQLite, not the PostgreSQL above.
    db = tmp_path / "flag" / "state.db"
    from_flag = CoordinatorProcess.start(tmp_path / "flag", "--db", str(db), env={"ACCORD_STORE": url})
    try:
        async with from_flag.client() as client:
            teams = await client.coordinator.ListTeams(pb.ListTeamsRequest())
        assert list(teams.teams) == [] and db.exists()
    finally:
        from_flag.kill9()


async def test_a_second_coordinator_joins_a_database_the_first_made(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    url = pg_database.schema_url()
    first = CoordinatorProcess.start(tmp_path / "first", "--store", url)
    try:
        await first.create_team("warehouse")
        second = await asyncio.to_thread(CoordinatorProcess.start, tmp_path / "second", "--store", url)
        try:
            assert not (second.home / "admin.token").exists()
            second.admin_token = first.admin_token
            async with second.client() as client:
                teams = await client.coordinator.ListTeams(pb.ListTeamsRequest())
            assert [t.name for t in teams.teams] == ["warehouse"]
        finally:
            second.kill9()
    finally:
        first.kill9()


async def test_two_coordinators_on_one_database_see_each_others_tokens_and_contracts(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """A contract registered through A is callable through B at once; a token rotated through A
    is refused by B within a second; the CLI given both addresses moves on when A is gone."""
    url = pg_database.schema_url()
    a = CoordinatorProcess.start(tmp_path / "a", "--store", url)
    b: CoordinatorProcess | None = None
    try:
        b = await asyncio.to_thread(CoordinatorProcess.start, tmp_path / "b", "--store", url)
        b.admin_token = a.admin_token
        payments = await a.create_team("payments")
        await a.register_contract(payments, contract("payments/charge"))
        # Registered through A, at once through B: a workflow calling it type-checks there.
        await b.register_workflow(payments, FLOW)

        async def charge(call: Call) -> dict[str, str]:
            return {"ref": f"ch-{call.input['order_id']}"}

        agent = TestAgent(b.address, payments, "payments", {"payments/charge@1": charge})
        await agent.start()
        try:
            async with b.client(payments) as client:
                started = await start_run(client, "payments/flow", {"order_id": "o-1"})
                run = await wait_run(client, started.run.run_id, within=30)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run
        finally:
            await agent.stop()

        rotated = (await a.acli("team", "rotate-token", "payments", "--grace", "0")).stdout.strip()
        assert rotated and rotated != payments

        async def refused_by_b() -> bool:
            try:
                async with b.client(payments) as client:  # type: ignore[union-attr]
                    await client.coordinator.ListTeams(pb.ListTeamsRequest())
            except Exception as exc:
                return "UNAUTHENTICATED" in repr(exc) or "token" in str(exc)
            return False

        deadline = asyncio.get_running_loop().time() + 5
        while not await refused_by_b():
            assert asyncio.get_running_loop().time() < deadline, "B still takes the rotated-away token"
            await asyncio.sleep(0.1)
        async with b.client(rotated) as client:
            teams = await client.coordinator.ListTeams(pb.ListTeamsRequest())
        assert [t.name for t in teams.teams] == ["payments"]

        # The CLI given both: A is gone, B answers, and the CLI says so.
        a.kill9()
        env = {
            **coordinator_env(a.home),
            "ACCORD_COORDINATOR": f"{a.address},{b.address}",
            "ACCORD_TOKEN": rotated,
        }
        listed = await asyncio.to_thread(
            subprocess.run,
            [ACCORD, "runs", "list", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert started.run.run_id in listed.stdout
        assert f"the coordinator at {a.address} stopped answering" in listed.stderr
    finally:
        a.kill9()
        if b is not None:
            b.kill9()


async def test_a_commit_on_one_coordinator_wakes_polls_and_watchers_on_the_other(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """Runs started through A, served by an agent long-polling B (60 s polls), watched on A and
    on B. The fallback re-reads come only every 600 s here (ACCORD_REPLICA_POLL), so only the
    wake-ups (LISTEN/NOTIFY) can finish these within the test's guard: B's poll is woken by A's
    offer, A's watcher by B's commits; then the other way round."""
    url = pg_database.schema_url()
    slow_fallback = {"ACCORD_REPLICA_POLL": "600"}
    a = CoordinatorProcess.start(tmp_path / "a", "--store", url, env=slow_fallback)
    b: CoordinatorProcess | None = None
    agents: list[TestAgent] = []
    try:
        b = await asyncio.to_thread(
            CoordinatorProcess.start, tmp_path / "b", "--store", url, env=slow_fallback
        )
        b.admin_token = a.admin_token
        payments = await a.create_team("payments")
        await a.register_contract(payments, contract("payments/charge"))
        await a.register_workflow(payments, FLOW)

        async def charge(call: Call) -> dict[str, str]:
            return {"ref": f"ch-{call.input['order_id']}"}

        for starter, server in ((a, b), (b, a)):
            agent = TestAgent(
                server.address, payments, "payments", {"payments/charge@1": charge}, poll_wait_ms=60_000
            )
            agents.append(agent)
            await agent.start()
            async with starter.client(payments) as on_starter, server.client(payments) as on_server:
                started = await start_run(on_starter, "payments/flow", {"order_id": f"o-{len(agents)}"})
                run_id = started.run.run_id

                seen = await asyncio.wait_for(
                    asyncio.gather(_last_update(on_starter, run_id), _last_update(on_server, run_id)),
                    WAKE_GUARD_S,
                )
            assert [r.status for r in seen] == [pb.RUN_STATUS_SUCCEEDED] * 2, seen
            await agent.stop()
            agents.remove(agent)
    finally:
        for agent in agents:
            await agent.stop()
        a.kill9()
        if b is not None:
            b.kill9()


async def _last_update(client: Any, run_id: str) -> pb.Run:
    """The last run WatchRun sent: the stream ends once the run is terminal."""
    updates = [u.run async for u in client.coordinator.stream("WatchRun", pb.WatchRunRequest(run_id=run_id))]
    return updates[-1]


async def test_every_coordinator_explains_a_waiting_step_by_the_agents_polling_another(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """The agent long-polls B; A, asked why a step waits, knows of it (B's presence hints)
    instead of saying no agent serves the contract."""
    url = pg_database.schema_url()
    a = CoordinatorProcess.start(tmp_path / "a", "--store", url)
    b: CoordinatorProcess | None = None
    agent: TestAgent | None = None
    release = asyncio.Event()
    try:
        b = await asyncio.to_thread(CoordinatorProcess.start, tmp_path / "b", "--store", url)
        b.admin_token = a.admin_token
        payments = await a.create_team("payments")
        await a.register_contract(payments, contract("payments/charge"))
        await a.register_workflow(payments, FLOW)

        async def charge(call: Call) -> dict[str, str]:
            await release.wait()
            return {"ref": f"ch-{call.input['order_id']}"}

        agent = TestAgent(b.address, payments, "payments", {"payments/charge@1": charge}, concurrency=1)
        await agent.start()
        async with a.client(payments) as client:
            first = await start_run(client, "payments/flow", {"order_id": "o-1"})
            second = await start_run(client, "payments/flow", {"order_id": "o-2"})

            async def reasons() -> list[str]:
                said = []
                for run_id in (first.run.run_id, second.run.run_id):
                    run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
                    said += [s.waiting_reason for s in run.steps if s.waiting_reason]
                return said

            # One run's step is with the agent (concurrency 1, held), the other's queued. Until
            # B's first presence hint reaches A, A may say no agent serves it; then it knows.
            deadline = asyncio.get_running_loop().time() + 30
            while not any(
                "1 agent of team payments serving payments/charge@1 is busy" in r for r in await reasons()
            ):
                assert asyncio.get_running_loop().time() < deadline, await reasons()
                await asyncio.sleep(0.1)
            release.set()
            for run_id in (first.run.run_id, second.run.run_id):
                assert (await wait_run(client, run_id, within=30)).status == pb.RUN_STATUS_SUCCEEDED
    finally:
        release.set()
        if agent is not None:
            await agent.stop()
        a.kill9()
        if b is not None:
            b.kill9()


async def test_a_large_mapped_input_is_checked_in_a_worker_on_postgresql(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """The check_input timer (issue 15) on the PostgreSQL store: armed in the transition's commit,
    claimed and fired after the worker's verdict, valid and invalid alike."""
    from tests.e2e.test_hostile_schemas import _fans_world

    url = pg_database.schema_url()  # an empty schema of its own: this coordinator makes the admin token
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--store", url, "--store-pool", "4")
    try:
        acme, agent, calls = await _fans_world(coordinator)
        try:
            async with coordinator.client(acme) as client:
                good = await start_run(client, "acme/fans", {"s": "x" * 7_000})
                bad = await start_run(client, "acme/fans", {"s": "X" * 7_000})
                good_run = await wait_run(client, good.run.run_id, within=120)
                bad_run = await wait_run(client, bad.run.run_id, within=120)
        finally:
            await agent.stop()
        assert good_run.status == pb.RUN_STATUS_SUCCEEDED, good_run
        assert bad_run.status == pb.RUN_STATUS_FAILED, bad_run
        assert "the mapped input does not match acme/wide@1.0.0" in bad_run.error.message, bad_run.error
        assert len(calls) == 1
        assert "Traceback" not in coordinator.log()
    finally:
        coordinator.kill9()
