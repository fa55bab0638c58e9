"""``accord policy``: policies as data, and the overrides recorded (docs/governance.md).

The wire code and the gRPC client are imported inside the commands (start-up time).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coordinator.cli._apps import app
from coordinator.cli._output import command, fail, print_json

if TYPE_CHECKING:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

policy_app = typer.Typer(
    help="Policies as data: apply (the platform's, or a team's own advisory rules with --team), "
    "list, show, overrides.",
    no_args_is_help=True,
)
app.add_typer(policy_app, name="policy")

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

OverrideOption = Annotated[
    list[str] | None,
    typer.Option(
        "--override",
        metavar='RULE="reason"',
        help="Register although policy rule RULE (level require, overridable) is not satisfied, e.g. "
        '--override contract-owner="owner named next sprint". Recorded (who, when, why) in the audit '
        "log; repeat for several rules. A file may say overrides: {RULE: reason} instead.",
    ),
]


def parse_overrides(items: list[str] | None) -> dict[str, str]:
    """``--override RULE="reason"`` options as rule -> reason (exit 2 on a malformed one)."""
    overrides: dict[str, str] = {}
    for item in items or []:
        rule, sep, reason = item.partition("=")
        if not sep or not rule.strip() or not reason.strip():
            raise fail(f'--override {item!r}: expected RULE="reason", e.g. --override contract-owner="why"')
        overrides[rule.strip()] = reason.strip()
    return overrides


def finding_json(f: pb.PolicyFinding) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "level": f.level,
        "overridable": f.overridable,
        "message": f.message,
        "detail": f.detail,
        "object": f.object,
        "file": f.file,
        "line": f.line,
        "field": f.field,
        "scope": f.scope or "platform",
        "override_reason": f.override_reason,
    }


def finding_line(f: pb.PolicyFinding) -> str:
    where = f"{f.file}:{f.line}" if f.line else f.file
    if f.field:
        where += f": {f.field}"
    verdict = {"advise": "advice", "require": "REQUIRED"}.get(f.level, f.level)
    text = f"{where}: {verdict} {f.rule}: {f.message} ({f.detail})"
    if f.override_reason:
        text += f"; overridden: {f.override_reason}"
    return text


def blocking(findings: Any) -> list[Any]:
    """The require findings not overridden: what refuses a registration."""
    return [f for f in findings if f.level == "require" and not f.override_reason]


def _rule_json(r: pb.PolicyRule) -> dict[str, Any]:
    return {
        "id": r.id,
        "applies_to": r.applies_to,
        "level": r.level,
        "overridable": r.overridable,
        "message": r.message,
        "condition": json.loads(r.condition_json or "true"),
        "scope": r.scope or "platform",
        "source": f"{r.source_name}:{r.line}" if r.line else r.source_name,
        "applied_unix_ms": r.applied_unix_ms,
        "applied_by": r.applied_by,
    }


@policy_app.command("apply")
@command
def apply(
    file: Annotated[Path, typer.Argument(help="Policy file (YAML or JSON).")],
    team: Annotated[
        str,
        typer.Option(
            metavar="TEAM",
            help="Apply TEAM's own advisory rules for its namespace (a team's token: its own team). "
            "Without it: the platform's policy (admin only).",
        ),
    ] = "",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Check the file and list which registered contracts, workflows and agents would now "
            "get a warning or a block; apply nothing.",
        ),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Apply a policy file: it replaces the platform's policy (or, with --team, that team's own).
    With --dry-run exit 1 when a registered object would be blocked."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    try:
        text = file.read_text()
    except OSError as exc:
        raise fail(f"{file}: cannot read the file: {exc.strerror or exc}") from None
    with Client() as client:
        response = client.coordinator.ApplyPolicy(
            pb.ApplyPolicyRequest(source_text=text, source_name=str(file), team=team, dry_run=dry_run)
        )
    blocked = blocking(response.findings)
    if as_json:
        print_json(
            {
                "applied": response.applied,
                "rules": [_rule_json(r) for r in response.rules],
                "findings": [finding_json(f) for f in response.findings],
            }
        )
    else:
        scope = f"team {team}" if team else "the platform"
        if dry_run:
            for f in response.findings:
                typer.echo(finding_line(f))
            objects = {f.object for f in response.findings}
            typer.echo(
                f"{file}: {len(response.rules)} rule(s) for {scope}; "
                + (
                    f"{len(objects)} registered object(s) would get findings, {len({f.object for f in blocked})} "
                    "of them a block"
                    if objects
                    else "every registered object satisfies them"
                )
                + " (nothing applied)"
            )
        else:
            typer.echo(f"applied {file}: {len(response.rules)} rule(s) for {scope}")
    if dry_run and blocked:
        raise typer.Exit(1)


def _rules(team: str) -> list[pb.PolicyRule]:
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    rules: list[pb.PolicyRule] = []
    token = ""
    with Client() as client:
        while True:
            response = client.coordinator.ListPolicies(
                pb.ListPoliciesRequest(
                    team=team, page=common_pb.PageRequest(page_size=1000, page_token=token)
                )
            )
            rules.extend(response.rules)
            token = response.next_page_token
            if not token:
                return rules


@policy_app.command("list")
@command
def list_rules(
    team: Annotated[
        str, typer.Option(metavar="TEAM", help="The platform's rules and TEAM's own (default: every rule).")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """List the rules applied: the platform's, and each team's own advisory rules."""
    rules = _rules(team)
    if as_json:
        print_json([_rule_json(r) for r in rules])
        return
    if not rules:
        typer.echo("no policy rules applied", err=True)
        return
    for r in rules:
        flags = f"{r.level}{', overridable' if r.overridable else ''}"
        typer.echo(f"{r.id}  {r.applies_to}  {flags}  {r.scope or 'platform'}  {r.message}")


@policy_app.command("show")
@command
def show_rule(
    rule: Annotated[str, typer.Argument(help="A rule's id.")],
    as_json: JsonOption = False,
) -> None:
    """Show one rule: its level, what it applies to, its message and its condition."""
    found = [r for r in _rules("") if r.id == rule]
    if not found:
        raise fail(f"no policy rule '{rule}'; 'accord policy list' lists them")
    if as_json:
        print_json([_rule_json(r) for r in found] if len(found) > 1 else _rule_json(found[0]))
        return
    for r in found:
        data = _rule_json(r)
        typer.echo(f"{r.id}  ({data['scope']}, from {data['source']}, applied by {r.applied_by or '-'})")
        typer.echo(f"applies to: {r.applies_to}")
        typer.echo(f"level: {r.level}{' (overridable with a reason)' if r.overridable else ''}")
        typer.echo(f"message: {r.message}")
        typer.echo("condition:")
        typer.echo(json.dumps(data["condition"], indent=2))


@policy_app.command("overrides")
@command
def overrides(
    team: Annotated[
        str,
        typer.Option(
            metavar="TEAM",
            help="Only the overrides TEAM made or that concern its objects (a team sees its own).",
        ),
    ] = "",
    since: Annotated[
        str, typer.Option(metavar="DURATION", help="Only those of the last DURATION, e.g. 30d.")
    ] = "",
    as_json: JsonOption = False,
) -> None:
    """The overrides recorded, oldest first: policy rules overridden at registration and sunsets
    overridden by runs, each with who, when and why (the platform's review list)."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts.durations import parse_duration
    from coordinator.cli.audit_cmd import entry_json
    from coordinator.client import Client

    since_ms = 0
    if since:
        seconds = parse_duration(since, what="--since")
        if seconds <= 0:
            raise fail(f"--since must be longer than 0, not {since!r} (e.g. 30d)")
        since_ms = max(int((time.time() - seconds) * 1000), 1)
    entries: list[pb.AuditEntry] = []
    token = ""
    with Client() as client:
        while True:
            response = client.coordinator.ListOverrides(
                pb.ListOverridesRequest(
                    team=team,
                    since_unix_ms=since_ms,
                    page=common_pb.PageRequest(page_size=1000, page_token=token),
                )
            )
            entries.extend(response.entries)
            token = response.next_page_token
            if not token:
                break
    listed = [entry_json(e) for e in entries]
    if as_json:
        print_json(listed)
        return
    if not listed:
        typer.echo("no overrides recorded" + (f" in the last {since}" if since else ""), err=True)
        return
    for e in listed:
        d = e["details"]
        typer.echo(
            f"{e['at']}  {e['actor']}  {e['owner_team'] or '-'}  {d.get('rule', '?')}  {e['object']}  "
            f"{json.dumps(d.get('reason', ''))}"
        )
