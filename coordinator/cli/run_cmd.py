"""``accord run`` and ``accord runs list|show|cancel|approve|reject|signal|retry|rerun``.

The wire code and the gRPC client are imported inside the commands: ``accord --help`` and the
offline commands should not pay for grpc and protobuf (see coordinator/cli/__init__.py).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from contracts.errors import RemoteError, UnreachableError
from coordinator.cli._apps import app, runs_app
from coordinator.cli._output import command, fail, json_text, print_json

if TYPE_CHECKING:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _status(enum: str, value: int) -> str:
    """The lowercase name of a status value: ``_status("RunStatus", 3)`` -> "succeeded"."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

    return str(getattr(pb, enum).Name(value)).split("_STATUS_", 1)[1].lower()


def _run_status(value: int) -> str:
    return _status("RunStatus", value)


def _terminal(run: pb.Run) -> bool:
    return _run_status(run.status) in ("succeeded", "failed", "cancelled")


def _loads(text: str) -> Any:
    return json.loads(text) if text else None


def _error_json(error: Any) -> dict[str, Any] | None:
    if not error.type and not error.message:
        return None
    return {"type": error.type, "message": error.message, "retryable": error.retryable}


def run_json(run: pb.Run) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "workflow_version": run.workflow_version,
        "team": run.team,
        "status": _run_status(run.status),
        "input": _loads(run.input_json),
        "output": _loads(run.output_json),
        "payload_hidden": run.payload_hidden,
        "idempotency_key": run.idempotency_key,
        "error": _error_json(run.error) if run.HasField("error") else None,
        "created_unix_ms": run.created_unix_ms,
        "finished_unix_ms": run.finished_unix_ms,
        "trace_id": run.trace_id,
        "pinned_versions": dict(run.pinned_versions),
        "started_by": run.started_by,
        "warnings": list(run.warnings),
        "deadline_unix_ms": run.deadline_unix_ms,
        "retry_of": run.retry_of,
        "steps": [
            {
                "id": s.id,
                "contract": s.contract,
                "contract_version": s.contract_version,
                "team": s.team,
                "status": _status("StepStatus", s.status),
                "waiting_reason": s.waiting_reason,
                "waiting_for": s.waiting_for,
                "reused_from": s.reused_from,
                "idempotency_key": s.idempotency_key,
                "input": _loads(s.input_json),
                "output": _loads(s.output_json),
                "payload_hidden": s.payload_hidden,
                "error": _error_json(s.error) if s.HasField("error") else None,
                "next_attempt_unix_ms": s.next_attempt_unix_ms,
                "attempts": [
                    {
                        "attempt_id": a.attempt_id,
                        "number": a.number,
                        "status": _status("AttemptStatus", a.status),
                        "agent_id": a.agent_id,
                        "scheduled_unix_ms": a.scheduled_unix_ms,
                        "started_unix_ms": a.started_unix_ms,
                        "finished_unix_ms": a.finished_unix_ms,
                        "error": _error_json(a.error) if a.HasField("error") else None,
                    }
                    for a in s.attempts
                ],
            }
            for s in run.steps
        ],
    }


def _duration(start: int, end: int) -> str:
    if not start:
        return ""
    ms = (end or int(time.time() * 1000)) - start
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def print_run(run: pb.Run) -> None:
    status = _run_status(run.status)
    typer.echo(f"run {run.run_id}: {status}")
    typer.echo(
        f"  workflow  {run.workflow} v{run.workflow_version} (team {run.team}), started by {run.started_by or '-'}"
    )
    typer.echo(f"  trace     {run.trace_id}")
    typer.echo(f"  duration  {_duration(run.created_unix_ms, run.finished_unix_ms)}")
    for warning in run.warnings:
        typer.echo(f"  warning   {warning}")
    if run.deadline_unix_ms:
        deadline = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.deadline_unix_ms / 1000))
        typer.echo(f"  timeout   at {deadline}")
    if run.retry_of:
        typer.echo(f"  retry of  {run.retry_of}")
    if run.HasField("error") and run.error.message:
        typer.echo(f"  error     {run.error.type}: {run.error.message}")
    typer.echo("steps:")
    from coordinator.telemetry.hops import shown_step_status, step_was_started

    width = max((len(s.id) for s in run.steps), default=4)
    step_ids = [s.id for s in run.steps]
    for step in run.steps:
        # "not started" for a step its run ended before it began, as the trace and the UI say.
        status = shown_step_status(
            _status("StepStatus", step.status), step_was_started(step.id, len(step.attempts), step_ids)
        )
        what = f"{step.contract}@{step.contract_version} (team {step.team})"
        if step.waiting_for:
            what = f"wait for {step.waiting_for}"
        line = f"  {step.id:<{width}}  {status:<11}  {what}"
        if step.reused_from:
            line += f"  reused from {step.reused_from}"
        if step.attempts:
            line += f"  attempts {len(step.attempts)}"
        typer.echo(line)
        if step.waiting_reason:
            typer.echo(f"  {'':<{width}}  waiting: {step.waiting_reason}")
        for attempt in step.attempts:
            detail = f"attempt {attempt.number} {_status('AttemptStatus', attempt.status)}"
            if attempt.agent_id:
                detail += f" on {attempt.agent_id}"
            took = _duration(attempt.started_unix_ms, attempt.finished_unix_ms)
            if took:
                detail += f" ({took})"
            if attempt.error.message:
                detail += f": {attempt.error.type}: {attempt.error.message}"
            typer.echo(f"  {'':<{width}}  {detail}")
        if step.HasField("error") and step.error.message and _status("StepStatus", step.status) == "failed":
            typer.echo(f"  {'':<{width}}  error: {step.error.type}: {step.error.message}")
    if run.output_json:
        typer.echo(f"output: {run.output_json}")


