"""``accord audit``: the audit log, every change made through the coordinator (what each entry
means: docs/production.md, "What each audit entry means").

The wire code and the gRPC client are imported inside the command (start-up time).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coordinator.cli._apps import app
from coordinator.cli._output import command, fail, print_json

if TYPE_CHECKING:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

# The most entries one ListAuditLog call returns (the server's page limit), and the most one
# `accord audit` lists.
_PAGE_MAX = 1000
_LIMIT_MAX = 100_000
_DETAILS_CHARS = 160


def entry_json(entry: pb.AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at_unix_ms": entry.at_unix_ms,
        "at": _iso(entry.at_unix_ms),
        "actor": entry.actor,
        "action": entry.action,
        "object": entry.object,
        "owner_team": entry.owner_team,
        "platform_intervention": entry.platform_intervention,
        "details": json.loads(entry.details_json) if entry.details_json else {},
    }


def _iso(unix_ms: int) -> str:
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _details_text(entry: dict[str, Any]) -> str:
    parts = ["platform intervention"] if entry["platform_intervention"] else []
    for key, value in entry["details"].items():
        if value in ("", None, [], {}):
            continue  # e.g. a deprecation without a replacement
        shown = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{key}={shown}")
    text = "; ".join(parts)
    return text if len(text) <= _DETAILS_CHARS else text[: _DETAILS_CHARS - 3] + "..."


def _print_table(entries: list[dict[str, Any]]) -> None:
    header = ("TIME", "ACTOR", "TEAM", "ACTION", "OBJECT", "DETAILS")
    rows = [
        (e["at"], e["actor"], e["owner_team"] or "-", e["action"], e["object"], _details_text(e))
        for e in entries
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[-1]]).rstrip())


@app.command("audit")
@command
def audit(
    team: Annotated[
        str,
        typer.Option(
            metavar="TEAM",
            help="Only the entries this team owns or made. A team token sees only its own team's "
            "entries anyway; the admin sees every team's.",
        ),
    ] = "",
    since: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="Only the entries of the last DURATION: e.g. 7d, 12h, 30m, 1w."
        ),
    ] = "",
    limit: Annotated[
        int,
        typer.Option(min=1, max=_LIMIT_MAX, help="At most this many, the newest (1 to 100000)."),
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output: a JSON list.")] = False,
) -> None:
    """The audit log: every change made through the coordinator (registrations and refused
    registrations, deprecations, teams and tokens, agents, events, runs started and cancelled),
    oldest first; the admin's acts on a team's objects are marked as platform interventions.
    A team sees the entries it owns or made; the admin sees all."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts.durations import parse_duration
    from coordinator.cli.run_cmd import check_team
    from coordinator.client import Client

    since_ms = 0
    if since:
        seconds = parse_duration(since, what="--since")
        if seconds <= 0:
            raise fail(f"--since must be longer than 0, not {since!r} (e.g. 7d)")
        cutoff = time.time() - seconds  # before the epoch (e.g. --since 99999w): everything
        since_ms = int(cutoff * 1000) if cutoff > 1 else 1
    entries: list[pb.AuditEntry] = []
    wanted = limit + 1  # one more than shown: whether there are more to say so
    with Client() as client:
        while len(entries) < wanted:
            response = client.coordinator.ListAuditLog(
                pb.ListAuditLogRequest(
                    team=team,
                    since_unix_ms=since_ms,
                    newest_first=True,
                    # Keyset: entries written meanwhile do not shift the next page.
                    before_id=entries[-1].id if entries else 0,
                    page=common_pb.PageRequest(page_size=min(wanted - len(entries), _PAGE_MAX)),
                )
            )
            entries.extend(response.entries)
            if not response.next_page_token:
                break
        if team and not entries:
            check_team(client, team)
    more = len(entries) > limit
    listed = [entry_json(e) for e in reversed(entries[:limit])]
    if as_json:
        print_json(listed)
    elif listed:
        _print_table(listed)
    else:
        typer.echo("no audit entries" + (f" in the last {since}" if since else ""), err=True)
    if more:
        typer.echo(f"(the newest {limit} entries; --limit N or --since DURATION for others)", err=True)
