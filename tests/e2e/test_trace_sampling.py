"""A run's trace is sampled or not as a whole, decided once when it starts: from the caller's
traceparent flags when it sent one (for a parent-based sampler), else by the coordinator's
OTEL_TRACES_SAMPLER/_ARG. The decision travels in every task's traceparent flags, and the agent
follows it (its sampler is parent-based even when its own environment says always_on), so an
unsampled run leaves no span anywhere: not the coordinator's, not the agent's.

Real processes: a coordinator per sampler configuration, one agent (shell engine) whose
environment asks for always_on, and ``accord run --wait`` with TRACEPARENT set.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.store import codec
from team_agent.testing import accord_executable
from tests.e2e.agent_harness import Agents, agent_config, shell, team_with_flow
from tests.support.coordinator import CoordinatorProcess

CALLER_SPAN = "eee19b7ec3c1b174"
# The engine answers with the traceparent it was handed, so the test sees the flags it got.
ENGINE = shell("import json, os; print(json.dumps({'traceparent': os.environ['TRACEPARENT']}))")

# (coordinator's sampler, its arg) -> [(the caller's traceparent flags or None, sampled?)]
CASES = {
    "always_off": ("always_off", "", [(None, False), ("01", False)]),
    "ratio_0": ("parentbased_traceidratio", "0", [(None, False), ("01", True)]),
    "default": ("", "", [("00", False), ("01", True), (None, True)]),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def coordinator(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CoordinatorProcess]:
    sampler, arg, _ = CASES[case]
    with monkeypatch.context() as env:
        env.delenv("OTEL_TRACES_SAMPLER", raising=False)
        env.delenv("OTEL_TRACES_SAMPLER_ARG", raising=False)
        if sampler:
            env.setenv("OTEL_TRACES_SAMPLER", sampler)
        if arg:
            env.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
        proc = CoordinatorProcess.start(tmp_path / "home")
    try:
        yield proc
    finally:
        proc.stop()


def _cli_run(
    coordinator: CoordinatorProcess, token: str, workflow: str, trace_id: str, flags: str | None
) -> dict[str, Any]:
    env = coordinator.env(token)
    env.pop("TRACEPARENT", None)
    if flags is not None:
        env["TRACEPARENT"] = f"00-{trace_id}-{CALLER_SPAN}-{flags}"
    done = subprocess.run(
        [accord_executable(), "run", workflow, "--input", "{}", "--wait", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _spans_of(db: Path, trace_id: str) -> list[tuple[str, str]]:
    """(name, service) of the spans stored in the trace, decoded as the store reads them."""
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(
            "SELECT * FROM spans WHERE trace_id IN (?, ?)", (codec.span_id_to_db(trace_id), trace_id)
        ).fetchall()
    return [(span.name, span.service) for span in map(codec.span_from_row, rows)]


async def test_a_runs_trace_is_sampled_as_a_whole_or_not_at_all(
    case: str, coordinator: CoordinatorProcess, tmp_path: Path
) -> None:
    _, _, runs = CASES[case]
    team = await team_with_flow(coordinator)
    agents = Agents(tmp_path / "agents")
    agents.workdir.mkdir()
    # The agent's own environment asks for always_on: the run's decision must win anyway.
    agent = agents.start(
        team,
        agent_config(team, {f"{team.name}/work@1": ENGINE}),
        env={"OTEL_TRACES_SAMPLER": "always_on", "OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    try:
        await agent.wait_for_log("registered", timeout=60)
        results = []
        for index, (flags, sampled) in enumerate(runs):
            trace_id = f"{index + 1:x}" * 32
            run = await asyncio.to_thread(
                _cli_run, coordinator, team.token, f"{team.name}/flow", trace_id, flags
            )
            assert run["status"] == "succeeded", run
            handed = run["output"]
            # The engine got the run's decision in its traceparent's flags.
            assert handed["traceparent"].endswith("-01" if sampled else "-00"), (flags, handed)
            if flags is not None:
                assert run["trace_id"] == trace_id
            results.append((run, sampled))
        # Wait until the sampled runs' agent spans arrived; the agent exports in order, so any
        # span of an unsampled run it had recorded would have arrived by then too.
        deadline = time.monotonic() + 15
        for run, sampled in results:
            while sampled and time.monotonic() < deadline:
                if ("agent.receive", "accord-agent") in _spans_of(coordinator.db, run["trace_id"]):
                    break
                await asyncio.sleep(0.1)
    finally:
        agents.stop_all()  # a graceful stop flushes whatever the agent still holds
    coordinator.stop()  # and the coordinator's buffered spans are written

    for run, sampled in results:
        spans = _spans_of(coordinator.db, run["trace_id"])
        if sampled:
            names = {name for name, _ in spans}
            assert {f"run {team.name}/flow", "step work", "agent.receive", "engine.shell"} <= names, spans
        else:
            assert spans == [], (run["run_id"], spans)
    with sqlite3.connect(coordinator.db) as connection:
        stored = dict(connection.execute("SELECT run_id, sampled FROM runs").fetchall())
    assert {run["run_id"]: bool(stored[run["run_id"]]) for run, _ in results} == {
        run["run_id"]: sampled for run, sampled in results
    }