# How long ``run --wait`` keeps trying to watch again while the coordinator does not answer
# (long enough for a restart; runs survive restarts).
_REWATCH_S = 15.0
# WatchRun sends a run when it changes state; why a step waits (no agent serving it, agents
# busy) can change without that, so the watch is renewed this often: each renewal starts with
# the run as it is now, waiting reasons included.
_REFRESH_S = 2.0


def _wait(
    client: Client,
    current: pb.Run,
    *,
    timeout: float | None = None,
    on_update: Callable[[pb.Run], None] = lambda run: None,
) -> pb.Run | None:
    """Follow the run with WatchRun until it ends (the stream ends only once the run is
    terminal); None if it is still going after ``timeout`` seconds. ``on_update`` sees every
    state of the run received meanwhile.

    If the stream breaks off because the coordinator went away (a restart, the network), watch
    again as soon as it answers, for up to ``_REWATCH_S``: the run goes on across a restart.
    """
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import merge_watched

    deadline = None if timeout is None else time.monotonic() + timeout
    unreachable_since: float | None = None
    while True:
        window = _REFRESH_S
        if deadline is not None:
            window = min(window, deadline - time.monotonic())
            if window <= 0:
                return None
        started = time.monotonic()
        try:
            request = pb.WatchRunRequest(run_id=current.run_id, changes_only=True)
            for update in client.coordinator.stream("WatchRun", request, timeout=window):
                current, unreachable_since = merge_watched(current, update), None
                on_update(current)
                if _terminal(current):
                    return current
        except UnreachableError:
            now = time.monotonic()
            unreachable_since = unreachable_since or now
            if now - unreachable_since >= _REWATCH_S:
                raise
            time.sleep(0.5 if deadline is None else max(0.0, min(0.5, deadline - now)))
            continue
        if time.monotonic() - started >= window * 0.9:
            continue  # the renewal: the watch ran out its window
        raise RemoteError(
            f"the coordinator ended the watch of run {current.run_id} while it was "
            f"{_run_status(current.status)}; see 'accord runs show {current.run_id}'"
        )


# Reasons that are the ordinary course of a run, not worth a line: a step waits for another
# one (whose own reason says why), or is being handed to an idle agent right now.
_ORDINARY_WAIT = ("waiting for step ", "ready to start")
_HANDING_OVER = "being handed to an agent"
_SECONDS = re.compile(r"\d+(?:\.\d+)?s\b")


class _WaitingReporter:
    """Prints each step's waiting reason to stderr when it changes ("waiting: step notify: no
    agent of team crm is serving crm/notify-customer@1 ..."); how long it has queued does not
    count as a change."""

    def __init__(self) -> None:
        self._shown: dict[str, str] = {}

    def __call__(self, run: pb.Run) -> None:
        for step in run.steps:
            reason = step.waiting_reason
            if not reason or reason.startswith(_ORDINARY_WAIT) or _HANDING_OVER in reason:
                self._shown.pop(step.id, None)
                continue
            key = _SECONDS.sub("Ns", reason)
            if self._shown.get(step.id) != key:
                self._shown[step.id] = key
                typer.echo(f"waiting: step {step.id}: {reason}", err=True)


