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
        False,
        "--json",
        help="Print every span as OTLP JSON (resourceSpans/scopeSpans/spans, hex ids); each span "
        "carries the hop it belongs to (accord.hop, accord.hop_span_id).",
    ),
    all_spans: bool = typer.Option(
        False,
        "--all-spans",
        help="Show every span (attempts, agent and engine spans), not one row per hop.",
    ),
    width: int = typer.Option(32, "--bar-width", min=8, max=200, help="Width of the timeline bars."),
) -> None:
    """Show a run's trace: one row per hop (the run, each step, each for_each item [0], [1]) with
    team, duration, status, attempts and the error of a failed hop.

    With --all-spans, every span indented under its parent: attempts ("attempt 2/3") and, for your
    own team's hops, the agent's and the engine's spans. Another team's spans appear as
    contract-level boxes.
    """
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts.errors import AccordError
    from coordinator.api.convert import span_from_pb
    from coordinator.client import Client
    from coordinator.telemetry.hops import with_hops
    from coordinator.telemetry.otlp import otlp_json
    from coordinator.telemetry.waterfall import WaterfallStyle, render_waterfall

    step_errors: dict[str, str] = {}
    with Client() as client:
        response = client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id))
        if not as_json:
            try:  # the steps' errors as `runs show` gives them (another team's spans hide theirs)
                run = client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id)).run
                step_errors = {
                    step.id: f"{step.error.type}: {step.error.message}"
                    for step in run.steps
                    if step.HasField("error")
                }
            except AccordError:
                step_errors = {}
    views = [span_from_pb(span) for span in response.spans]
    if as_json:
        print_json(otlp_json(with_hops(views)))
        return
    sys.stdout.write(
        render_waterfall(
            views,
            trace_id=response.trace_id,
            style=WaterfallStyle(bar_width=width),
            all_spans=all_spans,
            step_errors=step_errors,
        )
    )
