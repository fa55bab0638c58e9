"""PostgreSQL lost while a coordinator runs (a real coordinator process, a real PostgreSQL, and a
real TCP proxy between them that the test cuts and restores): the coordinator keeps running,
answers health NOT_SERVING while the database is away and SERVING once it is back, and every
run in progress finishes with each step done once; a completion an agent sent meanwhile is
acknowledged once the database is back (or retried by the agent), never lost."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call, TestAgent
from tests.support.coordinator import CoordinatorProcess
from tests.support.postgres import TestDatabase
from tests.support.scenario import contract, start_run, wait_run
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres

WORKFLOW = """
workflow: payments/two-steps
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  first:
    contract: payments/effect@^1
    input: {order_id: "${input.order_id}"}
  second:
    contract: payments/effect@^1
    input: {order_id: "${steps.first.output.ref}"}
output: {ref: "${steps.second.output.ref}"}
"""
RUNS = 4
SERVICES = ["", "accord.agent.v1.AgentGatewayService", "accord.coordinator.v1.CoordinatorService"]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy.start("127.0.0.1", 5432)
    yield proxy
    proxy.close()


async def _health(address: str) -> set[int]:
    """The status of the server ("") and of each service; -1 where the check got no answer."""
    statuses = set()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in SERVICES:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
                statuses.add(answer.status)
            except grpc.aio.AioRpcError:
                statuses.add(-1)
    return statuses


@pytest.mark.parametrize(
    "store_retry",
    [
        "30s",  # the completions wait in the coordinator and are acknowledged once PostgreSQL is back
        "1s",  # the coordinator answers them UNAVAILABLE; the agent sends them again until acknowledged
    ],
)
async def test_postgresql_lost_and_back_while_runs_are_in_progress(
    pg_database: TestDatabase, proxy: TcpProxy, tmp_path: Path, store_retry: str
) -> None:
    direct = pg_database.schema_url()  # the test's own way in, past the proxy
    url = direct.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    assert f":{proxy.port}/" in url
    coordinator = CoordinatorProcess.start(
        tmp_path / "home", "--store", url, "--store-pool", "4", "--store-retry", store_retry
    )
    pid = coordinator.proc.pid if coordinator.proc else 0
    agent: TestAgent | None = None
    try:
        token = await coordinator.create_team("payments")
        await coordinator.register_contract(
            token,
            contract(
                "payments/effect",
                extra="timeouts: {heartbeat: 2s}\nretry: {max_attempts: 5, initial_backoff: 50ms}\n",
            ),
        )
        await coordinator.register_workflow(token, WORKFLOW)

        # The team's engine: every delivery counted by its idempotency key. The first steps wait
        # until the test lets them finish: half of them while the database is away, the others
        # once it is back (they run on through the outage).
        deliveries: collections.Counter[str] = collections.Counter()
        orders = [f"o{i}" for i in range(RUNS)]
        during, after = orders[::2], orders[1::2]
        release = {order: asyncio.Event() for order in orders}

        async def effect(call: Call) -> dict[str, str]:
            deliveries[call.key] += 1
            if call.task.step_id == "first":
                await release[call.input["order_id"]].wait()
            return {"ref": f"{call.input['order_id']}-{call.task.step_id}"}

        agent = TestAgent(
            coordinator.address, token, "payments", {"payments/effect@1": effect}, concurrency=RUNS
        )
        await agent.start()
        async with coordinator.client(token) as client:
            run_ids = [
                (await start_run(client, "payments/two-steps", {"order_id": order})).run.run_id
                for order in orders
            ]
            await wait_until(lambda: len(deliveries) == RUNS, "every run's first step is with the agent")
            assert await _health(coordinator.address) == {SERVING}

            proxy.cut()
            await wait_until(
                lambda: _is(coordinator.address, NOT_SERVING),
                "health NOT_SERVING while PostgreSQL is away",
                within=60,
            )
            # Half the first steps finish now: their completions go to a coordinator without its
            # database.
            for order in during:
                release[order].set()
            await wait_until(
                lambda: sum(r.outcome == "completed" for r in agent.records) == len(during),  # type: ignore[union-attr]
                "the agent sends its completions",
            )
            if store_retry == "1s":
                await wait_until(
                    lambda: agent.report_retries >= len(during),  # type: ignore[union-attr]
                    "the coordinator answers completions UNAVAILABLE and the agent sends them again",
                    within=60,
                )
            # The leases fall due while the agent cannot renew them (heartbeats fail too): that
            # must not count against it once the database is back, or a step still running would
            # be given to the agent again.
            await wait_until(lambda: _overdue_leases(direct) == RUNS, "every first step's lease is overdue")
            assert coordinator.proc is not None and coordinator.proc.poll() is None

            proxy.restore()
            await wait_until(lambda: _is(coordinator.address, SERVING), "health SERVING again", within=60)
            # The overdue leases are dealt with (extended, not fired) before the rest finish.
            await wait_until(lambda: _overdue_leases(direct) == 0, "no lease is overdue any more", within=60)
            for order in after:
                release[order].set()
            for run_id in run_ids:
                run = await wait_run(client, run_id, within=120)
                assert run.status == pb.RUN_STATUS_SUCCEEDED, run

        # Each step was delivered once and its completion acknowledged: nothing acknowledged was
        # lost, nothing was done twice.
        assert len(deliveries) == 2 * RUNS and set(deliveries.values()) == {1}, deliveries
        await wait_until(
            lambda: all(r.accepted is not None for r in agent.records),  # type: ignore[union-attr]
            "the agent has every answer to its completions",
        )
        assert [r.accepted for r in agent.records] == [True] * (2 * RUNS), agent.records
        # The same process throughout, and one line each way in its log.
        assert coordinator.proc is not None and coordinator.proc.poll() is None
        assert coordinator.proc.pid == pid
        log = coordinator.log()
        assert log.count("is unreachable (") == 1, log
        assert log.count("is reachable again") == 1, log
        assert f"PostgreSQL at 127.0.0.1:{proxy.port}/{pg_database.name} is unreachable" in log, log
    finally:
        if agent is not None:
            await agent.stop()
        coordinator.kill9()


def _overdue_leases(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM timers WHERE kind = 'lease' AND due_ms < %s", (int(time.time() * 1000),)
        ).fetchone()
    return int(row[0]) if row else 0


async def _is(address: str, status: int) -> bool:
    return await _health(address) == {status}
