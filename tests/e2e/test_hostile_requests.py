"""Hostile requests are refused at the edge with INVALID_ARGUMENT naming the field, never INTERNAL,
and never leave a run stuck (issue 15, findings 3, 4 and 7).

The real coordinator subprocess, called over the real gRPC API with only a team token.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import pytest

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import InvalidArgumentError
from tests.support.agent import Call, TaskFailed
from tests.support.coordinator import CoordinatorProcess
from tests.support.scenario import contract, start_run, wait_run

FLOW = """
workflow: payments/flow
input: {type: object, properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "x"}
"""


async def _team(coordinator: CoordinatorProcess) -> str:
    token = await coordinator.create_team("payments")
    await coordinator.register_contract(token, contract("payments/charge"))
    await coordinator.register_workflow(token, FLOW)
    return token


def _register(**fields: object) -> agent_pb.RegisterAgentRequest:
    request = agent_pb.RegisterAgentRequest(
        agent_id="payments-1",
        bindings=[agent_pb.Binding(contract="payments/charge", major=1, engine="python")],
        concurrency=1,
    )
    for name, value in fields.items():
        if name == "team_retry":
            request.team_retry.CopyFrom(value)  # type: ignore[arg-type]
        elif name == "team_timeouts":
            request.team_timeouts.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(request, name, value)
    return request


@pytest.mark.parametrize(
    "fields, named",
    [
        (
            {"team_retry": common_pb.RetryPolicy(backoff_coefficient=float("nan"))},
            "team_retry.backoff_coefficient",
        ),
        (
            {"team_retry": common_pb.RetryPolicy(backoff_coefficient=float("inf"))},
            "team_retry.backoff_coefficient",
        ),
        ({"team_retry": common_pb.RetryPolicy(backoff_coefficient=0.5)}, "team_retry.backoff_coefficient"),
        ({"team_retry": common_pb.RetryPolicy(max_attempts=-1)}, "team_retry.max_attempts"),
        ({"team_retry": common_pb.RetryPolicy(initial_backoff_ms=-5)}, "team_retry.initial_backoff_ms"),
        ({"team_retry": common_pb.RetryPolicy(max_backoff_ms=2**62)}, "team_retry.max_backoff_ms"),
        ({"team_timeouts": common_pb.Timeouts(heartbeat_ms=-1)}, "team_timeouts.heartbeat_ms"),
        ({"team_timeouts": common_pb.Timeouts(start_to_close_ms=2**62)}, "team_timeouts.start_to_close_ms"),
        ({"concurrency": -1}, "concurrency"),
        ({"concurrency": 1_000_000}, "concurrency"),
    ],
)
async def test_register_agent_refuses_policy_numbers_out_of_range(
    coordinator: CoordinatorProcess, fields: dict[str, object], named: str
) -> None:
    token = await _team(coordinator)
    async with coordinator.client(token) as client:
        with pytest.raises(InvalidArgumentError, match=named.replace(".", r"\.")):
            await client.agent.RegisterAgent(_register(**fields))
    assert "Traceback" not in coordinator.log()


async def test_two_retryable_failures_move_the_run_on(coordinator: CoordinatorProcess, test_agent) -> None:
    """The run of finding 3: retryable failures with the steepest backoff allowed; every
    FailTask is accepted and the run ends (here: succeeds on attempt 3), never stuck RUNNING."""
    token = await _team(coordinator)

    async def charge(call: Call) -> dict[str, str]:
        if call.attempt < 3:
            raise TaskFailed("Flaky", f"attempt {call.attempt} failed", retryable=True)
        return {"ref": "ok"}

    await test_agent(
        token,
        "payments",
        {"payments/charge@1": charge},
        team_retry=common_pb.RetryPolicy(max_attempts=3, initial_backoff_ms=1, backoff_coefficient=100.0),
    )
    async with coordinator.client(token) as client:
        started = await start_run(client, "payments/flow", {"order_id": "o-1"})
        run = await wait_run(client, started.run.run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert "Traceback" not in coordinator.log()


def _ui(coordinator: CoordinatorProcess) -> str:
    state = json.loads((coordinator.home / "coordinator.json").read_text())
    return f"http://{state['ui']}"


@pytest.mark.parametrize(
    "raw",
    [
        '{"order_id": NaN}',
        '{"order_id": Infinity}',
        '{"order_id": -Infinity}',
        '{"order_id": 1e400}',
        '{"order_id": "\\ud800"}',
        '{"\\udfff": 1}',
        '{"order_id": ' + "9" * 5000 + "}",
        '{"order_id": ' + "9" * 30 + "}",
        "[" * 1000 + "]" * 1000,
        "[" * 65 + "]" * 65,
    ],
)
async def test_a_run_input_json_does_not_allow_is_refused_naming_input_json(tmp_path: Path, raw: str) -> None:
    """Finding 4 and 7: refused at the edge, and the UI's run list and run page keep answering
    for the team and the admin."""
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--ui", "127.0.0.1:0")
    try:
        token = await _team(coordinator)
        async with coordinator.client(token) as client:
            with pytest.raises(InvalidArgumentError, match="input_json"):
                await client.coordinator.StartRun(
                    pb.StartRunRequest(workflow="payments/flow", input_json=raw)
                )
            good = await start_run(client, "payments/flow", {"order_id": "o-1"})
        url = _ui(coordinator)
        for who in (token, coordinator.admin_token):
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                signed = await http.post("/api/v1/session", json={"token": who}, headers={"Origin": url})
                assert signed.status_code == 200, signed.text
                runs = await http.get("/api/v1/runs")
                assert runs.status_code == 200, runs.text
                assert [r["run_id"] for r in runs.json()["runs"]] == [good.run.run_id]
                page = await http.get(f"/api/v1/runs/{good.run.run_id}")
                assert page.status_code == 200, page.text
        assert "Traceback" not in coordinator.log()
    finally:
        coordinator.kill9()


async def test_ui_query_parameters_out_of_range_answer_400(tmp_path: Path) -> None:
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--ui", "127.0.0.1:0")
    try:
        token = await _team(coordinator)
        url = _ui(coordinator)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            signed = await http.post("/api/v1/session", json={"token": token}, headers={"Origin": url})
            assert signed.status_code == 200, signed.text
            for query, named in [
                ("after=1e23", "after"),
                ("after=" + "1" * 24, "after"),
                ("before=-5", "before"),
                ("after=9999-12-31T23:59:59", ""),
                ("limit=" + "9" * 5000, "limit"),
                ("q=" + "a" * 10_000, "q"),  # (a 1 MB one is refused by the HTTP server itself)
                ("cursor=" + "A" * 200, "cursor"),
            ]:
                answer = await http.get(f"/api/v1/runs?{query}")
                if not named:
                    assert answer.status_code == 200, (query[:40], answer.text[:300])
                    continue
                assert answer.status_code == 400, (query[:40], answer.status_code, answer.text[:300])
                assert answer.json()["error"]["message"].startswith(named), answer.text[:300]
            # A body larger than the cap is refused from its Content-Length, before it is read.
            big = await http.post(
                "/api/v1/session",
                content=b"x" * (1024 * 1024),
                headers={"Origin": url, "Content-Type": "application/json"},
            )
            assert big.status_code == 413, big.text
        assert "Traceback" not in coordinator.log()
    finally:
        coordinator.kill9()


def test_the_ui_encodes_numbers_and_strings_json_cannot_hold() -> None:
    """What reached a store before the edge refused it still shows (finding 4)."""
    from coordinator.web.app import ApiJSONResponse

    body = ApiJSONResponse({"input": {"a": float("nan"), "b": [float("inf")], "\ud800": "\udfff"}}).body
    assert json.loads(body) == {"input": {"a": "NaN", "b": ["Infinity"], "\ud800": "\udfff"}}


async def test_invalid_utf8_in_a_string_field_is_invalid_argument(coordinator: CoordinatorProcess) -> None:
    """Finding 7: gRPC's own decoding used to answer UNKNOWN with a traceback in the log."""
    token = await coordinator.create_team("payments")
    async with grpc.aio.insecure_channel(coordinator.address) as channel:
        get_run = channel.unary_unary(
            "/accord.coordinator.v1.CoordinatorService/GetRun",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await get_run(b"\x0a\x02\xff\xfe", metadata=[("authorization", f"Bearer {token}")])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "String field had bad UTF-8" in (caught.value.details() or "")
    assert "Traceback" not in coordinator.log()


@pytest.mark.parametrize(
    "call, named",
    [
        (
            lambda c: c.coordinator.ListRuns(
                pb.ListRunsRequest(page=common_pb.PageRequest(page_token="1e23"))
            ),
            "page_token",
        ),
        (
            lambda c: c.coordinator.ListRuns(
                pb.ListRunsRequest(page=common_pb.PageRequest(page_token="9" * 24))
            ),
            "page_token",
        ),
        (lambda c: c.coordinator.ListRuns(pb.ListRunsRequest(query="a" * 1_000_000)), "query"),
        (
            lambda c: c.coordinator.ListRuns(pb.ListRunsRequest(created_after_unix_ms=2**63 - 1)),
            "created_after_unix_ms",
        ),
        (
            lambda c: c.coordinator.ListAuditLog(pb.ListAuditLogRequest(since_unix_ms=2**63 - 1)),
            "since_unix_ms",
        ),
        (
            lambda c: c.coordinator.RotateTeamToken(
                pb.RotateTeamTokenRequest(name="payments", grace_ms=2**62)
            ),
            "grace_ms",
        ),
        (
            lambda c: c.coordinator.PublishEvent(
                pb.PublishEventRequest(contract="payments/charge@1", payload_json="[" * 1000 + "]" * 1000)
            ),
            "payload_json",
        ),
        (
            lambda c: c.coordinator.RegisterContract(
                pb.RegisterContractRequest(source_text=contract("payments/charge", "2147483648.0.0"))
            ),
            "below 2\\^31",
        ),
        (
            lambda c: c.agent.PollTask(
                agent_pb.PollTaskRequest(agent_id="a", contracts=["payments/charge@99999999999"], wait_ms=1)
            ),
            "contracts\\[0\\]",
        ),
        (
            lambda c: c.agent.Heartbeat(agent_pb.HeartbeatRequest(agent_id="a", attempt_id="x" * 5000)),
            "attempt_id",
        ),
        (
            lambda c: c.agent.CompleteTask(
                agent_pb.CompleteTaskRequest(agent_id="a", attempt_id="r:s:1", output_json='{"a": NaN}')
            ),
            "output_json",
        ),
    ],
)
async def test_out_of_range_fields_are_invalid_argument_naming_the_field(
    coordinator: CoordinatorProcess, call, named: str
) -> None:
    """Finding 7: each of these answered INTERNAL with a traceback."""
    token = await _team(coordinator)
    async with coordinator.client(token) as client:
        with pytest.raises(InvalidArgumentError, match=named):
            await call(client)
    assert "Traceback" not in coordinator.log()


@pytest.mark.parametrize(
    "source",
    [
        "a: &a [*a]",
        contract(
            "payments/charge",
            "2.0.0",
            input_props="{a: " + "{type: object, properties: {a: " * 200 + "{}" + "}}" * 200 + "}",
        ),
    ],
)
async def test_a_document_nested_too_deep_is_invalid_argument(
    coordinator: CoordinatorProcess, source: str
) -> None:
    """Found by the fuzz suite: a self-referencing YAML alias, or a schema nested 200 deep,
    answered INTERNAL (RecursionError) with a traceback."""
    token = await _team(coordinator)
    async with coordinator.client(token) as client:
        with pytest.raises(InvalidArgumentError, match=r"(?i)nest|deep|alias"):
            await client.coordinator.RegisterContract(pb.RegisterContractRequest(source_text=source))
    assert "Traceback" not in coordinator.log()
