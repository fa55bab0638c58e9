"""A real coordinator and real agent processes: each built-in engine, a team's own engine
installed from examples/, the output contract check, and config errors before anything starts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from team_agent.testing import accord_executable
from tests.e2e.agent_harness import (  # noqa: F401 - fixtures
    ECHO,
    Agents,
    CoordinatorProcess,
    agent_config,
    agents_fixture,
    coordinator_fixture,
    shell,
    team_with_flow,
    wait_until,
)
from tests.fakes.server import serve_in_loop

REPO = Path(__file__).resolve().parents[2]


async def test_shell_engine_runs_a_step(coordinator_process: CoordinatorProcess, agents: Agents) -> None:
    team = await team_with_flow(coordinator_process)
    code = """
        import json, os, sys
        data = json.load(sys.stdin)
        print(json.dumps({"n": data["n"] * 2, "key": os.environ["ACCORD_IDEMPOTENCY_KEY"],
                          "traceparent": os.environ["TRACEPARENT"], "attempt": os.environ["ACCORD_ATTEMPT"]}))
    """
    agents.start(team, agent_config(team, {f"{team.name}/work@1": shell(code)}))
    run_id = await team.start_run({"n": 21})
    run = await team.wait_run(run_id)
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    output = json.loads(run.output_json)
    assert output["n"] == 42 and output["attempt"] == "1"
    assert output["key"] == run.steps[0].idempotency_key
    # The engine sees the agent's engine span, inside the run's trace.
    assert output["traceparent"].split("-")[1] == run.trace_id


# The team's Python code, as the agent imports it (a module of its own, not this test module).
TEAM_CODE = """
class CardDeclined(Exception):
    pass


def greet(value):
    return {"greeting": "hello " + value["name"]}


async def decline(value, task):
    raise CardDeclined("card of " + value["name"] + " declined in " + task.step_id)
"""


def python_binding(tmp_path: Path, function: str) -> dict[str, object]:
    (tmp_path / "team_code.py").write_text(TEAM_CODE)
    return {"engine": "python", "with": {"callable": f"team_code:{function}", "path": [str(tmp_path)]}}


async def test_python_engine_runs_a_function(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process, max_attempts=3)
    agents.start(team, agent_config(team, {f"{team.name}/work@1": python_binding(tmp_path, "greet")}))
    run = await team.wait_run(await team.start_run({"name": "ada"}))
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {"greeting": "hello ada"}


async def test_python_exception_type_is_the_error_type(
    coordinator_process: CoordinatorProcess, agents: Agents, tmp_path: Path
) -> None:
    team = await team_with_flow(coordinator_process, max_attempts=1)
    agents.start(team, agent_config(team, {f"{team.name}/work@1": python_binding(tmp_path, "decline")}))
    run = await team.wait_run(await team.start_run({"name": "ada"}))
    assert run.status == pb.RUN_STATUS_FAILED
    error = run.steps[0].attempts[0].error
    assert error.type == "CardDeclined" and "card of ada declined in work" in error.message


@pytest.fixture
async def http_service() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def charge(request: Request) -> Response:
        seen.append(dict(request.headers))
        body = await request.json()
        if body.get("declined"):
            return JSONResponse({"error": "CardDeclined", "message": "no funds"}, status_code=402)
        return JSONResponse({"payment_ref": f"pay-{body['order_id']}"})

    app = Starlette(routes=[Route("/charge", charge, methods=["POST"])])
    async with serve_in_loop(app) as url:
        yield f"{url}/charge", seen


async def test_http_engine_maps_answers(
    coordinator_process: CoordinatorProcess, agents: Agents, http_service: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = http_service
    team = await team_with_flow(coordinator_process, max_attempts=3)
    agents.start(team, agent_config(team, {f"{team.name}/work@1": {"engine": "http", "with": {"url": url}}}))
    ok = await team.wait_run(await team.start_run({"order_id": "o-1"}))
    assert ok.status == pb.RUN_STATUS_SUCCEEDED, ok
    assert json.loads(ok.output_json) == {"payment_ref": "pay-o-1"}
    assert seen[0]["idempotency-key"] == ok.steps[0].idempotency_key
    assert seen[0]["traceparent"].split("-")[1] == ok.trace_id
    declined = await team.wait_run(await team.start_run({"order_id": "o-2", "declined": True}))
    assert declined.status == pb.RUN_STATUS_FAILED
    # A 4xx is not retryable: one attempt although the contract allows three.
    assert len(declined.steps[0].attempts) == 1
    error = declined.steps[0].attempts[0].error
    assert (error.type, error.retryable) == ("CardDeclined", False)


@pytest.fixture(scope="session")
def custom_engine_installed() -> None:
    """The example package of a team's own engine, installed into this environment."""
    from importlib.metadata import entry_points

    if "uppercase" not in {ep.name for ep in entry_points(group="accord.engines")}:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-build-isolation",
                "--no-deps",
                "-e",
                str(REPO / "examples" / "custom-engine"),
            ],
            check=True,
        )


