"""The ``ansible`` engine through a real coordinator and a real agent process (``accord agent
start``), running real playbooks on localhost: the example's output and trace, a coordinator-side
cancel reaching the playbook, and bad configuration refused at start."""

from __future__ import annotations

import asyncio
import json
import subprocess
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.config import parse_config
from team_agent.engines.ansible import IDENT, AnsibleEngine
from team_agent.testing import accord_executable
from tests.engines.e2e_support import REPO, EngineTeam, attempt_error, engine_team
from tests.support.coordinator import CoordinatorProcess
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(180)

EXAMPLE = REPO / "examples" / "ansible-team"
PROJECT = Path(__file__).parent / "ansible_project"
# The example serves reserve-stock@2; e2e_support's workflow and agent call and bind major 1, so
# the test registers the same contract as 1.0.0.
RESERVE_STOCK = (
    (REPO / "examples" / "contracts" / "reserve-stock.yaml")
    .read_text()
    .replace("version: 2.0.0", "version: 1.0.0")
)


@pytest.fixture
async def teams() -> AsyncIterator[list[EngineTeam]]:
    made: list[EngineTeam] = []
    yield made
    for team in made:
        await asyncio.to_thread(team.stop_agents)


def example_binding(tmp_path: Path) -> dict[str, Any]:
    config = yaml.safe_load((EXAMPLE / "agent.yaml").read_text())
    binding: dict[str, Any] = config["implements"]["warehouse/reserve-stock@2"]
    binding["with"].update(
        project_dir=str(EXAMPLE),
        extra_vars={"reservations_dir": str(tmp_path / "reservations")},
        runs_dir=str(tmp_path / "runs"),
    )
    return binding


async def test_example_playbook_returns_its_stat_and_joins_the_trace(
    coordinator: CoordinatorProcess, tmp_path: Path, teams: list[EngineTeam]
) -> None:
    team = await engine_team(coordinator, tmp_path, team="warehouse", contract_source=RESERVE_STOCK)
    teams.append(team)
    await team.start_agent(example_binding(tmp_path))
    run = await team.wait_run(await team.start_run({"order_id": "o-1"}))
    assert run.status == pb.RUN_STATUS_SUCCEEDED, attempt_error(run)
    assert json.loads(run.output_json) == {
        "reservation_id": "res-o-1",
        "items": [{"sku": "sku-o-1-a", "quantity": 1}, {"sku": "sku-o-1-b", "quantity": 2}],
    }
    record = json.loads((tmp_path / "reservations" / "o-1.json").read_text())
    assert record["traceparent"].split("-")[1] == run.trace_id  # the playbook ran inside the run's trace
    # One playbook run, in the directory named after the step's idempotency key.
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "artifacts" / IDENT / "status").read_text() == "successful"

    # The playbook's play and tasks are spans of the run's trace, under the attempt.
    async def traced() -> dict[str, Any] | None:
        async with team.coordinator.client(team.token) as client:
            reply = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run.run_id))
        spans = {s.span_id: s for s in reply.spans}
        names = {s.name for s in spans.values()}
        # The agent's spans and the coordinator's (written in batches a moment after the
        # transition) come separately: wait for both.
        attempt = any(name.startswith("attempt ") for name in names)
        return spans if attempt and "ansible.task Publish the contract output" in names else None

    spans = await wait_until(traced, "the playbook's spans never reached the run's trace")

    def ancestors(span: Any) -> list[str]:
        names = []
        while span.parent_span_id in spans:
            span = spans[span.parent_span_id]
            names.append(span.name)
        return names

    (publish,) = [s for s in spans.values() if s.name == "ansible.task Publish the contract output"]
    chain = ancestors(publish)
    assert chain[:3] == [
        "ansible.play Reserve stock for an order",
        "ansible.playbook reserve_stock.yml",
        "engine.ansible",
    ]
    assert any(name.startswith("attempt ") for name in chain[3:])
    attributes = json.loads(publish.attributes_json)
    assert attributes["ansible.host"] == "localhost" and attributes["ansible.task.status"] == "ok"


async def test_coordinator_cancel_kills_the_playbook(
    coordinator: CoordinatorProcess, tmp_path: Path, teams: list[EngineTeam]
) -> None:
    team = await engine_team(coordinator, tmp_path, team="warehouse")
    teams.append(team)
    runs = tmp_path / "runs"
    binding = {
        "engine": "ansible",
        "with": {
            "project_dir": str(PROJECT),
            "playbook": "echo.yml",
            "inventory": "inventory.ini",
            "output": {"stat": "answer"},
            "runs_dir": str(runs),
        },
    }
    await team.start_agent(binding)
    run_id = await team.start_run({"order_id": "o-2", "sleep": 120})

    def waiting() -> Path | None:
        for run_dir in runs.glob("accord-*"):
            for event in (run_dir / "artifacts" / IDENT / "job_events").glob("*.json"):
                if '"event": "runner_on_start"' in event.read_text():
                    return run_dir
        return None

    try:
        run_dir = await wait_until(waiting, "the playbook never started its Wait task", within=60)
    except AssertionError:
        raise AssertionError(f"{await team.get_run(run_id)}\n{team.agents[0].log[-5000:]}") from None
    await team.cancel_run(run_id)
    run = await team.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_CANCELLED
    status = run_dir / "artifacts" / IDENT / "status"
    # The agent learns of the cancel on its next heartbeat; ansible-runner then kills the playbook.
    await wait_until(
        lambda: status.exists() and status.read_text() == "canceled", "the playbook was not cancelled"
    )


def test_bad_configuration_is_refused_at_agent_start(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            team: warehouse
            coordinator: 127.0.0.1:1
            token: t
            implements:
              warehouse/reserve-stock@2:
                engine: ansible
                with:
                  project_dir: {EXAMPLE}
                  playbook: reserve_stok.yml
                  inventory: hosts.ini
                  runs_dir: {tmp_path / "runs"}
              warehouse/restock@1:
                engine: ansible
                with:
                  project_dir: {tmp_path / "no-such-dir"}
                  playbook: restock.yml
                  runs_dir: {tmp_path / "runs"}
            """
        )
    )
    result = subprocess.run(
        [accord_executable(), "agent", "start", "--config", str(config), "--state-dir", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: {config}:9: implements.warehouse/reserve-stock@2.with.playbook: ansible: "
        f"{EXAMPLE / 'reserve_stok.yml'} does not exist (a path relative to project_dir)",
        f"error: {config}:10: implements.warehouse/reserve-stock@2.with.inventory: ansible: "
        f"{EXAMPLE / 'hosts.ini'} does not exist (an inventory file or directory, relative to project_dir)",
        f"error: {config}:15: implements.warehouse/restock@1.with.project_dir: ansible: "
        f"{tmp_path / 'no-such-dir'} is not a directory (the directory holding the playbook and its roles)",
    ], result.stderr
    assert "Traceback" not in result.stderr


async def test_example_agent_config_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACCORD_HOME", str(tmp_path))  # where the default runs_dir is made
    monkeypatch.chdir(REPO)  # the example's project_dir is relative to the agent's directory
    monkeypatch.setenv("ACCORD_TOKEN", "t")
    loaded = parse_config((EXAMPLE / "agent.yaml").read_text(), "examples/ansible-team/agent.yaml")
    adapter = loaded.adapters["warehouse/reserve-stock@2"]
    try:
        assert isinstance(adapter, AnsibleEngine)
        assert adapter.config.playbook == EXAMPLE / "reserve_stock.yml"
    finally:
        await adapter.close()
