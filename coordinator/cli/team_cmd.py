"""``accord team create|list|rotate-token`` (admin).

The wire code and the gRPC client are imported inside the commands (start-up time).
"""

from __future__ import annotations

from typing import Annotated

import typer

from coordinator.cli._apps import team_app
from coordinator.cli._output import command, print_json


@team_app.command("create")
@command
def create(name: Annotated[str, typer.Argument(help="Team name, e.g. payments.")]) -> None:
    """Create a team; prints ONLY its token on stdout (TOKEN=$(accord team create payments))."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.CreateTeam(pb.CreateTeamRequest(name=name))
    typer.echo(response.token)


@team_app.command("rotate-token")
@command
def rotate_token(name: str) -> None:
    """Give a team a new token (the old one stops working); prints only the token."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.RotateTeamToken(pb.RotateTeamTokenRequest(name=name))
    typer.echo(response.token)


@team_app.command("list")
@command
def list_teams(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List teams."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListTeams(pb.ListTeamsRequest())
    if as_json:
        print_json([{"name": t.name, "created_unix_ms": t.created_unix_ms} for t in response.teams])
        return
    for team in response.teams:
        typer.echo(team.name)
