"""Several coordinators (replicas) on one PostgreSQL database, each answering for work another
one did: a task offered by one is claimed and reported through another, a workflow registered
through one runs through another at once, and a commit on one wakes what waits on another (a
watch, ``run --wait``, a StartRun
waiting for its run's end, an agent's long poll). Tokens rotated through one and refused by another:
test_coordinator_postgres.py.

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
import yaml

import coordinator.cli.server_cmd  # noqa: F401 - registers `coordinator start`
from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import RemoteError
from team_agent.testing import AgentProcess
from tests.support.agent import Call, Handler, TestAgent
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas, stored_runs
from tests.support.scenario import TERMINAL, contract, start_run, wait_run
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


async def test_a_workflow_registered_through_one_replica_runs_through_another_at_once(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """Contracts and a workflow registered through A: the run is started through B the moment
    A answered (B had already read the registry, before any of it existed)."""
    url = pg_database.schema_url()
    replicas = Replicas.start(tmp_path, url, 2)
    a, b = replicas
    agent: TestAgent | None = None
    try:
        token = await a.create_team("payments")
        async with b.client(token) as client:  # B reads (and caches) the empty registry
            listed = await client.coordinator.ListContracts(pb.ListContractsRequest())
            assert list(listed.contracts) == []
            for name in ("first", "second"):
                await a.register_contract(token, contract(f"payments/{name}"))
            await a.register_workflow(token, TWO_STEPS)
            started = await start_run(client, "payments/two-steps", {"order_id": "o-1"})

            async def step(call: Call) -> dict[str, str]:
                return {"ref": f"{call.input['order_id']}>{call.task.step_id}"}

            handlers: dict[str, Handler] = {"payments/first@1": step, "payments/second@1": step}
            agent = TestAgent(b.address, token, "payments", handlers, poll_wait_ms=500)
            await agent.start()
            run = await wait_run(client, started.run.run_id, within=60)
        assert run.status == pb.RUN_STATUS_SUCCEEDED, run
        assert json.loads(run.output_json) == {"ref": "o-1>first>second"}
    finally:
        if agent is not None:
            await agent.stop()
        replicas.kill_all()


# ---------- wake-ups across replicas ----------
#
# The replicas below re-read the store for a change made elsewhere only every 600 s
# (--replica-poll): within the tests' bounds, only the wake-up another replica's commit sends
# (docs/production.md, "Several coordinators on one database") can end their wait.

NO_POLL = ("--replica-poll", "600")


ONE_STEP = """
workflow: payments/flow
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
output: {ref: "${steps.charge.output.ref}"}
"""


async def _charge(call: Call) -> dict[str, str]:
    return {"ref": f"ch-{call.input['order_id']}"}


async def _payments(replicas: Replicas) -> str:
    token = await replicas[0].create_team("payments")
    await replicas[0].register_contract(token, contract("payments/charge"))
    await replicas[0].register_workflow(token, ONE_STEP)
    return token


async def test_run_wait_on_one_replica_returns_when_agents_on_another_finish_the_run(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """``accord run --wait`` given A only; the one agent serves through B (it polls B often, so
    that it gets the task whichever way): the CLI returns the run's output. (The CLI renews its
    watch every 2 s; the test below holds one stream, which only a wake-up can end.)"""
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2, *NO_POLL)
    a, b = replicas
    agent: TestAgent | None = None
    try:
        token = await _payments(replicas)
        agent = TestAgent(b.address, token, "payments", {"payments/charge@1": _charge}, poll_wait_ms=500)
        await agent.start()
        result = await a.acli(
            "run",
            "payments/flow",
            "--input",
            '{"order_id": "o-1"}',
            "--wait",
            "--timeout",
            "45s",
            token=token,
        )
        assert result.returncode == 0, (result.stderr, replicas.logs())
        assert json.loads(result.stdout) == {"ref": "ch-o-1"}
        assert [r.accepted for r in agent.records] == [True]
    finally:
        if agent is not None:
            await agent.stop()
        replicas.kill_all()


async def test_a_watch_on_one_replica_is_woken_by_a_run_finished_through_another(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """One WatchRun stream on A (never renewed, unlike run --wait's) while the run is started,
    claimed and finished through B: it sends the finished run and ends."""
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2, *NO_POLL)
    a, b = replicas
    agent: TestAgent | None = None
    try:
        token = await _payments(replicas)
        async with b.client(token) as through_b, a.client(token) as through_a:
            started = await start_run(through_b, "payments/flow", {"order_id": "o-1"})
            updates: list[pb.Run] = []

            async def watch() -> None:
                request = pb.WatchRunRequest(run_id=started.run.run_id)
                async for update in through_a.coordinator.stream("WatchRun", request):
                    updates.append(update.run)

            watching = asyncio.create_task(watch())
            await wait_until(lambda: updates, "the watch on A sent the run as it is", 60)
            assert updates[0].status not in TERMINAL, updates[0]
            agent = TestAgent(b.address, token, "payments", {"payments/charge@1": _charge})
            await agent.start()
            await asyncio.wait_for(watching, 60)  # an upper bound, far below the 600 s re-read
        assert updates[-1].status == pb.RUN_STATUS_SUCCEEDED, updates[-1]
        assert json.loads(updates[-1].output_json) == {"ref": "ch-o-1"}
    finally:
        if agent is not None:
            await agent.stop()
        replicas.kill_all()


async def test_a_start_waiting_on_one_replica_answers_when_the_run_ends_through_another(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """StartRun with wait_ms on A; the one agent serves through B, which claims and finishes the
    run: A's answer is the finished run, woken by B's hint (A's own re-read is 600 s away)."""
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2, *NO_POLL)
    a, b = replicas
    agent: TestAgent | None = None
    try:
        token = await _payments(replicas)
        agent = TestAgent(b.address, token, "payments", {"payments/charge@1": _charge})
        await agent.start()
        async with a.client(token) as through_a:
            request = pb.StartRunRequest(
                workflow="payments/flow", input_json=json.dumps({"order_id": "o-1"}), wait_ms=60_000
            )
            started = await asyncio.wait_for(through_a.coordinator.StartRun(request), 90)
        assert started.run.status == pb.RUN_STATUS_SUCCEEDED, (started.run, replicas.logs())
        assert json.loads(started.run.output_json) == {"ref": "ch-o-1"}
        assert len(agent.records) == 1  # its one task, through B
    finally:
        if agent is not None:
            await agent.stop()
        replicas.kill_all()


async def test_an_agent_long_polling_one_replica_gets_a_task_offered_through_another(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """The agent's one long poll (60 s) waits on A, after A read the queue empty; the run is
    started through B, which offers the task: the poll answers with it."""
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2, *NO_POLL)
    a, b = replicas
    try:
        token = await _payments(replicas)
        binding = agent_pb.Binding(contract="payments/charge", major=1, engine="python")
        register = agent_pb.RegisterAgentRequest(agent_id="agent-1", bindings=[binding], concurrency=1)
        async with a.client(token) as through_a, b.client(token) as through_b:
            await through_a.agent.RegisterAgent(register)
            # A reads the queue empty now; the long poll below finds it so (unless the offer is
            # older than A's belief: then it reads the store and the test proves nothing, but
            # never fails for that).
            empty = await through_a.agent.PollTask(agent_pb.PollTaskRequest(agent_id="agent-1", wait_ms=0))
            assert not empty.HasField("task")
            polling = asyncio.create_task(
                through_a.agent.PollTask(
                    agent_pb.PollTaskRequest(agent_id="agent-1", wait_ms=60_000), timeout=90
                )
            )
            started = await start_run(through_b, "payments/flow", {"order_id": "o-1"})
            answer = await polling
            assert answer.task.attempt_id == f"{started.run.run_id}:charge:1", answer
            done = await through_a.agent.CompleteTask(
                agent_pb.CompleteTaskRequest(
                    agent_id="agent-1",
                    attempt_id=answer.task.attempt_id,
                    output_json=json.dumps({"ref": "r-1"}),
                    request_id="complete-1",
                )
            )
            assert done.accepted
            run = await wait_run(through_b, started.run.run_id, within=60)
        assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    finally:
        replicas.kill_all()


async def test_an_agent_given_several_replicas_sends_its_spans_to_one_that_answers(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    """A real agent process given [A, B]; A is gone before the agent starts. Its work goes
    through B, and so do its spans: the run's trace, read through B, has the agent's."""
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2)
    a, b = replicas
    agent: AgentProcess | None = None
    try:
        token = await _payments(replicas)
        a.kill9()
        command = [
            "python3",
            "-c",
            "import json, sys; print(json.dumps({'ref': 'ch-' + json.load(sys.stdin)['order_id']}))",
        ]
        config = {
            "team": "payments",
            "coordinator": [a.address, b.address],
            "token": "${secret:ACCORD_TOKEN}",
            "implements": {"payments/charge@1": {"engine": "shell", "with": {"command": command}}},
        }
        (tmp_path / "agent.yaml").write_text(yaml.safe_dump(config))
        agent = AgentProcess(tmp_path / "agent.yaml", workdir=tmp_path, env={"ACCORD_TOKEN": token}).start()
        async with b.client(token) as client:
            started = await start_run(client, "payments/flow", {"order_id": "o-1"})
            run = await wait_run(client, started.run.run_id, within=60)
            assert run.status == pb.RUN_STATUS_SUCCEEDED, run

            async def agent_spans() -> list[str]:
                trace = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run.run_id))
                return [s.name for s in trace.spans if s.name.startswith("agent.")]

            try:
                names = await wait_until(agent_spans, "the agent's spans in the run's trace", 60)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{agent.log[-3000:]}") from None
        assert "agent.receive" in names, names
    finally:
        if agent is not None:
            await asyncio.to_thread(agent.stop)
        replicas.kill_all()
