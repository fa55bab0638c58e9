"""``accord autonomy``: how independently each team changes what it owns, computed by the
coordinator from the audit log and the run history (docs/governance.md, "The autonomy report").

The wire code and the gRPC client are imported inside the commands (start-up time).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from coordinator.cli._apps import app
from coordinator.cli._output import command, fail, print_json

autonomy_app = typer.Typer(
    help="Team autonomy, measured from the audit log and the run history: report, changes.",
    no_args_is_help=True,
)
app.add_typer(autonomy_app, name="autonomy")

TeamOption = Annotated[
    str,
    typer.Option(
        metavar="TEAM", help="Only this team (a team's token sees only its own; the admin sees every team)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _t(value: dict[str, Any] | None) -> str:
    return value["text"] if value else "-"


@autonomy_app.command("report")
@command
def report(
    team: TeamOption = "",
    since: Annotated[
        str, typer.Option(metavar="DURATION", help="The period: the last DURATION (e.g. 30d, 12w).")
    ] = "30d",
    by: Annotated[
        str,
        typer.Option(
            metavar="day|week|month",
            help="Break each team's figures down over time by UTC day, ISO week or month (at most 400 periods).",
        ),
    ] = "week",
    as_json: JsonOption = False,
) -> None:
    """Per team: changes made, time to deploy, changes that needed another team, cross-team
    dependencies, platform interventions, overrides, refused breaking changes, and the four DORA
    keys (per team and per contract); then the same per day, week or month (--by). Ends with how
    each figure is computed."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts.durations import parse_duration
    from coordinator.client import Client

    seconds = parse_duration(since, what="--since")
    if seconds <= 0:
        raise fail(f"--since must be longer than 0, not {since!r} (e.g. 30d)")
    if by not in ("day", "week", "month"):
        raise fail(f"--by must be day, week or month, not {by!r}")
    since_ms = max(int((time.time() - seconds) * 1000), 1)
    with Client() as client:
        response = client.coordinator.GetAutonomyReport(
            pb.GetAutonomyReportRequest(team=team, since_unix_ms=since_ms, by=by)
        )
    data = json.loads(response.report_json)
    truncated = data.get("truncated")
    if truncated:  # on stderr too, so that --json readers piping stdout see it
        typer.echo(
            f"warning: the report covers {_when(truncated['covered_from_ms'])} to {_when(data['until_ms'])} only, "
            f"not from {_when(truncated['requested_since_ms'])}: {truncated['why']}",
            err=True,
        )
    if as_json:
        print_json(data)
        return
    typer.echo(f"autonomy from {_when(data['since_ms'])} to {_when(data['until_ms'])}")
    if truncated:
        typer.echo(
            f"TRUNCATED: covers only from {_when(truncated['covered_from_ms'])} (asked from "
            f"{_when(truncated['requested_since_ms'])}); {truncated['why']}"
        )
    if not data["teams"]:
        typer.echo("no changes in this period", err=True)
    for t in data["teams"]:
        changes, dora, deps = t["changes"], t["dora"], t["cross_team_dependencies"]
        typer.echo("")
        typer.echo(f"team {t['team']}")
        typer.echo(
            f"  changes: {changes['contract_versions']} contract version(s), {changes['workflow_versions']} "
            f"workflow version(s), {changes['agent_binding_changes']} agent binding change(s), "
            f"{changes['overrides']} override(s)"
        )
        typer.echo(f"  time to deploy (median): {_t(t['time_to_deploy'])}")
        for needed in t["needed_other_teams"]:
            typer.echo(
                f"  needed other teams: {needed['change']} waited {_t(needed['waited'])} for {', '.join(needed['teams'])}"
            )
        for key, label in (
            ("calls", "calls"),
            ("called_by", "called by"),
            ("events_from", "events from"),
            ("events_to", "events to"),
        ):
            if deps[key]:
                typer.echo(f"  {label}: {', '.join(deps[key])}")
        typer.echo(f"  platform interventions: {t['platform_interventions']}")
        for o in t["overrides"]:
            typer.echo(f"  override {o['rule']} on {o['object']} by {o['actor']}: {o['reason']}")
        for r in t["refused_breaking_changes"]:
            consumers = ", ".join(f"{c['workflow']} (team {c['team']})" for c in r["consumers"])
            typer.echo(
                f"  refused breaking change {r['contract']} at {_when(r['at_ms'])}: breaks {consumers}"
            )
        rate = "-" if dora["change_failure_rate"] is None else f"{dora['change_failure_rate'] * 100:.0f}%"
        typer.echo(
            f"  DORA: {dora['change_frequency_per_day']} change(s)/day, lead time {_t(dora['lead_time'])}, "
            f"change failure rate {rate} ({dora['failed_changes']} of {dora['changes_with_runs']}), "
            f"time to restore {_t(dora['time_to_restore'])}"
        )
        for name, c in t["contracts"].items():
            rate = "-" if c["change_failure_rate"] is None else f"{c['change_failure_rate'] * 100:.0f}%"
            typer.echo(
                f"    {name}: {c['changes']} change(s), lead time {_t(c['lead_time'])}, failure rate {rate}, "
                f"time to restore {_t(c['time_to_restore'])}"
            )
        typer.echo(f"  by {data['by']}:")
        typer.echo(
            f"    {'period':<10} {'contract':>8} {'workflow':>8} {'binding':>7} {'override':>8} {'interv.':>7} "
            f"{'refused':>7} {'lead time':>9} {'failure':>7} {'restore':>7}"
        )
        for p in t["over_time"]:
            c, d = p["changes"], p["dora"]
            rate = "-" if d["change_failure_rate"] is None else f"{d['change_failure_rate'] * 100:.0f}%"
            typer.echo(
                f"    {p['period']:<10} {c['contract_versions']:>8} {c['workflow_versions']:>8} "
                f"{c['agent_binding_changes']:>7} {c['overrides']:>8} {p['platform_interventions']:>7} "
                f"{p['refused_breaking_changes']:>7} {_t(d['lead_time']):>9} {rate:>7} {_t(d['time_to_restore']):>7}"
            )
    typer.echo("")
    typer.echo("how each figure is computed:")
    for figure, method in data["how"].items():
        typer.echo(f"  {figure}: {method}")


