"""``accord event publish|list``: publish a team's event (workflows with a matching trigger
start), and see what was published and which runs it started.

The wire code and the gRPC client are imported inside the commands (start-up time).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coordinator.cli._apps import event_app
from coordinator.cli._output import command, json_text, print_json

if TYPE_CHECKING:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def event_json(event: pb.Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "contract": event.contract,
        "contract_version": event.contract_version,
        "team": event.team,
        "payload": json.loads(event.payload_json) if event.payload_json else None,
        "payload_hidden": not event.payload_json,
        "published_unix_ms": event.published_unix_ms,
        "triggered_runs": list(event.triggered_runs),
        "trace_context": dict(event.trace_context),
    }


@event_app.command("publish")
@command
def publish(
    contract: Annotated[
        str, typer.Argument(help="The event contract: team/name@1 (a major or range) or @1.2.0.")
    ],
    payload: Annotated[str, typer.Option("--payload", "-p", help="The payload: JSON text or @file.")],
    request_id: Annotated[
        str,
        typer.Option(
            help=(
                "Publishing again with the same id returns the first event and starts no run again"
                " (default: an id made once for this command, so its own retries on another"
                " coordinator are safe)."
            )
        ),
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """Publish an event of your team's event contract; every workflow with a matching trigger
    starts a run. Prints the event id, then one started run id per line. ``TRACEPARENT`` in
    the environment links those runs' traces to the publishing span."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    text = json_text(payload, "--payload")
    request_id = request_id or uuid.uuid4().hex
    with Client() as client:
        response = client.coordinator.PublishEvent(
            pb.PublishEventRequest(contract=contract, payload_json=text, request_id=request_id)
        )
    event = response.event
    if as_json:
        print_json(event_json(event))
        return
    typer.echo(event.event_id)
    for run_id in event.triggered_runs:
        typer.echo(run_id)


@event_app.command("list")
@command
def list_events(
    contract: Annotated[str, typer.Option(help="Only events of this contract (team/name).")] = "",
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List published events, newest first, with the runs each started."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListEvents(
            pb.ListEventsRequest(contract=contract, page=common_pb.PageRequest(page_size=limit))
        )
    if as_json:
        print_json([event_json(e) for e in response.events])
        return
    for e in response.events:
        runs = ", ".join(e.triggered_runs) or "no runs"
        typer.echo(f"{e.event_id}  {e.contract}@{e.contract_version}  started {runs}")
