"""An agent the coordinator refuses, or cannot reach, says so instead of retrying in silence.

Real agent processes (``accord agent start``) against the real coordinator.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

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
