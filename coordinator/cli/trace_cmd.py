"""``accord runs trace RUN_ID``: a run's trace as a waterfall in the terminal, or as OTLP JSON."""

from __future__ import annotations

import sys

import typer

from coordinator.cli._apps import runs_app
from coordinator.cli._output import command, print_json


@runs_app.command("trace")
@command
def trace(
    run_id: str = typer.Argument(..., help="The run whose trace to show."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the spans as OTLP JSON (resourceSpans/scopeSpans/spans, hex ids)."
    ),
    width: int = typer.Option(32, "--bar-width", min=8, max=200, help="Width of the timeline bars."),
) -> None:
    """Show every span of a run, indented under its parent, with team, duration, status and the
    error of a failed span. Another team's spans appear as contract-level boxes."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.api.convert import span_from_pb
    from coordinator.client import Client
    from coordinator.telemetry.otlp import otlp_json
    from coordinator.telemetry.waterfall import WaterfallStyle, render_waterfall

    with Client() as client:
        response = client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id))
    views = [span_from_pb(span) for span in response.spans]
    if as_json:
        print_json(otlp_json(views))
        return
    sys.stdout.write(
        render_waterfall(views, trace_id=response.trace_id, style=WaterfallStyle(bar_width=width))
    )
