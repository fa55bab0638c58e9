"""An agent the coordinator refuses, or cannot reach, says so instead of retrying in silence.

Real agent processes (``accord agent start``) against the real coordinator.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
import yaml

from team_agent.logs import OutageLog
from team_agent.testing import AgentProcess
from tests.support.coordinator import CoordinatorProcess


def _config(tmp_path: Path, team: str, coordinator: str, token: str, contract: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "team": team,
                "coordinator": coordinator,
                "token": token,
                "implements": {contract: {"engine": "shell", "with": {"command": ["cat"]}}},
            }
        )
    )
    return path


def _agent(tmp_path: Path, config: Path) -> AgentProcess:
    # log level info: the messages a user sees by default
    return AgentProcess(config, workdir=tmp_path, log_level="info").start()


async def test_wrong_token_exits_3_with_a_clear_message(
    tmp_path: Path, coordinator: CoordinatorProcess
) -> None:
    await coordinator.create_team("payments")
    config = _config(tmp_path, "payments", coordinator.address, "not-the-token", "payments/charge@1")
    agent = _agent(tmp_path, config)
    try:
        code = agent.wait(30)
    finally:
        agent.kill()
    assert code == 3, agent.log
    assert f"the coordinator at {coordinator.address} refused agent" in agent.log
    assert "unknown or revoked token" in agent.log
    assert f"check the token in {config}" in agent.log
    assert "Traceback" not in agent.log


async def test_another_teams_token_exits_3(tmp_path: Path, coordinator: CoordinatorProcess) -> None:
    # The config says team crm (so the file checks pass) but carries payments' token.
    token = await coordinator.create_team("payments")
    await coordinator.create_team("crm")
    config = _config(tmp_path, "crm", coordinator.address, token, "crm/notify@1")
    agent = _agent(tmp_path, config)
    try:
        code = agent.wait(30)
    finally:
        agent.kill()
    assert code == 3, agent.log
    assert "contract crm/notify is owned by team crm" in agent.log
    assert "Traceback" not in agent.log


async def test_unreachable_coordinator_is_a_warning(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    agent = _agent(tmp_path, _config(tmp_path, "payments", address, "t", "payments/charge@1"))
    try:
        await agent.wait_for_log(f"cannot reach the coordinator at {address}", timeout=60)
    finally:
        assert agent.stop() == 0, agent.log
    assert "WARNING" in agent.log.split(f"cannot reach the coordinator at {address}")[0].splitlines()[-1]


def test_outage_warnings_back_off() -> None:
    now = [0.0]
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    log = logging.getLogger("test.outage")
    log.addHandler(Collect())
    log.setLevel(logging.DEBUG)
    log.propagate = False
    outage = OutageLog(log, lambda: "h:1", first_interval=5, max_interval=20, clock=lambda: now[0])
    for _ in range(100):  # one failure a second for 100 s
        outage.failed(OSError("refused"))
        now[0] += 1
    warned_at = [round(r.created) for r in records]  # not the fake clock: count them instead
    assert len(warned_at) == 7  # at 0, 5, 15, 35, 55, 75, 95
    assert all(r.levelno == logging.WARNING and "h:1" in r.getMessage() for r in records)
    assert "refused" in records[0].getMessage()
    outage.recovered()
    assert records[-1].levelno == logging.INFO and "answers again" in records[-1].getMessage()
    outage.recovered()  # once only
    assert len(records) == 8


OVERLOAD_FLOW = """
workflow: payments/flow
input: {type: object}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "x"}
"""


@pytest.mark.parametrize("protocol", ["v2", "v1"])
async def test_an_agent_refused_as_overloaded_for_its_patience_exits_3(tmp_path: Path, protocol: str) -> None:
    """Issue 15: a coordinator whose admission budget is full answers the agent's long polls (v1)
    or its stream (v2) RESOURCE_EXHAUSTED; the agent retries after each hint for
    ``overload_patience``, then says the coordinator is overloaded and exits 3 (a supervisor
    restarts it), instead of retrying forever."""
    import grpc

    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
    from tests.support.scenario import contract, start_run

    # --max-inflight 1: 16 long calls (polls and watches) at once, the test takes all of them.
    coordinator = CoordinatorProcess.start(tmp_path / "home", "--max-inflight", "1")
    try:
        token = await coordinator.create_team("payments")
        await coordinator.register_contract(token, contract("payments/charge"))
        await coordinator.register_workflow(token, OVERLOAD_FLOW)
        async with coordinator.client(token) as client:
            run_id = (await start_run(client, "payments/flow", {})).run.run_id
        metadata = (("authorization", f"Bearer {token}"),)
        async with grpc.aio.insecure_channel(coordinator.address) as channel:
            stub = pb_grpc.CoordinatorServiceStub(channel)
            watches = [
                stub.WatchRun(pb.WatchRunRequest(run_id=run_id), metadata=metadata, timeout=600)
                for _ in range(16)
            ]
            for watch in watches:  # each answers the run as it is: admitted and held open
                assert (await watch.read()).run.run_id == run_id
            config = _config(tmp_path, "payments", coordinator.address, token, "payments/charge@1")
            config.write_text(config.read_text() + f"overload_patience: 2s\nprotocol: {protocol}\n")
            agent = _agent(tmp_path, config)
            try:
                code = await asyncio.to_thread(agent.wait, 120)
            finally:
                agent.kill()
                for watch in watches:
                    watch.cancel()
        assert code == 3, agent.log
        if protocol == "v1":
            assert "registered 1 binding(s)" in agent.log  # RegisterAgent (unary) was admitted
        assert f"the coordinator at {coordinator.address} is overloaded" in agent.log, agent.log
        assert "overload_patience 2s" in agent.log
        assert agent.log.count("is overloaded") == 1, agent.log  # one line, not one per poller
        assert "Traceback" not in agent.log
        assert "overloaded: " in coordinator.log()  # refused for real by admission control
    finally:
        coordinator.kill9()
