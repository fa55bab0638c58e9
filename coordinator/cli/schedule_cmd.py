"""``accord schedule list|pause|resume|trigger`` (docs/workflows.md, "Schedules")."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coordinator.cli._apps import schedule_app
from coordinator.cli._output import command, fail, print_json

if TYPE_CHECKING:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
WorkflowArgument = Annotated[str, typer.Argument(help="team/name of the workflow.")]
IdArgument = Annotated[str, typer.Argument(help="The schedule's id in the workflow file.")]


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000)) if ms else "-"


def schedule_json(s: pb.Schedule) -> dict[str, Any]:
    return {
        "workflow": s.workflow,
        "id": s.id,
        "cron": s.cron,
        "timezone": s.timezone,
        "input": json.loads(s.input_json) if s.input_json else None,
        "overlap": s.overlap,
        "catch_up": s.catch_up,
        "max_catch_up": s.max_catch_up,
        "paused": s.paused,
        "next_due_unix_ms": s.next_due_unix_ms,
        "last_due_unix_ms": s.last_due_unix_ms,
        "last_run_id": s.last_run_id,
        "queued_unix_ms": list(s.queued_unix_ms),
    }


@schedule_app.command("list")
@command
def list_schedules(
    workflow: Annotated[str, typer.Option(help="Only this workflow's schedules.")] = "",
    as_json: JsonOption = False,
) -> None:
    """Your team's schedules (the admin's: all): cron, time zone, next due time, last run."""
    from contracts._wire.accord.common.v1 import common_pb2
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListSchedules(
            pb.ListSchedulesRequest(page=common_pb2.PageRequest(page_size=1000), workflow=workflow)
        )
    if as_json:
        print_json([schedule_json(s) for s in response.schedules])
        return
    if not response.schedules:
        typer.echo("no schedules")
        return
    for s in response.schedules:
        state = "paused" if s.paused else f"next {_when(s.next_due_unix_ms)}"
        typer.echo(f"{s.workflow}  {s.id}  '{s.cron}' {s.timezone}  {state}  last run {s.last_run_id or '-'}")
        typer.echo(f"    overlap {s.overlap}, catch_up {s.catch_up} (at most {s.max_catch_up})")
        if s.queued_unix_ms:
            typer.echo(f"    queued: {', '.join(_when(ms) for ms in s.queued_unix_ms)}")


def _set_paused(workflow: str, schedule_id: str, paused: bool, as_json: bool) -> None:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.SetSchedulePaused(
            pb.SetSchedulePausedRequest(
                workflow=workflow, id=schedule_id, paused=paused, request_id=uuid.uuid4().hex
            )
        )
    if as_json:
        print_json(schedule_json(response.schedule))
        return
    s = response.schedule
    state = "paused" if s.paused else f"resumed, next due {_when(s.next_due_unix_ms)}"
    typer.echo(f"schedule {s.id} of {s.workflow}: {state}")


@schedule_app.command("pause")
@command
def pause(workflow: WorkflowArgument, schedule_id: IdArgument, as_json: JsonOption = False) -> None:
    """Pause a schedule: no run starts for it until it is resumed."""
    _set_paused(workflow, schedule_id, True, as_json)


@schedule_app.command("resume")
@command
def resume(workflow: WorkflowArgument, schedule_id: IdArgument, as_json: JsonOption = False) -> None:
    """Resume a paused schedule; the due times it missed meanwhile are caught up as its catch_up
    says (none, the last, or all up to max_catch_up)."""
    _set_paused(workflow, schedule_id, False, as_json)


@schedule_app.command("trigger")
@command
def trigger(workflow: WorkflowArgument, schedule_id: IdArgument) -> None:
    """Start a run of a schedule now (its input), outside its due times; prints the run's id.
    Exit 2 when the start is refused (the workflow is disabled, a contract version is past its
    sunset), saying why."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts.errors import FailedPreconditionError
    from coordinator.client import Client

    with Client() as client:
        try:
            response = client.coordinator.TriggerSchedule(
                pb.TriggerScheduleRequest(workflow=workflow, id=schedule_id, request_id=uuid.uuid4().hex)
            )
        except FailedPreconditionError as exc:
            # A start refused (disabled workflow, sunset passed) is the caller's to fix: exit 2.
            raise fail(str(exc)) from None
    typer.echo(response.run_id)
