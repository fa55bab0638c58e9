"""The ``ansible`` adapter against real ansible-playbook runs (ansible-runner, ansible-core) on
localhost with ``connection: local``, from the playbooks in tests/engines/ansible_project/."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from team_agent.engines import ansible as ansible_engine
from team_agent.engines.ansible import (
    CLAIM_FILE,
    IDENT,
    AnsibleEngine,
    run_dir_name,
)
from team_agent.engines.base import EngineConfigError, EngineFailure, load_engine
from tests.engines.conftest import make_task
from tests.support.wait import wait_until

PROJECT = Path(__file__).parent / "ansible_project"
MakeEngine = Callable[..., AnsibleEngine]

# No server is shared: each test runs its own playbooks in its own runs_dir, so they spread over
# the xdist workers.
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def make_engine(tmp_path: Path) -> AsyncIterator[MakeEngine]:
    made: list[AnsibleEngine] = []

    def make(**config: Any) -> AnsibleEngine:
        base: dict[str, Any] = {
            "project_dir": str(PROJECT),
            "playbook": "echo.yml",
            "inventory": "inventory.ini",
            "output": {"stat": "answer"},
            "runs_dir": str(tmp_path / "runs"),
            "poll_interval": "50ms",
            "max_poll_interval": "200ms",
        }
        base.update(config)
        engine = AnsibleEngine({k: v for k, v in base.items() if v is not None})
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.close()


async def run(engine: AnsibleEngine, input: Any, **task: Any) -> Any:
    return await engine.wait(await engine.submit(make_task(**task), input))


def events(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    found = []
    for path in (run_dir / "artifacts" / IDENT / "job_events").glob("*.json"):
        if not path.name.endswith("-partial.json"):
            event = json.loads(path.read_text())
            if event.get("event") == kind:
                found.append(event)
    return found


async def test_found_through_the_entry_point() -> None:
    assert load_engine("ansible") is AnsibleEngine


async def test_success_returns_the_stat_with_the_key_and_trace_passed_in(
    make_engine: MakeEngine, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACCORD_TOKEN", "the-agents-own-token")  # never the playbook's business
    engine = make_engine(extra_vars={"currency": "EUR"})
    task = make_task("run-1/reserve")
    # ansible_* input fields are not spread as variables: this one would make localhost an SSH host;
    # and the binding's extra_vars win over input fields (currency).
    # Input strings are never templated: this note stays text, its lookup never runs.
    value = {
        "order_id": "o-1",
        "ansible_connection": "ssh",
        "items": [1, {"note": "{{ lookup('ansible.builtin.pipe', 'echo ran') }}"}],
        "currency": "USD",
    }
    with trace.get_tracer("test").start_as_current_span("engine.ansible") as engine_span:
        handle = await engine.submit(task, value)
        output = await engine.wait(handle)
    traceparent = output.pop("traceparent")
    assert output == {
        "order_id": "o-1",
        "input": value,
        "idempotency_key": "run-1/reserve",
        "env_traceparent": traceparent,
        "attempt": 1,
        "currency": "EUR",
        "agent_token_seen": False,
    }
    # The playbook runs inside the agent's engine span.
    assert traceparent.split("-")[1] == format(engine_span.get_span_context().trace_id, "032x")
    run_dir = Path(handle.details["run_dir"])
    assert run_dir.name == run_dir_name("run-1/reserve") and not handle.state["attached"]
    assert (run_dir / "artifacts" / IDENT / "status").read_text() == "successful"
    assert oct(run_dir.parent.stat().st_mode & 0o777) == "0o700"  # extra vars are written there

    finished = {s.name: s for s in spans.get_finished_spans()}
    playbook = finished["ansible.playbook echo.yml"]
    assert (
        playbook.parent is not None and playbook.parent.span_id == finished["engine.ansible"].context.span_id
    )
    play = finished["ansible.play Echo the task"]
    assert play.parent is not None and play.parent.span_id == playbook.context.span_id
    tasks = {n.split(" ", 1)[1]: s for n, s in finished.items() if n.startswith("ansible.task ")}
    assert {"Wait", "Fail on request", "Compute the answer", "Publish the answer"} <= set(tasks)
    for span in tasks.values():
        assert span.parent is not None and span.parent.span_id == play.context.span_id
        assert playbook.start_time <= span.start_time <= span.end_time <= playbook.end_time
    attributes = dict(tasks["Compute the answer"].attributes or {})
    assert attributes["ansible.task.status"] == "ok" and attributes["ansible.host"] == "localhost"
    assert attributes["ansible.task.action"] == "ansible.builtin.set_fact"
    assert dict(tasks["Wait"].attributes or {})["ansible.task.status"] == "skipped"


async def test_the_other_outputs_of_one_run(make_engine: MakeEngine) -> None:
    """One run, read by adapters with each output setting (a re-delivery reads the finished run
    from disk, so no second playbook run is needed)."""
    first = make_engine(output={"file": "out.json"})
    task = make_task("run-out/reserve")
    assert (await first.wait(await first.submit(task, {"order_id": "o-out"})))["order_id"] == "o-out"

    async def read(output: Any) -> Any:
        engine = make_engine(output=output)
        handle = await engine.submit(task, {"order_id": "o-out"})
        assert handle.state["attached"]
        return await engine.wait(handle)

    assert (await read({"fact": "answer", "host": "localhost"}))["order_id"] == "o-out"
    assert (await read({"fact": "answer"}))["order_id"] == "o-out"
    assert (await read({"stat": "answer"}))["order_id"] == "o-out"
    summary = await read(None)
    assert summary["status"] == "successful" and summary["rc"] == 0
    assert summary["stats"]["ok"] == {"localhost": 3} and summary["stats"]["skipped"] == {"localhost": 2}
    with pytest.raises(EngineFailure) as info:
        await read({"stat": "nothing"})
    assert info.value.type == "OutputMissing" and not info.value.retryable
    assert "set no stat 'nothing'" in info.value.message
    with pytest.raises(EngineFailure) as info:
        await read({"fact": "answer", "host": "elsewhere"})
    assert info.value.type == "OutputMissing" and "on host elsewhere" in info.value.message
    with pytest.raises(EngineFailure) as info:
        await read({"file": "other.json"})
    assert info.value.type == "OutputMissing" and "accord_output_file" in info.value.message
    run_dir = Path(first.config.runs_dir) / run_dir_name("run-out/reserve")
    (run_dir / "out.json").write_text("{not json")
    with pytest.raises(EngineFailure) as info:
        await read({"file": "out.json"})
    assert info.value.type == "OutputNotJson"
    assert len(events(run_dir, "playbook_on_start")) == 1


async def test_a_fact_set_on_several_hosts_needs_output_host(make_engine: MakeEngine) -> None:
    engine = make_engine(playbook="two_hosts.yml", output={"fact": "where"})
    task = make_task("run-two/reserve")
    with pytest.raises(EngineFailure) as info:
        await engine.wait(await engine.submit(task, {}))
    assert info.value.type == "OutputAmbiguous" and "localhost, other" in info.value.message
    engine = make_engine(playbook="two_hosts.yml", output={"fact": "where", "host": "other"})
    assert await engine.wait(await engine.submit(task, {})) == "other"


async def test_a_failed_task_is_not_retryable_and_carries_ansibles_message(make_engine: MakeEngine) -> None:
    engine = make_engine()
    with pytest.raises(EngineFailure) as info:
        await run(engine, {"order_id": "o-2", "fail_with": "card declined by the bank"}, key="run-f/reserve")
    failure = info.value
    assert failure.type == "TaskFailed" and not failure.retryable
    assert failure.message == (
        "Ansible playbook echo.yml failed: task 'Fail on request' failed on localhost: card declined by the bank"
    )
    assert failure.details["failed_hosts"] == ["localhost"] and failure.details["rc"] == 2
    assert "card declined by the bank" in failure.details["stdout_tail"]
    # The binding can make task failures retryable (read here from the same run, on disk).
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(task_failure="retryable"), {}, key="run-f/reserve")
    assert info.value.type == "TaskFailed" and info.value.retryable


@pytest.mark.skipif(
    shutil.which("ssh") is None, reason="needs an ssh client (Debian's openssh-client) for a real UNREACHABLE"
)
async def test_an_unreachable_host_is_retryable_with_ansibles_message(make_engine: MakeEngine) -> None:
    engine = make_engine(playbook="unreachable.yml", output=None)
    with pytest.raises(EngineFailure) as info:
        await run(engine, {})
    failure = info.value
    assert failure.type == "HostUnreachable" and failure.retryable
    assert failure.message.startswith(
        "Ansible playbook unreachable.yml could not reach its hosts: task 'Ping' unreachable on closed: "
    )
    assert "Connection refused" in failure.message
    assert failure.details["unreachable_hosts"] == ["closed"] and failure.details["rc"] == 4


async def test_a_playbook_ansible_refuses_is_a_playbook_error(make_engine: MakeEngine) -> None:
    with pytest.raises(EngineFailure) as info:
        await run(make_engine(playbook="broken.yml"), {})
    assert info.value.type == "PlaybookError" and not info.value.retryable
    assert "hosts" in info.value.message and "rc " in info.value.message


async def test_a_redelivered_task_attaches_to_its_run_and_never_starts_a_second(
    make_engine: MakeEngine,
) -> None:
    engine = make_engine()
    task = make_task("run-d/reserve")
    first = await engine.submit(task, {"order_id": "d", "sleep": 1})
    again = await engine.submit(task, {"order_id": "d", "sleep": 1})  # while it runs
    assert again.state["run_dir"] == first.state["run_dir"] and again.state["attached"]
    assert (await engine.wait(again))["order_id"] == "d"
    assert (await engine.wait(first))["order_id"] == "d"
    # After the run, a new adapter (the agent restarted) finds the finished run on disk.
    restarted = make_engine()
    later = await restarted.submit(task, {"order_id": "d", "sleep": 1})
    assert later.state["run_dir"] == first.state["run_dir"] and later.state["attached"]
    assert (await restarted.wait(later))["order_id"] == "d"
    run_dir = Path(first.details["run_dir"])
    assert len(events(run_dir, "playbook_on_start")) == 1
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [run_dir.name]


async def test_a_run_goes_on_when_its_agent_stops_and_the_restarted_agent_attaches(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine()
    task = make_task("run-s/reserve")
    first = await engine.submit(task, {"order_id": "s", "sleep": 1})
    # A restarted agent knows nothing of the runner it started: only runs_dir survives.
    monkeypatch.setattr(ansible_engine, "_LIVE", {})
    restarted = make_engine()
    again = await restarted.submit(task, {"order_id": "s", "sleep": 1})
    assert again.state["attached"] and again.state["run_dir"] == first.state["run_dir"]
    assert (await restarted.wait(again))["order_id"] == "s"  # awaited through its status file
    assert len(events(Path(first.details["run_dir"]), "playbook_on_start")) == 1


async def test_a_retry_after_a_failed_run_starts_the_next_generation(make_engine: MakeEngine) -> None:
    engine = make_engine(task_failure="retryable")
    with pytest.raises(EngineFailure):
        await run(engine, {"order_id": "r", "fail_with": "not yet"}, key="run-r/reserve", attempt=1)
    # The same attempt re-delivered reports the same failed run again...
    with pytest.raises(EngineFailure) as info:
        await run(engine, {"order_id": "r"}, key="run-r/reserve", attempt=1)
    assert info.value.message.endswith("not yet")
    # ... and the next attempt runs the playbook anew.
    handle = await engine.submit(make_task("run-r/reserve", attempt=2), {"order_id": "r"})
    assert (await engine.wait(handle))["attempt"] == 2
    assert Path(handle.details["run_dir"]).name == run_dir_name("run-r/reserve", 2)


async def test_a_run_whose_agent_died_is_interrupted_and_the_retry_runs_anew(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    engine = make_engine()
    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()  # a pid that no longer runs: the agent that claimed the run
    run_dir = tmp_path / "runs" / run_dir_name("run-i/reserve")
    run_dir.mkdir(parents=True)
    (run_dir / CLAIM_FILE).write_text(json.dumps({"runner_pid": gone.pid, "playbook_pid": gone.pid}))
    with pytest.raises(EngineFailure) as info:
        await run(engine, {"order_id": "i"}, key="run-i/reserve", attempt=1)
    assert info.value.type == "PlaybookInterrupted" and info.value.retryable
    assert (await run(engine, {"order_id": "i"}, key="run-i/reserve", attempt=2))["order_id"] == "i"


async def test_a_run_of_another_live_agent_is_waited_for_on_disk(
    make_engine: MakeEngine, tmp_path: Path
) -> None:
    """Two agents sharing runs_dir: the second waits for the first one's status file."""
    engine = make_engine(output=None)  # makes runs_dir, 0700
    owner = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    try:
        run_dir = tmp_path / "runs" / run_dir_name("run-o/reserve")
        run_dir.mkdir()
        (run_dir / CLAIM_FILE).write_text(json.dumps({"runner_pid": owner.pid}))
        handle = await engine.submit(make_task("run-o/reserve"), {"order_id": "o"})
        assert handle.state["attached"]
        artifacts = run_dir / "artifacts" / IDENT
        waiter = asyncio.create_task(engine.wait(handle))
        artifacts.mkdir(parents=True)
        (artifacts / "rc").write_text("0")
        (artifacts / "status").write_text("successful")
        assert (await waiter)["status"] == "successful"
    finally:
        owner.kill()
        await owner.wait()


