"""A secret's value never leaves the agent: not in the coordinator's database (any table, the WAL
too), not in the coordinator's log, not in the agent's own log — even when the engine prints it."""

from __future__ import annotations

import json
from pathlib import Path

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    Agents,
    CoordinatorProcess,
    agent_config,
    agents_fixture,
    coordinator_fixture,
    shell,
    team_with_flow,
)

SECRET = 'Zq9-"very\\secret"-value-41x'


def forms(secret: str) -> list[bytes]:
    return [secret.encode(), json.dumps(secret)[1:-1].encode(), secret.replace('"', "").encode()[:12]]


async def test_secret_values_are_redacted_everywhere(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "API_KEY").write_text(SECRET + "\n")
    team = await team_with_flow(coordinator_process, max_attempts=2)
    leaky = shell(
        """
        import json, os, sys
        key = os.environ["API_KEY"]
        data = json.load(sys.stdin)
        print("connecting with " + key, file=sys.stderr)
        if data.get("fail"):
            print(json.dumps({"error": {"type": "AuthFailed", "message": "bad key " + key}, "key": key}))
            sys.exit(1)
        print(json.dumps({"ok": True, "echoed": "key=" + key}))
        """,
        env={"API_KEY": "${secret:API_KEY}"},
    )
    config = agent_config(
        team,
        {f"{team.name}/work@1": leaky},
        secrets={"provider": "file", "path": str(secrets_dir)},
        token=team.token,  # the token is a plain value here; API_KEY comes from the file provider
    )
    agent = agents.start(team, config, log_level="debug")

    failed = await team.wait_run(await team.start_run({"fail": True}))
    assert failed.status == pb.RUN_STATUS_FAILED
    error = failed.steps[0].attempts[0].error
    assert error.type == "AuthFailed"
    assert "bad key ***" in error.message
    assert "connecting with ***" in json.loads(error.details_json)["stderr_tail"]

    succeeded = await team.wait_run(await team.start_run({}))
    assert succeeded.status == pb.RUN_STATUS_SUCCEEDED
    assert json.loads(succeeded.output_json) == {"ok": True, "echoed": "key=***"}

    await agent.wait_for_log("delivered", count=3)
    agent.stop()
    home = coordinator_process.home
    databases = sorted(p for p in home.iterdir() if p.name.startswith("coordinator.db"))
    # The database and its write-ahead log (where the newest rows live) are both searched...
    assert {"coordinator.db", "coordinator.db-wal"} <= {p.name for p in databases}, databases
    stored = b"".join(p.read_bytes() for p in databases)
    # ...and hold this test's runs, with the redacted error: the search looks where the data is.
    assert failed.run_id.encode() in stored and succeeded.run_id.encode() in stored
    assert b"bad key ***" in stored
    logs = [*home.glob("coordinator-*.log"), agent.log_path]
    assert len(logs) >= 2
    for path in [*databases, *logs]:
        data = path.read_bytes()
        assert data, f"{path.name} is empty: nothing was searched"
        for form in forms(SECRET):
            assert form not in data, f"secret found in {path.name}"
    # The test can fail: the engine really did print the secret.
    assert "connecting with ***" in agent.log or "AuthFailed" in agent.log
