"""The README's "by hand" flow, on the files in examples/: if this passes, the examples work.

Every example agent config runs as a real `accord agent start` process against a real
coordinator; the example contracts and workflow are registered by their owning teams with the
real CLI, and `accord run --wait` prints the workflow's output.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from team_agent.testing import AgentProcess
from tests.support.coordinator import CoordinatorProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TEAMS = ("payments", "warehouse", "shipping", "crm")


async def test_the_example_agents_contracts_and_workflow_run_end_to_end(
    coordinator: CoordinatorProcess, tmp_path: Path
) -> None:
    tokens = {team: await coordinator.create_team(team) for team in TEAMS}
    for path in sorted((EXAMPLES / "contracts").glob("*.yaml")):
        team = yaml.safe_load(path.read_text())["contract"].split("/")[0]
        result = await coordinator.acli("contract", "register", str(path), token=tokens[team])
        assert result.returncode == 0, result.stderr

    agents = []
    try:
        for team in TEAMS:
            config = yaml.safe_load((EXAMPLES / "agents" / f"{team}.yaml").read_text())
            config["coordinator"] = coordinator.address  # the examples name the default address
            path = tmp_path / f"{team}.yaml"
            path.write_text(yaml.safe_dump(config))
            agent = AgentProcess(path, workdir=tmp_path, env={"ACCORD_TOKEN": tokens[team]}, agent_id=team)
            agents.append(agent.start())
        for agent in agents:
            await agent.wait_for_log("registered", timeout=60)

        workflow = EXAMPLES / "workflows" / "order-to-cash.yaml"
        result = await coordinator.acli("workflow", "register", str(workflow), token=tokens["shipping"])
        assert result.returncode == 0, result.stderr
        result = await coordinator.acli(
            "run",
            "shipping/order-to-cash",
            "--input",
            json.dumps({"order_id": "o-1", "amount_cents": 4200}),
            "--wait",
            token=tokens["shipping"],
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"shipment_id": "shp-o-1"}
    finally:
        for agent in agents:
            agent.stop()
