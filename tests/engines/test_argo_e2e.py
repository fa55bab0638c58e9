"""The example argo binding (examples/argo-team/agent.yaml, its secrets in Vault) through a real
coordinator and a real agent process, against the faithful fakes of the Argo Server and of
Vault: an output and the trace handed on, a failure with Argo's message, a coordinator-side
cancel stopping the workflow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.config import parse_config
from team_agent.engines.argo import TRACEPARENT_ANNOTATION, ArgoEngine
from team_agent.testing import AgentProcess
from tests.engines.e2e_support import REPO, EngineTeam, attempt_error, engine_team
from tests.fakes.argo_fake import FakeArgo, FakeTemplate, Outcome
from tests.fakes.server import serve_in_thread
from tests.fakes.vault_fake import FakeVault
from tests.support.coordinator import CoordinatorProcess
from tests.support.wait import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("argo-e2e")]

CHARGE_CARD = (REPO / "examples" / "contracts" / "charge-card.yaml").read_text()
EXAMPLE = REPO / "examples" / "argo-team" / "agent.yaml"
NS = "teams/payments"
ARGO_TOKEN = "argo-sa-token-e2e"


def example_charge(params: dict[str, str]) -> Outcome:
    """What examples/argo-team/workflow-template.yaml computes."""
    if int(params["amount_cents"]) < 1:
        return Outcome("Failed", failed_step="validate", node_message="Error (exit code 1)")
    return Outcome(outputs={"result": json.dumps({"payment_ref": f"pay-{params['order_id']}"})})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[FakeArgo, str, FakeVault, str]]:
    argo, vault = FakeArgo(tokens={ARGO_TOKEN: {"payments"}}), FakeVault()
    with serve_in_thread(argo.app) as argo_url, serve_in_thread(vault.app) as vault_url:
        yield argo, argo_url, vault, vault_url


@pytest.fixture
def fakes(servers: tuple[FakeArgo, str, FakeVault, str]) -> tuple[FakeArgo, str, FakeVault, str]:
    argo, _, vault, _ = servers
    argo.templates.clear()
    argo.workflows.clear()
    argo.requests.clear()
    argo.add_template(
        FakeTemplate(
            "charge-card",
            parameters={"order_id": None, "amount_cents": None, "traceparent": ""},
            steps=["validate", "charge"],
            behaviour=example_charge,
        )
    )
    vault.kv.clear()
    vault.approles.clear()
    vault.put("payments/argo", {"token": ARGO_TOKEN}, namespace=NS)
    return servers


def example_config(
    fakes: tuple[FakeArgo, str, FakeVault, str], workdir: Path, **binding: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """The example agent config pointed at the fakes: the AppRole's ids in files of ``workdir``,
    fast polls; and the environment the agent needs (none: every secret is in Vault)."""
    _, argo_url, vault, vault_url = fakes
    config = yaml.safe_load(EXAMPLE.read_text())
    role = vault.add_approle("accord-agent", namespace=NS)
    (workdir / "role-id").write_text(role.role_id)
    (workdir / "secret-id").write_text(role.secret_id + "\n")
    config["secrets"].update(
        address=vault_url, role_id_file=str(workdir / "role-id"), secret_id_file=str(workdir / "secret-id")
    )
    with_ = config["implements"]["payments/charge-card@1"]["with"]
    with_.update(base_url=argo_url, poll_interval="50ms", max_poll_interval="200ms", stop_timeout="10s")
    with_.update(binding)
    return config, {}


@pytest.fixture
async def agents() -> AsyncIterator[list[AgentProcess]]:
    made: list[AgentProcess] = []
    yield made
    for agent in made:
        if agent.running:
            await asyncio.to_thread(agent.stop, 30)


async def start_agent(
    team: EngineTeam,
    fakes: tuple[FakeArgo, str, FakeVault, str],
    agents: list[AgentProcess],
    cache_ttl: str | None = None,
    **binding: Any,
) -> AgentProcess:
    vault = fakes[2]
    vault.put("payments/accord", {"token": team.token}, namespace=NS)
    config, env = example_config(fakes, team.workdir, **binding)
    if cache_ttl is not None:
        config["secrets"]["cache_ttl"] = cache_ttl
    config["coordinator"] = team.coordinator.address
    config["timeouts"] = {"heartbeat": "6s"}  # a cancel reaches the agent sooner (e2e_support.py)
    path = team.workdir / f"agent-{len(agents)}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    agent = AgentProcess(path, workdir=team.workdir, agent_id=f"payments-agent-{len(agents)}", env=env)
    agents.append(agent.start())
    await agent.wait_for_log("registered", timeout=30)
    return agent


async def test_the_example_config_loads(fakes: tuple[FakeArgo, str, FakeVault, str], tmp_path: Path) -> None:
    vault = fakes[2]
    vault.put("payments/accord", {"token": "team-token"}, namespace=NS)
    config, _ = example_config(fakes, tmp_path)
    loaded = await asyncio.to_thread(parse_config, yaml.safe_dump(config), str(EXAMPLE))
    adapter = loaded.adapters["payments/charge-card@1"]
    try:
        assert isinstance(adapter, ArgoEngine) and adapter.config.token == ARGO_TOKEN
        assert {"team-token", ARGO_TOKEN} <= loaded.config.secret_values
    finally:
        await adapter.close()


async def test_argo_step_returns_the_output_parameter_and_carries_the_trace(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    fakes: tuple[FakeArgo, str, FakeVault, str],
    agents: list[AgentProcess],
) -> None:
    argo = fakes[0]
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    agent = await start_agent(team, fakes, agents)
    run = await team.wait_run(
        await team.start_run({"order_id": "o-1", "amount_cents": 100, "card_token": "tok"})
    )
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {"payment_ref": "pay-o-1"}
    (wf,) = argo.workflows.values()
    assert wf.parameters["order_id"] == "o-1" and wf.parameters["amount_cents"] == "100"
    assert "card_token" not in wf.parameters  # the binding maps only what the template needs
    assert wf.annotations[TRACEPARENT_ANNOTATION].split("-")[1] == run.trace_id
    assert wf.parameters["traceparent"].split("-")[1] == run.trace_id
    log = await asyncio.to_thread(lambda: agent.log)
    assert ARGO_TOKEN not in log and team.token not in log


async def test_a_team_token_rotated_in_vault_is_followed(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    fakes: tuple[FakeArgo, str, FakeVault, str],
    agents: list[AgentProcess],
) -> None:
    """The vault provider is rereadable: the agent reads its token from Vault again (through the
    provider's cache) and follows a rotation without a restart."""
    vault = fakes[2]
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    agent = await start_agent(team, fakes, agents, cache_ttl="200ms")
    rotated = await coordinator.acli("team", "rotate-token", team.name, "--grace", "60s", token=team.token)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.strip()
    vault.put("payments/accord", {"token": new}, namespace=NS)  # version 2
    await agent.wait_for_log("token reloaded from the vault secrets provider")
    team.token = new
    run = await team.wait_run(await team.start_run({"order_id": "o-5", "amount_cents": 1}))
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    log = await asyncio.to_thread(lambda: agent.log)
    assert new not in log


async def test_a_failed_workflow_fails_the_step_once_with_argos_message(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    fakes: tuple[FakeArgo, str, FakeVault, str],
    agents: list[AgentProcess],
) -> None:
    argo = fakes[0]
    argo.templates[("payments", "charge-card")].behaviour = lambda p: Outcome(
        "Failed", failed_step="charge", node_message="card declined (exit code 3)"
    )
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    await start_agent(team, fakes, agents)
    run = await team.wait_run(await team.start_run({"order_id": "o-2", "amount_cents": 100}))
    assert run.status == pb.RUN_STATUS_FAILED
    error, details = attempt_error(run)
    assert error.type == "WorkflowFailed" and not error.retryable
    assert "step charge: card declined (exit code 3)" in error.message
    assert details["failed_nodes"][0]["name"] == "charge"
    assert len(run.steps[0].attempts) == 1 and len(argo.workflows) == 1  # final: not retried


async def test_coordinator_cancel_stops_the_workflow(
    coordinator: CoordinatorProcess,
    tmp_path: Path,
    fakes: tuple[FakeArgo, str, FakeVault, str],
    agents: list[AgentProcess],
) -> None:
    argo = fakes[0]
    argo.templates[("payments", "charge-card")].duration = 120
    team = await engine_team(coordinator, tmp_path, contract_source=CHARGE_CARD)
    await start_agent(team, fakes, agents)
    run_id = await team.start_run({"order_id": "o-3", "amount_cents": 100})
    await wait_until(lambda: argo.workflows, "the workflow was never submitted")
    await team.cancel_run(run_id)
    run = await team.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_CANCELLED
    (wf,) = argo.workflows.values()
    # The agent learns of the cancel on its next heartbeat.
    await wait_until(lambda: wf.stop_at is not None, "the workflow was never stopped")
    assert any(m == "PUT" and p.endswith(f"/{wf.name}/stop") and s == 200 for m, p, s in argo.requests)
