"""The Typer apps of the ``accord`` command. Commands live in one module per area and attach
themselves to these apps, so areas can grow independently."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="accord",
    help="Accord: cross-team workflows composed from versioned contracts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
contract_app = typer.Typer(help="Contracts: lint, diff, register, list, show, deprecate.", no_args_is_help=True)
workflow_app = typer.Typer(help="Workflows: check, validate, register, list, show.", no_args_is_help=True)
team_app = typer.Typer(help="Teams and their tokens (admin).", no_args_is_help=True)
runs_app = typer.Typer(help="Inspect and control runs: list, show, cancel, trace.", no_args_is_help=True)
coordinator_app = typer.Typer(help="Run the coordinator.", no_args_is_help=True)
agent_app = typer.Typer(help="Run a team agent beside your engine.", no_args_is_help=True)
event_app = typer.Typer(help="Events: publish (starts triggered workflows), list.", no_args_is_help=True)

app.add_typer(contract_app, name="contract")
app.add_typer(workflow_app, name="workflow")
app.add_typer(team_app, name="team")
app.add_typer(runs_app, name="runs")
app.add_typer(coordinator_app, name="coordinator")
app.add_typer(agent_app, name="agent")
app.add_typer(event_app, name="event")
