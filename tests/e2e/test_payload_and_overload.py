"""One payload limit and overload as an answer (issue 15, findings 5 and 6).

The real coordinator subprocess with a small ``--max-payload`` or ``--max-inflight``; callers over
the real gRPC API and the real CLI.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from contracts.errors import InvalidArgumentError
from tests.support.agent import Call
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract, start_run, wait_run
from tests.support.soak import sized

FLOW = """
workflow: payments/flow
input: {type: object}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "x"}
output: {blob: "${steps.charge.output.blob}"}
"""
LIMIT = 64 * 1024


async def _team(coordinator: CoordinatorProcess) -> str:
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(
        token, contract("payments/charge", output_props="{ref: {type: string}, blob: {type: string}}")
    )
    await coordinator.register_workflow(token, FLOW)
    return token


@pytest.fixture
def small_payload(tmp_path: Path):
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--max-payload", "64KiB")
    try:
        yield coordinator
    finally:
        coordinator.kill9()


async def test_a_payload_over_max_payload_is_refused_naming_field_size_and_limit(
    small_payload: CoordinatorProcess,
) -> None:
    coordinator = small_payload
    token = await _team(coordinator)
    big = json.dumps({"blob": "x" * LIMIT})
    size = len(big)
    async with coordinator.client(token) as client:
        with pytest.raises(
            InvalidArgumentError, match=f"input_json is {size} bytes; the limit is {LIMIT} bytes"
        ):
            await client.coordinator.StartRun(pb.StartRunRequest(workflow="payments/flow", input_json=big))
        with pytest.raises(InvalidArgumentError, match=f"payload_json is {size} bytes; the limit is {LIMIT}"):
            await client.coordinator.PublishEvent(
                pb.PublishEventRequest(contract="payments/charge@1", payload_json=big)
            )
        source = contract("payments/charge", "1.1.0", extra="# " + "x" * LIMIT + "\n")
        with pytest.raises(
            InvalidArgumentError, match=f"source_text is {len(source)} bytes; the limit is {LIMIT}"
        ):
            await client.coordinator.RegisterContract(pb.RegisterContractRequest(source_text=source))
        with pytest.raises(InvalidArgumentError, match=f"output_json is {size} bytes; the limit is {LIMIT}"):
            await client.agent.CompleteTask(
                agent_pb.CompleteTaskRequest(agent_id="a", attempt_id="r:s:1", output_json=big)
            )
    # The CLI tells a refused payload (exit 2) from overload (exit 3).
    input_file = coordinator.home / "big.json"
    input_file.write_text(big)
    result = await coordinator.acli("run", "payments/flow", "--input", f"@{input_file}", token=token)
    assert result.returncode == 2, result
    assert f"input_json is {size} bytes; the limit is {LIMIT} bytes (--max-payload)" in result.stderr
    assert "Traceback" not in result.stderr + coordinator.log()


async def test_list_answers_do_not_carry_whole_payloads(
    small_payload: CoordinatorProcess, test_agent
) -> None:
    coordinator = small_payload
    token = await _team(coordinator)
    blob = "y" * (LIMIT - 100)

    async def charge(call: Call) -> dict[str, str]:
        return {"ref": "ok", "blob": blob}

    async with coordinator.client(token) as client:
        agent = await _agent(coordinator, token, charge)
        try:
            started = await start_run(client, "payments/flow", {"blob": blob})
            run = await wait_run(client, started.run.run_id)
        finally:
            await agent.stop()
        assert run.status == pb.RUN_STATUS_SUCCEEDED and json.loads(run.input_json) == {"blob": blob}
        listed = (await client.coordinator.ListRuns(pb.ListRunsRequest())).runs
        assert [r.run_id for r in listed] == [run.run_id]
        assert listed[0].input_json == "" and listed[0].output_json == ""
        contracts = (await client.coordinator.ListContracts(pb.ListContractsRequest())).contracts
        assert contracts and all(c.source_text == "" for c in contracts)
        whole = (
            await client.coordinator.GetContract(pb.GetContractRequest(ref="payments/charge@1"))
        ).contract
        assert whole.source_text


async def _agent(coordinator: CoordinatorProcess, token: str, handler):
    from tests.support.agent import TestAgent

    agent = TestAgent(coordinator.address, token, "payments", {"payments/charge@1": handler})
    await agent.start()
    return agent


async def _hold_long_budget(coordinator: CoordinatorProcess, token: str, run_id: str, channel) -> list:
    """With ``--max-inflight 1`` the long budget is 16 calls: 16 watches admitted and held open."""
    stub = pb_grpc.CoordinatorServiceStub(channel)
    metadata = (("authorization", f"Bearer {token}"),)
    watches = [
        stub.WatchRun(pb.WatchRunRequest(run_id=run_id), metadata=metadata, timeout=600) for _ in range(16)
    ]
    for watch in watches:  # each answers the run as it is: admitted and held open
        assert (await watch.read()).run.run_id == run_id
    return watches


async def test_a_watch_refused_as_overloaded_is_retried_then_says_overloaded(tmp_path: Path) -> None:
    """Issue 15: a stream (WatchRun, as ``accord run --wait`` uses it) the coordinator refuses
    as overloaded is opened again after each retry-after-ms hint, as a unary call is: the CLI
    waits the overload out and prints the output; once the patience is spent, the client says
    the coordinator is overloaded (OverloadedError, exit 3)."""

    from contracts.errors import OverloadedError
    from coordinator.client import Client

    coordinator = CoordinatorProcess.start(tmp_path / "home", "--max-inflight", "1")
    try:
        token = await _team(coordinator)
        async with coordinator.client(token) as client:
            held_run = (await start_run(client, "payments/flow", {})).run.run_id
        async with grpc.aio.insecure_channel(coordinator.address) as channel:
            watches = await _hold_long_budget(coordinator, token, held_run, channel)
            # Started once; waited for off the loop below.
            cli = coordinator.cli_started("run", "payments/flow", "--input", "{}", "--wait", token=token)
            try:
                # The CLI's run started (StartRun is unary: its budget is free), then its watch
                # was refused (the first refusal is logged).
                while "overloaded: " not in coordinator.log():
                    assert cli.poll() is None, cli.communicate()
                    await asyncio.sleep(0.05)
                for watch in watches:
                    watch.cancel()

                async def charge(call: Call) -> dict[str, str]:
                    return {"ref": "ok", "blob": "b"}

                agent = await _agent(coordinator, token, charge)
                try:
                    out, err = await asyncio.to_thread(cli.communicate, timeout=120)
                finally:
                    await agent.stop()
            finally:
                if cli.poll() is None:
                    cli.kill()
                    cli.wait()
            assert cli.returncode == 0, err
            assert json.loads(out) == {"blob": "b"} and "overloaded" not in err

            # The patience spent (a minute for the CLI; 2 s here): the coordinator is overloaded.
            async with coordinator.client(token) as client:  # the agent ran the first one
                held_run = (await start_run(client, "payments/flow", {})).run.run_id
            watches = await _hold_long_budget(coordinator, token, held_run, channel)
            try:

                def watch_once() -> None:
                    with Client(coordinator.address, token, overload_patience=2) as blocking:
                        for _ in blocking.coordinator.stream(
                            "WatchRun", pb.WatchRunRequest(run_id=held_run), timeout=30
                        ):
                            raise AssertionError("a watch was admitted beyond the budget")

                with pytest.raises(OverloadedError) as refused:
                    await asyncio.to_thread(watch_once)
                assert refused.value.exit_code == 3
                assert str(refused.value).startswith(
                    f"the coordinator at {coordinator.address} is overloaded"
                )
            finally:
                for watch in watches:
                    watch.cancel()
        assert "Traceback" not in coordinator.log()
    finally:
        coordinator.kill9()


@sized("calls,limit", short=(200, 2), soak=(10_000, 32))
async def test_concurrent_starts_are_answered_or_told_to_retry_and_all_finish(
    tmp_path: Path, calls: int, limit: int
) -> None:
    """Finding 6: with a small admission limit, each of many concurrent StartRun calls either
    succeeds or is refused RESOURCE_EXHAUSTED with a retry-after-ms hint (never CANCELLED or
    INTERNAL); with the client's own retry, every one of them succeeds."""
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--max-inflight", str(limit))
    try:
        token = await _team(coordinator)
        metadata = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(coordinator.address) as channel:
            stub = pb_grpc.CoordinatorServiceStub(channel)

            async def raw(i: int) -> str:
                request = pb.StartRunRequest(
                    workflow="payments/flow", input_json="{}", idempotency_key=f"raw-{i}"
                )
                try:
                    await stub.StartRun(request, metadata=metadata, timeout=300)
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (exc.code(), exc.details())
                    hints = [v for k, v in exc.trailing_metadata() or () if k == "retry-after-ms"]
                    assert hints and int(hints[0]) > 0, exc.trailing_metadata()
                    return "retry"
                return "ok"

            answers = await asyncio.gather(*(raw(i) for i in range(calls)))
        assert set(answers) <= {"ok", "retry"}
        assert "retry" in answers and "ok" in answers, answers.count("ok")

        async with coordinator.client(token) as client:
            started = await asyncio.gather(
                *(
                    client.coordinator.StartRun(
                        pb.StartRunRequest(
                            workflow="payments/flow", input_json="{}", idempotency_key=f"c-{i}"
                        ),
                        timeout=300,
                    )
                    for i in range(calls)
                )
            )
        assert len({s.run.run_id for s in started}) == calls
        assert "Traceback" not in coordinator.log()
        assert "overloaded" in coordinator.log()
    finally:
        coordinator.kill9()