@app.command("run")
@command
def run(
    workflow: Annotated[str, typer.Argument(help="team/name of the workflow, or team/name@N for version N.")],
    input: Annotated[str, typer.Option("--input", "-i", help="Run input: JSON text or @file.")] = "{}",
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the end; print only the output JSON.")
    ] = False,
    idempotency_key: Annotated[str, typer.Option(help="Same key, same run.")] = "",
    timeout: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="With --wait: give up waiting after this long (e.g. 30s, 5m; exit 1, the run goes on).",
        ),
    ] = "",
    override: Annotated[
        list[str] | None,
        typer.Option(
            "--override",
            metavar='RULE="reason"',
            help='Start although RULE would refuse it, e.g. --override sunset="invoices close tonight; '
            'moving to v2 on Monday". Recorded (who, when, why) in the audit log. Rules: sunset.',
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Start a run of a workflow.

    team/name runs the current version; team/name@N version N. Warnings about the contract versions it pins (deprecated, sunset passed) are printed on
    stderr. With --wait, why a step waits (e.g. no agent serving its contract) is printed on
    stderr whenever it changes; stdout carries only the output JSON. Exit 2 when the start is
    refused: bad input, the workflow is disabled, or a contract version is past its sunset."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts.durations import parse_duration
    from contracts.errors import FailedPreconditionError
    from coordinator.client import Client

    overrides: dict[str, str] = {}
    for item in override or []:
        rule, sep, reason = item.partition("=")
        if not sep or not rule.strip() or not reason.strip():
            raise fail(
                f'--override {item!r}: expected RULE="reason", e.g. --override sunset="why it must run"'
            )
        overrides[rule.strip()] = reason.strip()

    seconds: float | None = None
    if timeout:
        if not wait:
            raise fail("--timeout needs --wait")
        seconds = parse_duration(timeout, what="--timeout")
        if seconds <= 0:
            raise fail(f"--timeout must be longer than 0, not {timeout!r}")
    text = json_text(input, "--input")
    with Client() as client:
        try:
            response = client.coordinator.StartRun(
                pb.StartRunRequest(
                    workflow=workflow,
                    input_json=text,
                    idempotency_key=idempotency_key,
                    # made once: a retry on another coordinator after a lost answer starts no second run
                    request_id=uuid.uuid4().hex,
                    overrides=overrides,
                )
            )
        except FailedPreconditionError as exc:
            # A start refused (disabled workflow, sunset passed) is the caller's to fix: exit 2.
            raise fail(str(exc)) from None
        current = response.run
        for warning in current.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if not wait:
            if as_json:
                print_json({**run_json(current), "created": response.created})
            else:
                typer.echo(current.run_id)
            return
        reporter = _WaitingReporter()
        reporter(current)
        finished = _wait(client, current, timeout=seconds, on_update=reporter)
        if finished is None:
            latest = client.coordinator.GetRun(pb.GetRunRequest(run_id=current.run_id)).run
            finished = latest if _terminal(latest) else None
        if finished is None:
            typer.echo(
                f"error: run {current.run_id} still {_run_status(latest.status)} after {timeout}; "
                f"see accord runs show {current.run_id}",
                err=True,
            )
            if as_json:
                print_json(run_json(latest))
            raise typer.Exit(1)
        current = finished
    if current.status == pb.RUN_STATUS_SUCCEEDED:
        if as_json:
            print_json(run_json(current))
        else:
            typer.echo(current.output_json or "null")
        return
    status = _run_status(current.status)
    message = f"{current.error.type}: {current.error.message}" if current.error.message else status
    typer.echo(f"error: run {current.run_id} {status}: {message}", err=True)
    if as_json:
        print_json(run_json(current))
    raise typer.Exit(1)


# The most runs one ListRuns call returns (the server's page limit).
_MAX_LIST = 1000


def check_team(client: Client, team: str) -> None:
    """Fail (exit 2) when ``team`` names no team: a filter on a typo would just list nothing."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

    request = pb.ListTeamsRequest(page=common_pb.PageRequest(page_size=_MAX_LIST))
    names = sorted(t.name for t in client.coordinator.ListTeams(request).teams)
    if team not in names:
        raise fail(f"--team {team!r}: there is no such team (teams: {', '.join(names) or 'none'})")


@runs_app.command("list")
@command
def list_runs(
    workflow: Annotated[str, typer.Option(help="Only runs of this workflow.")] = "",
    status: Annotated[str, typer.Option(help="pending, running, succeeded, failed, cancelled.")] = "",
    team: Annotated[str, typer.Option(help="Runs involving this team.")] = "",
    limit: Annotated[
        int, typer.Option(min=1, max=_MAX_LIST, help=f"At most this many (1 to {_MAX_LIST}).")
    ] = 50,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    status_value = pb.RUN_STATUS_UNSPECIFIED
    if status:
        key = f"RUN_STATUS_{status.upper()}"
        if key not in pb.RunStatus.keys():
            raise fail(
                f"--status must be one of pending, running, succeeded, failed, cancelled; not '{status}'"
            )
        status_value = pb.RunStatus.Value(key)
    with Client() as client:
        response = client.coordinator.ListRuns(
            pb.ListRunsRequest(
                workflow=workflow, status=status_value, team=team, page=common_pb.PageRequest(page_size=limit)
            )
        )
        if team and not response.runs:
            check_team(client, team)
    if as_json:
        print_json([run_json(r) for r in response.runs])
        return
    for r in response.runs:
        typer.echo(
            f"{r.run_id}  {_run_status(r.status):<9}  {r.workflow} v{r.workflow_version}  {_duration(r.created_unix_ms, r.finished_unix_ms)}"
        )


@runs_app.command("show")
@command
def show(run_id: str, as_json: JsonOption = False) -> None:
    """What a run is doing: each step's state, attempts, errors, and why a step waits."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))
    if as_json:
        print_json(run_json(response.run))
        return
    print_run(response.run)


@runs_app.command("cancel")
@command
def cancel(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Cancel a run; in-flight tasks learn it through their next heartbeat."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.CancelRun(pb.CancelRunRequest(run_id=run_id, reason=reason))
    if as_json:
        print_json(run_json(response.run))
        return
    typer.echo(f"run {run_id}: {_run_status(response.run.status)}")


def _answer(run_id: str, step_id: str, action: Any, as_json: bool, **fields: Any) -> None:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.AnswerStep(
            pb.AnswerStepRequest(
                run_id=run_id, step_id=step_id, action=action, request_id=uuid.uuid4().hex, **fields
            )
        )
    if as_json:
        print_json(run_json(response.run))
        return
    step = next((s for s in response.run.steps if s.id == step_id), None)
    state = _status("StepStatus", step.status) if step is not None else "?"
    typer.echo(f"run {run_id}: step {step_id} {state}; run {_run_status(response.run.status)}")


StepArgument = Annotated[str, typer.Argument(help="The waiting step's id.")]


@runs_app.command("approve")
@command
def approve(
    run_id: str,
    step_id: StepArgument,
    comment: Annotated[str, typer.Option(help="Why (the step's output carries it).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Approve a step waiting for an approval (wait_for: approval); its output is
    {approved: true, by: YOUR_TEAM, comment}. Only the teams the step names and the workflow's
    owner may."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

    _answer(run_id, step_id, pb.ANSWER_ACTION_APPROVE, as_json, comment=comment)


@runs_app.command("reject")
@command
def reject(
    run_id: str,
    step_id: StepArgument,
    comment: Annotated[str, typer.Option(help="Why (the step's output carries it).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Reject a step waiting for an approval; its output is {approved: false, ...} and the run
    goes on (a later step decides with when: ${steps.STEP.output.approved})."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

    _answer(run_id, step_id, pb.ANSWER_ACTION_REJECT, as_json, comment=comment)


@runs_app.command("signal")
@command
def signal(
    run_id: str,
    step_id: StepArgument,
    data: Annotated[str, typer.Option("--data", "-d", help="The payload: JSON text or @file.")] = "{}",
    as_json: JsonOption = False,
) -> None:
    """Send the signal a step waits for (wait_for: signal); the payload must match the signal's
    schema and becomes the step's output."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

    _answer(run_id, step_id, pb.ANSWER_ACTION_SIGNAL, as_json, payload_json=json_text(data, "--data"))


@runs_app.command("retry")
@command
def retry(
    run_id: str,
    from_step: Annotated[
        str, typer.Option("--from", help="Run again from this step (default: the first failed step).")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Start a new run of RUN's workflow version, pinned to RUN's contract versions, that reuses
    the recorded outputs of every step that is neither --from nor downstream of it (shown as
    "reused") and runs the rest. Prints the new run's id."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.RetryRun(
            pb.RetryRunRequest(run_id=run_id, from_step=from_step, request_id=uuid.uuid4().hex)
        )
    if as_json:
        print_json(run_json(response.run))
        return
    typer.echo(response.run.run_id)


@runs_app.command("rerun")
@command
def rerun(run_id: str, as_json: JsonOption = False) -> None:
    """Start a new run of RUN's workflow (its newest version) with RUN's stored input, sensitive
    fields included (which no viewer can copy out of `runs show`). Prints the new run's id."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.StartRun(
            pb.StartRunRequest(rerun_of=run_id, request_id=uuid.uuid4().hex)
        )
    if as_json:
        print_json({**run_json(response.run), "created": response.created})
        return
    typer.echo(response.run.run_id)