async def test_a_teams_own_engine_from_its_own_package(
    coordinator_process: CoordinatorProcess, agents: Agents, custom_engine_installed: None
) -> None:
    team = await team_with_flow(coordinator_process)
    agents.start(
        team, agent_config(team, {f"{team.name}/work@1": {"engine": "uppercase", "with": {"suffix": "!"}}})
    )
    run = await team.wait_run(await team.start_run({"word": "hello", "n": 1}))
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run
    assert json.loads(run.output_json) == {"word": "HELLO!", "n": 1}


async def test_output_that_breaks_the_contract_fails_without_retry(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    team = await team_with_flow(
        coordinator_process,
        max_attempts=3,
        output_schema={
            "type": "object",
            "required": ["payment_ref"],
            "properties": {"payment_ref": {"type": "string"}, "amount": {"type": "integer"}},
        },
    )
    bad = shell("import json; print(json.dumps({'amount': 'twelve'}))")
    agents.start(team, agent_config(team, {f"{team.name}/work@1": bad}))
    run = await team.wait_run(await team.start_run({}))
    assert run.status == pb.RUN_STATUS_FAILED
    assert len(run.steps[0].attempts) == 1
    error = run.steps[0].attempts[0].error
    assert (error.type, error.retryable) == ("ContractViolation", False)
    assert "$.payment_ref" in error.message and "$.amount" in error.message
    details = json.loads(error.details_json)
    assert {v["path"] for v in details["output_violations"]} == {"$.payment_ref", "$.amount"}


async def test_unknown_contract_major_is_not_polled(
    coordinator_process: CoordinatorProcess, agents: Agents
) -> None:
    # The agent serves only majors it names: a run of @1 stays queued for an agent serving @2.
    team = await team_with_flow(coordinator_process)
    agent = agents.start(team, agent_config(team, {f"{team.name}/work@2": ECHO}))
    await agent.wait_for_log("registered")
    run_id = await team.start_run({})

    async def unserved() -> str:
        reason: str = (await team.get_run(run_id)).steps[0].waiting_reason
        return reason if reason.startswith("no agent") else ""

    # The coordinator's own word that no agent serves @1 (rather than a pause that "should be
    # enough" for a wrong poll to have taken the task).
    reason = await wait_until(unserved, "the step never said that no agent serves it")
    assert reason.startswith(f"no agent of team {team.name} is serving {team.name}/work@1"), reason
    run = await team.get_run(run_id)
    assert run.steps[0].status == pb.STEP_STATUS_SCHEDULED


def test_config_errors_are_all_reported_with_lines_before_anything_starts(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        textwrap.dedent(
            """\
            team: payments
            coordinator: 127.0.0.1:1
            token: "${secret:NO_SUCH_SECRET_HERE}"
            concurrency: many
            implements:
              payments/charge@1:
                engine: airflw
              payments/refund@1:
                engine: shell
                with: {command: ["./refund.sh"], env: {KEY: "${secret:ALSO_MISSING}"}}
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
        f"error: {config}:3: token: secret 'NO_SUCH_SECRET_HERE' not found by the 'env' secrets provider "
        "(set it there, or fix the name)",
        f"error: {config}:4: concurrency: must be an integer between 1 and 1024",
        f"error: {config}:7: implements.payments/charge@1.engine: unknown engine 'airflw': it is misspelled or "
        f"its package is not installed (installed engines: {lines[2].split('installed engines: ')[1]}",
        f"error: {config}:10: implements.payments/refund@1.with.env.KEY: secret 'ALSO_MISSING' not found by the "
        "'env' secrets provider (set it there, or fix the name)",
    ]
    assert "airflow" in lines[2] and "shell" in lines[2]
    assert not (tmp_path / "s").exists()
