"""Secrets are masked in the strings an agent reports, never in serialised JSON: a number that
happens to equal a secret is data; a result the coordinator refuses fails the attempt, saying why."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.outbox import OutboxEntry, entries_on_disk
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    Agents,
    CoordinatorProcess,
    agent_config,
    agents_fixture,
    coordinator_fixture,
    shell,
    team_with_flow,
)
from tests.support.wait import wait_until

PIN = "1234"

AMOUNT = shell(
    """
    import json, os, sys
    pin = os.environ["PIN"]
    data = json.load(sys.stdin)
    print("charging with pin " + pin, file=sys.stderr)
    if data.get("fail"):
        sys.exit(3)
    print(json.dumps({"amount_cents": int(pin), "ids": [1, int(pin)], "note": "pin " + pin}))
    """,
    env={"PIN": "${secret:PIN}"},
)


def _secrets(tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "PIN").write_text(PIN + "\n")
    return {"provider": "file", "path": str(directory)}


async def test_a_number_equal_to_a_secret_is_delivered_and_the_secret_in_stderr_is_masked(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process)
    config = agent_config(team, {f"{team.name}/work@1": AMOUNT}, secrets=_secrets(tmp_path), token=team.token)
    agents.start(team, config)

    succeeded = await team.wait_run(await team.start_run({}))
    assert succeeded.status == pb.RUN_STATUS_SUCCEEDED, succeeded
    # The numbers are the engine's data, unaltered; the string spelling the secret is masked.
    assert json.loads(succeeded.output_json) == {"amount_cents": 1234, "ids": [1, 1234], "note": "pin ***"}

    failed = await team.wait_run(await team.start_run({"fail": True}))
    assert failed.status == pb.RUN_STATUS_FAILED, failed
    error = failed.steps[0].attempts[0].error
    stderr_tail = json.loads(error.details_json)["stderr_tail"]
    assert "charging with pin ***" in stderr_tail, stderr_tail
    assert PIN not in stderr_tail and PIN not in error.message


def _as_an_older_agent_left_it(outbox: Path, entry: OutboxEntry, output_json: str) -> None:
    """Replace the (stopped) agent's log with ``entry`` as an older agent wrote it: one file."""
    for log in outbox.glob("*.log"):
        log.unlink()
    document = {**dataclasses.asdict(entry), "output_json": output_json}
    (outbox / entry.file_name).write_text(json.dumps(document))


async def test_an_output_the_coordinator_refuses_fails_the_attempt_saying_why(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process, heartbeat="30s", max_attempts=3)
    marker = tmp_path / "started"
    engine = shell(
        f"""
        import json, sys, time
        open({str(marker)!r}, "w").close()
        time.sleep(1.0)
        print(json.dumps({{"amount_cents": 1}}))
        """
    )
    config = agent_config(team, {f"{team.name}/work@1": engine})
    agent = agents.start(team, config)
    run_id = await team.start_run({})
    await wait_until(marker.exists, "the engine never started the task")
    coordinator_process.stop()
    outbox = agent.state_dir / "outbox"
    await wait_until(lambda: entries_on_disk(outbox), "the result never reached the outbox")
    assert await asyncio.to_thread(agent.stop) == 0
    # What an older agent left in its outbox (one file per result, the previous format): the
    # secret masked in the serialised output.
    [entry] = entries_on_disk(outbox)
    assert entry.kind == "complete"
    await asyncio.to_thread(_as_an_older_agent_left_it, outbox, entry, '{"amount_cents":***}')

    coordinator_process.restart()
    restarted = agents.start(team, config)  # same name: same agent id and state dir
    run = await team.wait_run(run_id, within=60)
    assert run.status == pb.RUN_STATUS_FAILED, run
    # One attempt, failed for that reason, not retried, not a heartbeat timeout.
    [attempt] = run.steps[0].attempts
    assert attempt.status == pb.ATTEMPT_STATUS_FAILED, attempt
    assert attempt.error.type == "OutputRefused", attempt.error
    assert not attempt.error.retryable
    assert attempt.error.message.startswith("the coordinator refused this attempt's output:")
    assert "output_json is not valid JSON" in attempt.error.message, attempt.error.message
    await restarted.wait_for_log("reporting it as a non-retryable failure")
    await wait_until(lambda: not entries_on_disk(outbox), "the refused result stayed in the outbox")