async def test_cancel_kills_the_playbook(make_engine: MakeEngine) -> None:
    engine = make_engine()
    handle = await engine.submit(make_task("run-c/reserve"), {"order_id": "c", "sleep": 117})
    run_dir = Path(handle.details["run_dir"])
    claim = await wait_until(
        lambda: events(run_dir, "runner_on_start") and json.loads((run_dir / CLAIM_FILE).read_text()),
        "the Wait task never started",
    )
    pid = claim["playbook_pid"]
    await engine.cancel(handle)
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    assert info.value.type == "PlaybookCancelled"
    assert (run_dir / "artifacts" / IDENT / "status").read_text() == "canceled"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the playbook's whole process group
    # And what ran under it: Ansible's workers start sessions of their own (the task's `sleep`
    # runs in its worker's group); none of them, nor the sleep, is left.
    await wait_until(
        lambda: not _processes_of(run_dir, 117), "a process of the cancelled run is still running"
    )


def _processes_of(run_dir: Path, sleep: int) -> list[str]:
    """Command lines of the processes that belong to the run in ``run_dir``: the playbook and its
    workers (forks of it: their command lines name the run's directory) and the task's command
    (``sleep <sleep>``, a duration no other test uses)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if str(run_dir) in command or command == f"sleep {sleep}":
            found.append(command)
    return found


def test_config_errors_list_every_problem(tmp_path: Path) -> None:
    with pytest.raises(EngineConfigError) as info:
        AnsibleEngine(
            {
                "project_dir": str(tmp_path / "missing"),
                "output": {"stat": "a", "file": "b"},
                "extra_vars": {"accord_input": 1},
                "task_failure": "sometimes",
                "verbosity": 9,
                "runs_dir": str(tmp_path / "runs"),
                "playbok": "x.yml",
            }
        )
    problems = dict(info.value.problems)
    assert {
        "project_dir",
        "playbook",
        "output",
        "extra_vars.accord_input",
        "task_failure",
        "verbosity",
        "playbok",
    } <= set(problems)
    assert f"{tmp_path / 'missing'} is not a directory" in problems["project_dir"]
    assert problems["playbook"] == "ansible: is required"
    with pytest.raises(EngineConfigError) as info:
        AnsibleEngine(
            {
                "project_dir": str(PROJECT),
                "playbook": "nope.yml",
                "inventory": "hosts/missing.ini",
                "output": {"file": "../escape.json"},
                "runs_dir": str(tmp_path / "runs"),
            }
        )
    problems = dict(info.value.problems)
    assert (
        problems["playbook"]
        == f"ansible: {PROJECT / 'nope.yml'} does not exist (a path relative to project_dir)"
    )
    assert problems["inventory"].startswith(f"ansible: {PROJECT / 'hosts/missing.ini'} does not exist")
    assert "inside the run's directory" in problems["output.file"]
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(EngineConfigError) as info:
        AnsibleEngine({"project_dir": str(PROJECT), "playbook": "echo.yml", "runs_dir": str(shared)})
    assert "is open to other users (mode 755)" in dict(info.value.problems)["runs_dir"]
    assert oct(shared.stat().st_mode & 0o777) == "0o755"  # refused, never chmod-ed


async def test_the_bindings_timeout_kills_the_run(make_engine: MakeEngine) -> None:
    engine = make_engine(timeout="1s")
    handle = await engine.submit(make_task("run-t/reserve"), {"order_id": "t", "sleep": 118})
    with pytest.raises(EngineFailure) as info:
        await engine.wait(handle)
    assert info.value.type == "PlaybookTimeout" and info.value.retryable
    run_dir = Path(handle.details["run_dir"])
    assert (run_dir / "artifacts" / IDENT / "status").read_text() == "timeout"
    await wait_until(
        lambda: not _processes_of(run_dir, 118), "a process of the timed-out run is still running"
    )


def test_finished_runs_older_than_keep_runs_are_removed(make_engine: MakeEngine, tmp_path: Path) -> None:
    engine = make_engine(keep_runs="1h")
    runs = tmp_path / "runs"
    for name, status, age in [("old", "successful", 7200), ("new", "failed", 60), ("going", None, 7200)]:
        artifacts = runs / f"accord-{name}-1" / "artifacts" / IDENT
        artifacts.mkdir(parents=True)
        if status is not None:
            (artifacts / "status").write_text(status)
            past = time.time() - age
            os.utime(artifacts / "status", (past, past))
    engine._prune_now()
    assert sorted(p.name for p in runs.iterdir()) == ["accord-going-1", "accord-new-1"]
