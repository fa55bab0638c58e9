"""``accord team create|list|show|limits|rotate-token`` and ``accord team token create|list|revoke``.

A team holds several named tokens; ``create`` makes the first (``default``), ``rotate-token``
replaces ``default`` and lets the old one work on for a grace period (docs/production.md,
"Tokens"). Commands that print a token print only it, on stdout (``TOKEN=$(accord ...)``); what
else they say goes to stderr.

The wire code and the gRPC client are imported inside the commands (start-up time).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from coordinator.cli._apps import team_app, token_app
from coordinator.cli._output import command, fail, print_json

# What rotate-token leaves the replaced token when --grace is not given: long enough to update a
# team's secret and let its agents pick it up (they re-read a secret file within a second; a
# rolling restart takes minutes), short enough to bound the use of a leaked token. A leak wants
# --grace 0 (the old behaviour: refused at once).
DEFAULT_GRACE = "1h"

_TEAM_OPTION = "The team (default: the calling token's own team; the admin must name one)."


def _seconds(value: str | None, option: str, *, zero: bool) -> float:
    """Seconds in a duration option (0 when not given); ``zero``: whether 0 may be given."""
    from contracts.durations import parse_duration

    if value is None:
        return 0.0
    seconds = parse_duration(value, what=option)
    if seconds == 0 and not zero:
        raise fail(
            f"{option} 0: a token cannot expire as it is made; leave {option} out for one that never expires"
        )
    return seconds


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _when(ms: int, never: str = "never") -> str:
    if not ms:
        return never
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _status(token: Any, now_ms: int) -> str:
    if token.revoked_unix_ms:
        return "revoked"
    if token.expires_unix_ms and now_ms >= token.expires_unix_ms:
        return "expired"
    return "live"


@team_app.command("create")
@command
def create(name: Annotated[str, typer.Argument(help="Team name, e.g. payments.")]) -> None:
    """Create a team (admin only); prints ONLY its token (named default) on stdout.

    TOKEN=$(accord team create payments)"""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.CreateTeam(pb.CreateTeamRequest(name=name))
    typer.echo(response.token)


@team_app.command("rotate-token")
@command
def rotate_token(
    name: Annotated[str, typer.Argument(metavar="TEAM", help="The team.")],
    grace: Annotated[
        str,
        typer.Option(
            help="How long the token being replaced keeps working (renamed default-old), e.g. 24h;"
            " 0: it is refused at once (after a leak).",
        ),
    ] = DEFAULT_GRACE,
    expires: Annotated[
        str | None, typer.Option(help="The new token expires this long after now, e.g. 90d (default: never).")
    ] = None,
) -> None:
    """Give a team a new token named default; prints ONLY that token on stdout.

    By the team itself or the admin. The token it replaces works on for --grace (default 1h),
    renamed default-old; --grace 0 refuses it at once."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    grace_s = _seconds(grace, "--grace", zero=True)
    expires_s = _seconds(expires, "--expires", zero=False)
    with Client() as client:
        response = client.coordinator.RotateTeamToken(
            pb.RotateTeamTokenRequest(name=name, grace_ms=_ms(grace_s), expires_in_ms=_ms(expires_s))
        )
    typer.echo(response.token)
    for old in response.replaced:
        if old.revoked_unix_ms:
            typer.echo(f"the previous token of team {name} is refused from now on", err=True)
        else:
            typer.echo(
                f"the previous token of team {name}, now named {old.name}, works until"
                f" {_when(old.expires_unix_ms)}; to stop it sooner: accord team token revoke {old.name}"
                f" --team {name}",
                err=True,
            )


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


