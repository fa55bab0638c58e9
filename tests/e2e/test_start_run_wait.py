"""StartRun's ``wait_ms`` against the real coordinator: a start that waits answers with the run
once it has ended (succeeded or failed, redacted as GetRun would show it), or as it is once the
wait is over while the run goes on; the same request sent again finds its run and waits for it;
a wait out of range is refused naming the field; a wait ends UNAUTHENTICATED once its token is
revoked, leaving the run going; and a waiting start is counted with the calls that wait (the
edge's long budget), not with the ones that work: with ``--max-inflight 1`` another call is still
answered while it waits, and when the long budget is full the start answers without waiting.
Across replicas: test_replicas.py."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import grpc
import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from contracts.errors import InvalidArgumentError, UnauthenticatedError
from tests.e2e.test_coordinator_start_run import CHARGE, RAW, WORKFLOW
from tests.support.agent import Call, TaskFailed, TestAgent
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import TERMINAL, wait_run

# Only an upper bound against a hang: each wait below ends at the event it waits for.
HANG_S = 60.0


async def _payments(coordinator: CoordinatorProcess) -> str:
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, CHARGE)
    await coordinator.register_workflow(token, WORKFLOW)  # payments/pay: its card token is sensitive
    return token


async def _charge(call: Call) -> dict[str, str]:
    if call.input["order_id"] == "bad":
        raise TaskFailed("CardDeclined", "card declined", retryable=False)
    return {"ref": f"ch-{call.input['order_id']}"}


def _request(value: dict[str, str], wait_ms: int, request_id: str = "") -> pb.StartRunRequest:
    return pb.StartRunRequest(
        workflow="payments/pay", input_json=json.dumps(value), wait_ms=wait_ms, request_id=request_id
    )


async def test_a_start_that_waits_answers_with_the_ended_run_as_get_run_shows_it(
    coordinator: CoordinatorProcess, test_agent
) -> None:
    token = await _payments(coordinator)
    await test_agent(token, "payments", {"payments/charge@1": _charge})
    async with coordinator.client(token) as client:
        started = await client.coordinator.StartRun(_request(RAW, 30_000), timeout=HANG_S)
        assert started.created
        assert started.run.status == pb.RUN_STATUS_SUCCEEDED, started.run
        assert json.loads(started.run.output_json) == {"ref": "ch-o-1"}
        # The same view as GetRun's, redaction included (the card token is sensitive: its
        # owner's own step input shows it, the run's list of sensitive flows names it).
        shown = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=started.run.run_id))).run
        assert started.run == shown
        assert list(started.run.sensitive_flows), started.run

        failed = await client.coordinator.StartRun(_request({"order_id": "bad"}, 30_000), timeout=HANG_S)
        assert failed.run.status == pb.RUN_STATUS_FAILED, failed.run
        assert "card declined" in failed.run.error.message


async def test_a_start_that_waits_answers_once_the_wait_is_over_and_the_run_goes_on(
    coordinator: CoordinatorProcess,
) -> None:
    token = await _payments(coordinator)
    request_id = uuid.uuid4().hex
    async with coordinator.client(token) as client:
        began = time.monotonic()
        started = await client.coordinator.StartRun(_request(RAW, 500, request_id), timeout=HANG_S)
        waited = time.monotonic() - began
        assert started.created and started.run.status not in TERMINAL, started.run  # no agent yet
        assert waited >= 0.5, f"answered after {waited:.3f}s, before its wait of 0.5s was over"

        agent = TestAgent(coordinator.address, token, "payments", {"payments/charge@1": _charge})
        await agent.start()
        try:
            # The same request again (a retry after a lost answer) finds its run and waits for it.
            again = await client.coordinator.StartRun(_request(RAW, 30_000, request_id), timeout=HANG_S)
        finally:
            await agent.stop()
        assert not again.created and again.run.run_id == started.run.run_id
        assert again.run.status == pb.RUN_STATUS_SUCCEEDED, again.run


@pytest.mark.parametrize("wait_ms", [-1, 60_001])
async def test_a_wait_out_of_range_is_refused_naming_the_field(
    coordinator: CoordinatorProcess, wait_ms: int
) -> None:
    token = await _payments(coordinator)
    async with coordinator.client(token) as client:
        with pytest.raises(InvalidArgumentError) as refused:
            await client.coordinator.StartRun(_request(RAW, wait_ms))
        assert str(refused.value) == f"wait_ms is {wait_ms}; it must be between 0 and 60000"
        listed = await client.coordinator.ListRuns(pb.ListRunsRequest())
    assert not listed.runs, "a refused start started a run"


async def test_a_waiting_start_ends_when_its_token_is_revoked_and_the_run_goes_on(
    coordinator: CoordinatorProcess,
) -> None:
    owner = await _payments(coordinator)
    made = await coordinator.acli("team", "token", "create", "starter", token=owner)
    assert made.returncode == 0, made.stderr
    starter = made.stdout.strip()
    async with coordinator.client(starter) as starting, coordinator.client(owner) as client:
        waiting = asyncio.create_task(starting.coordinator.StartRun(_request(RAW, 60_000), timeout=90))

        async def started() -> list[pb.Run]:
            return list((await client.coordinator.ListRuns(pb.ListRunsRequest())).runs)

        runs: list[pb.Run] = []
        while not runs:  # the run is started and durable; the call waits for its end
            assert not waiting.done(), waiting
            runs = await started()
            await asyncio.sleep(0.05)
        revoked = await coordinator.acli("team", "token", "revoke", "starter", token=owner)
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(UnauthenticatedError) as ended:
            await asyncio.wait_for(waiting, HANG_S)
        assert str(ended.value) == "StartRun ended: unknown or revoked token"
        run_id = runs[0].run_id

        agent = TestAgent(coordinator.address, owner, "payments", {"payments/charge@1": _charge})
        await agent.start()
        try:
            finished = await wait_run(client, run_id)
        finally:
            await agent.stop()
    assert finished.status == pb.RUN_STATUS_SUCCEEDED, finished


async def test_a_waiting_start_counts_with_the_calls_that_wait(tmp_path: Path) -> None:
    """``--max-inflight 1``: one unary call at a time, sixteen long ones. A StartRun waiting for
    its run leaves the unary place free (a GetRun is answered meanwhile, never RESOURCE_EXHAUSTED);
    with the sixteen long places held by watches, a StartRun answers at once instead of waiting."""
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--max-inflight", "1")
    agent: TestAgent | None = None
    try:
        token = await _payments(coordinator)
        metadata = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(coordinator.address) as channel:
            stub = pb_grpc.CoordinatorServiceStub(channel)  # no retry of an overloaded answer
            start = _request(RAW, 60_000, uuid.uuid4().hex)
            waiting = asyncio.ensure_future(stub.StartRun(start, metadata=metadata, timeout=90))
            runs: list[pb.Run] = []

            def refused(exc: BaseException | None) -> bool:
                return (
                    isinstance(exc, grpc.aio.AioRpcError)
                    and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    and time.monotonic() - began < 10
                )

            async def listed() -> bool:
                try:
                    runs[:] = (await stub.ListRuns(pb.ListRunsRequest(), metadata=metadata)).runs
                except grpc.aio.AioRpcError as exc:
                    # The start holds the one unary place until its run is started.
                    if not refused(exc):
                        raise
                return bool(runs)

            began = time.monotonic()
            while not await listed():  # answered once the start waits (seconds at most)
                if waiting.done() and refused(waiting.exception()):
                    # The listing held the place as the start came: sent again, as a client would.
                    waiting = asyncio.ensure_future(stub.StartRun(start, metadata=metadata, timeout=90))
                assert not waiting.done(), waiting
                await asyncio.sleep(0.05)
            for _ in range(5):  # then the unary place stays free while the start waits
                shown = await stub.GetRun(pb.GetRunRequest(run_id=runs[0].run_id), metadata=metadata)
                assert shown.run.status not in TERMINAL
            assert not waiting.done()

            # The long budget: the waiting start holds one place; fifteen watches take the rest.
            watches = [
                stub.WatchRun(pb.WatchRunRequest(run_id=runs[0].run_id), metadata=metadata, timeout=600)
                for _ in range(15)
            ]
            for watch in watches:
                assert (await watch.read()).run.run_id == runs[0].run_id
            began = time.monotonic()
            at_once = await stub.StartRun(
                _request({"order_id": "o-2"}, 60_000), metadata=metadata, timeout=90
            )
            assert at_once.created and at_once.run.status not in TERMINAL, at_once.run
            assert time.monotonic() - began < 30, "a start waited with the long budget full"
            for watch in watches:
                watch.cancel()

            agent = TestAgent(coordinator.address, token, "payments", {"payments/charge@1": _charge})
            await agent.start()
            answer = await asyncio.wait_for(waiting, HANG_S)
            assert answer.run.status == pb.RUN_STATUS_SUCCEEDED, answer.run
    finally:
        if agent is not None:
            await agent.stop()
        coordinator.kill9()