@autonomy_app.command("changes")
@command
def changes(
    last: Annotated[int, typer.Option(min=1, max=100, help="How many of the newest changes (1 to 100).")] = 5,
    team: TeamOption = "",
    as_json: JsonOption = False,
) -> None:
    """The audit of the last changes (contract versions, workflow versions, agent binding changes),
    newest first: the teams involved, what others had to change or approve, the time from
    registration to production use; more than two teams or more than a week is flagged as a
    bottleneck."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListRecentChanges(pb.ListRecentChangesRequest(team=team, count=last))
    listed = json.loads(response.changes_json)
    if as_json:
        print_json(listed)
        return
    if not listed:
        typer.echo("no changes recorded", err=True)
        return
    for c in listed:
        flag = "  BOTTLENECK: " + "; ".join(c["bottleneck_reasons"]) if c["bottleneck"] else ""
        bindings = f" ({', '.join(c['bindings'])})" if c.get("bindings") else ""
        typer.echo(f"{_when(c['at_ms'])}  {c['kind']} {c['change']}{bindings}  by {c['actor']}{flag}")
        typer.echo(f"  teams involved: {', '.join(c['teams_involved'])}")
        for line in c["by_others"]:
            typer.echo(f"  {line}")
        waited = (
            f" (after waiting {c['waited_for_others']['text']} for other teams)"
            if c["waited_for_others"]
            else ""
        )
        if c["kind"] == "retire":
            typer.echo(f"  retired{waited}")
            continue
        production = _t(c["time_to_production"]) if c["in_production"] else "not used by a successful run yet"
        typer.echo(f"  registration to production use: {production}{waited}")
