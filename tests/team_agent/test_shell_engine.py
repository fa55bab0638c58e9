"""The shell engine: JSON through stdin/stdout, exit codes mapped, process groups killed."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from team_agent.engines.base import EngineConfigError, EngineFailure
from team_agent.engines.shell import KILL_GRACE_SECONDS, ShellEngine
from tests.support.wait import wait_until
from tests.team_agent.agent_testkit import TRACEPARENT, context


def script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def run(engine: ShellEngine, value: Any) -> Any:
    handle = await engine.submit(context(), value)
    try:
        return await engine.wait(handle)
    finally:
        await engine.close()


async def test_json_in_json_out_with_the_task_in_the_environment() -> None:
    engine = ShellEngine(
        {
            "command": script(
                "import json, os, sys; data = json.load(sys.stdin); "
                "keys = ['TRACEPARENT', 'ACCORD_IDEMPOTENCY_KEY', 'ACCORD_RUN_ID', 'ACCORD_STEP_ID', "
                "'ACCORD_ATTEMPT', 'GREETING']; "
                "print(json.dumps({'in': data, 'env': {k: os.environ.get(k) for k in keys}}))"
            ),
            "env": {"GREETING": "hi"},
        }
    )
    result = await run(engine, {"order_id": "o-1"})
    assert result == {
        "in": {"order_id": "o-1"},
        "env": {
            "TRACEPARENT": TRACEPARENT,
            "ACCORD_IDEMPOTENCY_KEY": "idem-1",
            "ACCORD_RUN_ID": "run-1",
            "ACCORD_STEP_ID": "charge",
            "ACCORD_ATTEMPT": "2",
            "GREETING": "hi",
        },
    }


async def test_a_failing_command_keeps_the_stderr_tail_and_is_retryable() -> None:
    engine = ShellEngine(
        {
            "command": script(
                "import sys; print('line 1', file=sys.stderr); print('disk full', file=sys.stderr); sys.exit(3)"
            )
        }
    )
    with pytest.raises(EngineFailure) as caught:
        await run(engine, {})
    failure = caught.value
    assert failure.retryable and failure.type == "CommandFailed"
    assert "exited with code 3: disk full" in failure.message
    assert failure.details["exit_code"] == 3 and "line 1" in failure.details["stderr_tail"]


@pytest.mark.parametrize(("code", "retryable"), [(2, False), (75, True), (4, True)])
async def test_exit_codes_decide_retryability(code: int, retryable: bool) -> None:
    engine = ShellEngine(
        {"command": script(f"import sys; sys.exit({code})"), "non_retryable_exit_codes": [2, 75]}
    )
    with pytest.raises(EngineFailure) as caught:
        await run(engine, {})
    assert caught.value.retryable is retryable


async def test_a_command_can_name_its_error_type() -> None:
    engine = ShellEngine(
        {
            "command": script(
                "import json; print(json.dumps({'error': {'type': 'CardDeclined', 'message': 'no funds'}})); raise SystemExit(1)"
            )
        }
    )
    with pytest.raises(EngineFailure) as caught:
        await run(engine, {})
    assert caught.value.type == "CardDeclined" and "no funds" in caught.value.message


async def test_output_that_is_not_json_fails_clearly() -> None:
    engine = ShellEngine({"command": script("print('done!')")})
    with pytest.raises(EngineFailure) as caught:
        await run(engine, {})
    assert caught.value.type == "InvalidOutput" and not caught.value.retryable
    assert "not JSON" in caught.value.message


async def test_a_missing_command_is_not_retryable() -> None:
    engine = ShellEngine({"command": ["/nonexistent/refund.sh"]})
    with pytest.raises(EngineFailure) as caught:
        await engine.submit(context(), {})
    assert caught.value.type == "CommandNotStarted" and not caught.value.retryable


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper counts as dead)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


async def _wait_for_file(path: Path) -> str:
    text: str = await wait_until(
        lambda: asyncio.to_thread(lambda: path.read_text().strip() if path.exists() else ""),
        f"{path} never written",
    )
    return text


async def test_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    engine = ShellEngine(
        {
            "command": [
                "/bin/sh",
                "-c",
                f"sleep 60 & echo $! > {pid_file}; trap '' TERM; wait",
            ]
        }
    )
    handle = await engine.submit(context(), {})
    child = int(await _wait_for_file(pid_file))
    assert _alive(child)
    started = time.monotonic()
    await engine.cancel(handle)
    # The shell ignores SIGTERM: the cancel waits out the grace period once, then SIGKILLs the
    # group, rather than waiting for the script. (A bound with room for a loaded machine.)
    assert time.monotonic() - started < KILL_GRACE_SECONDS + 10
    # SIGKILL is sent; the kernel ends the grandchild when it next runs.
    await wait_until(lambda: not _alive(child), "the grandchild survived the cancel")
    await engine.close()


async def test_timeout_kills_and_reports_a_retryable_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    engine = ShellEngine(
        {"command": ["/bin/sh", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], "timeout": "300ms"}
    )
    handle = await engine.submit(context(), {})
    with pytest.raises(EngineFailure) as caught:
        await engine.wait(handle)
    assert caught.value.type == "Timeout" and caught.value.retryable
    child = int(await _wait_for_file(pid_file))
    await wait_until(lambda: not _alive(child), "the grandchild survived the timeout")


def test_bad_options_are_all_reported() -> None:
    with pytest.raises(EngineConfigError) as caught:
        ShellEngine({"command": "x", "cwd": "/nonexistent", "non_retryable_exit_codes": [0], "colour": 1})
    assert {field for field, _ in caught.value.problems} == {
        "command",
        "cwd",
        "non_retryable_exit_codes",
        "colour",
    }


async def test_agent_token_is_not_passed_to_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's coordinator token stays with the agent, even when the environment is inherited."""
    monkeypatch.setenv("ACCORD_TOKEN", "agent-token-must-stay-home")
    monkeypatch.setenv("SOME_TEAM_SETTING", "visible")
    engine = ShellEngine({"command": script("import json, os, sys; json.dump(dict(os.environ), sys.stdout)")})
    output = await run(engine, {})
    assert "ACCORD_TOKEN" not in output
    assert output["SOME_TEAM_SETTING"] == "visible"
