"""``accord event publish|list|show|tail``: publish a team's event (workflows with a matching
trigger start), and see what was published and which runs it started.

The wire code and the gRPC client are imported inside the commands (start-up time).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coordinator.cli._apps import event_app
from coordinator.cli._output import command, fail, json_text, print_json

if TYPE_CHECKING:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def event_json(event: pb.Event) -> dict[str, Any]:
    """``payload_omitted``: a list answer left out a payload larger than 16 KiB (``payload``
    is then null; ``accord event show ID`` has it)."""
    return {
        "event_id": event.event_id,
        "contract": event.contract,
        "contract_version": event.contract_version,
        "team": event.team,
        "payload": json.loads(event.payload_json) if event.payload_json else None,
        "payload_hidden": not event.payload_json and not event.payload_omitted,
        "payload_omitted": event.payload_omitted,
        "payload_bytes": event.payload_bytes,
        "published_unix_ms": event.published_unix_ms,
        "triggered_runs": list(event.triggered_runs),
        "trace_context": dict(event.trace_context),
        "delivered_unix_ms": event.delivered_unix_ms,
        "handled_unix_ms": event.handled_unix_ms,
        "source_run": event.source_run,
    }


def _state(event: pb.Event) -> str:
    if event.handled_unix_ms:
        return "triggers ran"
    return "delivered, triggers pending" if event.delivered_unix_ms else "stored, waiting for the event bus"


def _wait_handled(client: Any, event: pb.Event, timeout_s: float) -> pb.Event:
    """The event once its triggers ran (read again every 50 ms, then less often), or exit 1
    after ``timeout_s`` saying what is known."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

    deadline = time.monotonic() + timeout_s
    pause = 0.05
    while not event.handled_unix_ms:
        if time.monotonic() >= deadline:
            raise fail(
                f"event {event.event_id} is {_state(event)} after {timeout_s:g}s (--timeout); it is"
                f" stored and its triggers will run: see accord event show {event.event_id}",
                1,
            )
        time.sleep(pause)
        pause = min(pause * 1.5, 0.5)
        event = client.coordinator.GetEvent(pb.GetEventRequest(event_id=event.event_id)).event
    return event


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
    wait: Annotated[
        bool,
        typer.Option(
            "--wait", help="Wait until the triggers ran, then print each started run id after the event id."
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --wait: give up after this many seconds (exit 1).", min=0.1)
    ] = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Publish an event of your team's event contract: prints the event id as soon as it is
    stored. Every workflow with a matching trigger then starts a run; with ``--wait``, one
    started run id per line follows (``accord event show ID`` lists them at any time).
    ``TRACEPARENT`` in the environment links those runs' traces to the publishing span."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    text = json_text(payload, "--payload")
    request_id = request_id or uuid.uuid4().hex
    with Client() as client:
        response = client.coordinator.PublishEvent(
            pb.PublishEventRequest(contract=contract, payload_json=text, request_id=request_id)
        )
        event = response.event
        if not wait:
            if as_json:
                print_json(event_json(event))
            else:
                typer.echo(event.event_id)
            return
        if not as_json:
            typer.echo(event.event_id)  # at once: the event is stored whatever the wait brings
            sys.stdout.flush()
        event = _wait_handled(client, event, timeout)
    if as_json:
        print_json(event_json(event))
        return
    for run_id in event.triggered_runs:
        typer.echo(run_id)


@event_app.command("list")
@command
def list_events(
    contract: Annotated[str, typer.Option(help="Only events of this contract (team/name).")] = "",
    team: Annotated[str, typer.Option(help="Only events of this team's event contracts.")] = "",
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """List published events, newest first, with the runs each started. A payload larger than
    16 KiB is left out of ``--json`` (``payload_omitted``): ``accord event show ID`` has it."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListEvents(
            pb.ListEventsRequest(
                contract=_contract_name(contract), team=team, page=common_pb.PageRequest(page_size=limit)
            )
        )
    if as_json:
        print_json([event_json(e) for e in response.events])
        return
    for e in response.events:
        if e.handled_unix_ms:
            started = "started " + (", ".join(e.triggered_runs) or "no runs")
        else:
            started = _state(e)  # its triggers have not run yet
        typer.echo(f"{e.event_id}  {e.contract}@{e.contract_version}  {started}")


def _contract_name(ref: str) -> str:
    """team/name of ``--contract`` (a version after '@' is ignored: events of every version)."""
    return ref.partition("@")[0].strip()


@event_app.command("show")
@command
def show(
    event_id: Annotated[str, typer.Argument(help="The event id (evt-...), as publish printed it.")],
    as_json: JsonOption = False,
) -> None:
    """One event: its contract, when it was published and delivered, the run that published it
    (through its contract's ``emits:``), and the runs it started (once its triggers ran)."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        event = client.coordinator.GetEvent(pb.GetEventRequest(event_id=event_id)).event
    if as_json:
        print_json(event_json(event))
        return
    typer.echo(f"event      {event.event_id}")
    typer.echo(f"contract   {event.contract}@{event.contract_version}")
    typer.echo(f"published  {_when(event.published_unix_ms)}")
    typer.echo(f"state      {_state(event)}")
    if event.source_run:
        typer.echo(f"published by run {event.source_run}")
    if event.handled_unix_ms:
        typer.echo("started    " + (", ".join(event.triggered_runs) or "no runs (no matching trigger)"))
    if event.payload_json:
        typer.echo(f"payload    {event.payload_json}")


@event_app.command("tail")
@command
def tail(
    team: Annotated[str, typer.Option(help="Only events of this team's event contracts.")] = "",
    contract: Annotated[str, typer.Option(help="Only events of this contract (team/name).")] = "",
    every: Annotated[float, typer.Option(help="Look for new events this often (seconds).", min=0.05)] = 0.5,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Follow new events live, oldest first, until Ctrl-C: one line per event as it is
    published, with its payload (its triggered runs are in ``accord event show ID``). A payload
    larger than 16 KiB is shown as its size and ``accord event show ID``; with ``--json`` each
    line carries the whole payload (read one event at a time)."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    request = pb.ListEventsRequest(
        contract=_contract_name(contract), team=team, page=common_pb.PageRequest(page_size=200)
    )
    seen: set[str] = set()
    with Client() as client:
        # What is there already is not shown: only what is published from now on.
        seen.update(e.event_id for e in client.coordinator.ListEvents(request).events)
        typer.echo("following new events (Ctrl-C to stop)", err=True)
        while True:
            fresh, skipped = _unseen(client, request, seen)
            if skipped:
                typer.echo(
                    f"more than {_TAIL_PAGES * request.page.page_size} events were published since the "
                    "last look: the oldest of them are not shown (accord event list shows them)",
                    err=True,
                )
            for e in sorted(fresh, key=lambda e: (e.published_unix_ms, e.event_id)):
                seen.add(e.event_id)
                if as_json:
                    if e.payload_omitted:  # the list left it out: one event's answer has it
                        e = client.coordinator.GetEvent(pb.GetEventRequest(event_id=e.event_id)).event
                    typer.echo(json.dumps(event_json(e)))
                else:
                    payload = f"  {e.payload_json}" if e.payload_json else ""
                    if e.payload_omitted:
                        payload = f"  (payload of {e.payload_bytes} bytes: accord event show {e.event_id})"
                    typer.echo(
                        f"{_when(e.published_unix_ms)}  {e.event_id}  {e.contract}@{e.contract_version}{payload}"
                    )
                sys.stdout.flush()
            if len(seen) > 10_000:  # only the newest page can hold new ones
                seen = {e.event_id for e in client.coordinator.ListEvents(request).events} | {
                    e.event_id for e in fresh
                }
            time.sleep(every)


# How many pages of new events one look of ``event tail`` reads at most (200 events a page).
_TAIL_PAGES = 50


def _unseen(client: Any, request: Any, seen: set[str]) -> tuple[list[Any], bool]:
    """The events published since the last look (none of them in ``seen``), and whether there
    were more than ``_TAIL_PAGES`` pages of them. Pages go newest first: it reads on until a page
    reaches an event already seen, so a burst of more than one page between two looks is shown
    whole. (An event published while it reads pushes the older ones a place further: read twice,
    kept once.)"""
    fresh: dict[str, Any] = {}
    page = type(request)()
    page.CopyFrom(request)
    for _ in range(_TAIL_PAGES):
        reply = client.coordinator.ListEvents(page)
        for e in reply.events:
            if e.event_id not in seen:
                fresh.setdefault(e.event_id, e)
        if not reply.next_page_token or any(e.event_id in seen for e in reply.events):
            return list(fresh.values()), False
        page.page.page_token = reply.next_page_token
    return list(fresh.values()), True


def _when(unix_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_ms / 1000)) if unix_ms else "-"