@token_app.command("create")
@command
def create_token(
    name: Annotated[str, typer.Argument(help="The token's name in its team, e.g. ci or agent-eu.")],
    team: Annotated[str, typer.Option(help=_TEAM_OPTION)] = "",
    expires: Annotated[
        str | None, typer.Option(help="It expires this long after now, e.g. 90d (default: never).")
    ] = None,
) -> None:
    """Make a new token for a team; prints ONLY the token on stdout (CI=$(accord team token create ci))."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    expires_s = _seconds(expires, "--expires", zero=False)
    with Client() as client:
        response = client.coordinator.CreateTeamToken(
            pb.CreateTeamTokenRequest(team=team, name=name, expires_in_ms=_ms(expires_s))
        )
    typer.echo(response.token)


# The most tokens one ListTeamTokens call returns (the server's page limit).
_PAGE = 1000


@token_app.command("list")
@command
def list_tokens(
    team: Annotated[
        str, typer.Option(help="The team (default: the calling token's own; the admin: every team).")
    ] = "",
    show_all: Annotated[bool, typer.Option("--all", help="Also the revoked and expired tokens.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List a team's tokens: name, created, expires, last used (never the token itself).

    Last use is written at most once a minute per token: it may be up to a minute behind."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    tokens: list[Any] = []
    page_token = ""
    with Client() as client:
        while True:
            response = client.coordinator.ListTeamTokens(
                pb.ListTeamTokensRequest(
                    team=team,
                    include_inactive=show_all,
                    page=common_pb.PageRequest(page_size=_PAGE, page_token=page_token),
                )
            )
            tokens.extend(response.tokens)
            page_token = response.next_page_token
            if not page_token:
                break
    now_ms = int(time.time() * 1000)
    if as_json:
        print_json(
            [
                {
                    "team": t.team,
                    "name": t.name,
                    "status": _status(t, now_ms),
                    "created_unix_ms": t.created_unix_ms,
                    "expires_unix_ms": t.expires_unix_ms or None,
                    "last_used_unix_ms": t.last_used_unix_ms or None,
                    "revoked_unix_ms": t.revoked_unix_ms or None,
                }
                for t in tokens
            ]
        )
        return
    several_teams = len({t.team for t in tokens}) > 1  # the admin's list of every team's
    header = ["TEAM"] if several_teams else []
    header += ["NAME", "CREATED", "EXPIRES", "LAST USED"] + (["STATUS"] if show_all else [])
    rows = []
    for t in tokens:
        row = [t.team] if several_teams else []
        row += [t.name, _when(t.created_unix_ms), _when(t.expires_unix_ms), _when(t.last_used_unix_ms)]
        if show_all:
            status = _status(t, now_ms)
            row.append(f"revoked {_when(t.revoked_unix_ms)}" if status == "revoked" else status)
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


@token_app.command("revoke")
@command
def revoke_token(
    name: Annotated[str, typer.Argument(help="The token's name (accord team token list shows them).")],
    team: Annotated[str, typer.Option(help=_TEAM_OPTION)] = "",
) -> None:
    """Revoke a team's token: refused from now on, by every coordinator within a second."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.RevokeTeamToken(pb.RevokeTeamTokenRequest(team=team, name=name))
    teams = sorted({t.team for t in response.revoked})
    typer.echo(f"revoked token {name} of team {', '.join(teams)}", err=True)


def _limits_json(limits: Any) -> dict[str, Any]:
    return {"max_concurrency": limits.max_concurrency, "start_rate_per_s": limits.start_rate_per_s}


def _limits_text(limits: Any) -> str:
    from coordinator.engine.limits import TeamLimits

    return TeamLimits(limits.max_concurrency, limits.start_rate_per_s).describe()


@team_app.command("limits")
@command
def limits(
    team: Annotated[str, typer.Argument(help="The team.")],
    start_rate: Annotated[
        str | None,
        typer.Option(
            "--start-rate",
            metavar="RATE",
            help="Runs the team may start, e.g. 50/s, 600/m, 10/h; off removes it. Over it, "
            "StartRun is refused RESOURCE_EXHAUSTED with a retry-after-ms hint (clients wait and retry).",
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option(
            "--max-concurrency",
            help="At most this many of the steps of runs the team started run at once (0 removes "
            "it); the others are held, and say so in runs show.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Set a team's limits (admin only); without options, show them."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client
    from coordinator.engine.limits import parse_rate

    if start_rate is None and max_concurrency is None:
        with Client() as client:
            shown = client.coordinator.GetTeamLimits(pb.GetTeamLimitsRequest(team=team)).limits
    else:
        request = pb.SetTeamLimitsRequest(team=team)
        if start_rate is not None:
            try:
                request.start_rate_per_s = parse_rate(start_rate)
            except Exception as exc:
                raise fail(str(exc)) from None
        if max_concurrency is not None:
            request.max_concurrency = max_concurrency
        with Client() as client:
            shown = client.coordinator.SetTeamLimits(request).limits
    if as_json:
        print_json(_limits_json(shown))
        return
    typer.echo(f"team {team} limits: {_limits_text(shown)}")


@team_app.command("show")
@command
def show(
    team: Annotated[str, typer.Argument(help="The team (yours, or any for the admin).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """A team: when it was created, and its limits."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        found = [t for t in client.coordinator.ListTeams(pb.ListTeamsRequest()).teams if t.name == team]
        if not found:
            raise fail(f"team {team} does not exist (accord team list)")
        shown = client.coordinator.GetTeamLimits(pb.GetTeamLimitsRequest(team=team)).limits
    created = datetime.fromtimestamp(found[0].created_unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if as_json:
        print_json({"name": team, "created_unix_ms": found[0].created_unix_ms, "limits": _limits_json(shown)})
        return
    typer.echo(f"team {team}")
    typer.echo(f"  created  {created}")
    typer.echo(f"  limits   {_limits_text(shown)}")
