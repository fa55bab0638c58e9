"""Lifecycle commands: ``accord contract consumers|retire``, ``accord notices``, ``accord workflow
disable|enable|delete|rollback`` (docs/contracts.md, "Deprecation" and "Retiring a version";
docs/workflows.md, "Versions and commands").

The wire code and the gRPC client are imported inside the commands (start-up time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from coordinator.cli._apps import app, contract_app, workflow_app
from coordinator.cli._output import command, fail, print_json
from coordinator.cli.policy_cmd import OverrideOption, finding_json, finding_line, parse_overrides

if TYPE_CHECKING:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
# The most rows one page of a list RPC returns (the server's page limit).
_PAGE = 1000


def _consumer_json(c: pb.ConsumerImpact) -> dict[str, Any]:
    return {
        "workflow": c.workflow,
        "workflow_version": c.workflow_version,
        "team": c.team,
        "step": c.step,
        "calls": c.field,
        "runs_last_30_days": c.runs_last_30_days,
    }


@contract_app.command("consumers")
@command
def consumers(
    ref: Annotated[str, typer.Argument(help="team/name, team/name@1 (a major) or team/name@1.2.0")],
    as_json: JsonOption = False,
) -> None:
    """Who calls a contract, and how often.

    Each workflow version in use (current, or used by an unfinished run), its team, the step,
    and its runs that pinned the contract in the last 30 days."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListContractConsumers(
            pb.ListContractConsumersRequest(ref=ref, page=common_pb.PageRequest(page_size=_PAGE))
        )
    rows = [_consumer_json(c) for c in response.consumers]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"no workflow in use calls {ref}")
        return
    for r in rows:
        typer.echo(
            f"{r['workflow']} v{r['workflow_version']}  team {r['team']}  step {r['step']}  calls {r['calls']}"
            f"  {r['runs_last_30_days']} run(s) in the last 30 days"
        )


@contract_app.command("retire")
@command
def retire(
    ref: Annotated[str, typer.Argument(help="team/name@1 (a major) or team/name@1.2.0")],
    as_json: JsonOption = False,
) -> None:
    """Take contract versions out of service.

    New runs and new workflows can no longer use them. Refused (exit 1), naming each user, while
    a current workflow version or an unfinished run needs one of them, unless a newer major's
    migration adapter serves those callers."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.RetireContract(pb.RetireContractRequest(ref=ref))
    if as_json:
        print_json(
            [
                {"contract": f"{c.name}@{c.version}", "retired_unix_ms": c.retired_unix_ms}
                for c in response.contracts
            ]
        )
        return
    for c in response.contracts:
        typer.echo(f"retired {c.name}@{c.version}")


def _notice_json(n: pb.Notice) -> dict[str, Any]:
    return {
        "kind": n.kind,
        "contract": n.contract,
        "sunset": n.sunset,
        "replacement": n.replacement,
        "past_sunset": n.past_sunset,
        "workflow": n.workflow,
        "workflow_version": n.workflow_version,
        "step": n.step,
        "team": n.team,
        "runs_last_30_days": n.runs_last_30_days,
        "message": n.message,
    }


@app.command("notices")
@command
def notices(
    team: Annotated[str, typer.Option(help="The admin: this team's notices (default: every team's).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Deprecations and retirements that concern your team.

    The deprecated or retired contract versions your workflows call (with the sunset and the
    replacement), and, for each deprecated version you own, which teams still call it and how
    often (last 30 days)."""
    from contracts._wire.accord.common.v1 import common_pb2 as common_pb
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListNotices(
            pb.ListNoticesRequest(team=team, page=common_pb.PageRequest(page_size=_PAGE))
        )
    if as_json:
        print_json([_notice_json(n) for n in response.notices])
        return
    if not response.notices:
        typer.echo("no notices")
        return
    for n in response.notices:
        typer.echo(f"{n.kind:<10}  {n.message}")


def _workflow_ref(text: str) -> tuple[str, int]:
    name, _, version = text.partition("@")
    if not version.isdigit() or int(version) < 1:
        raise fail(f"'{text}': name the version to delete, e.g. {name or 'team/name'}@2")
    return name, int(version)


@workflow_app.command("disable")
@command
def disable(name: Annotated[str, typer.Argument(help="team/name of the workflow.")]) -> None:
    """Stop a workflow from starting runs.

    Calls are refused (exit 2), its triggers and schedules do not fire. Runs already started go
    on."""
    _set_enabled(name, False)


@workflow_app.command("enable")
@command
def enable(name: Annotated[str, typer.Argument(help="team/name of the workflow.")]) -> None:
    """Let a disabled workflow start runs again."""
    _set_enabled(name, True)


def _set_enabled(name: str, enabled: bool) -> None:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.SetWorkflowEnabled(
            pb.SetWorkflowEnabledRequest(name=name, enabled=enabled)
        )
    state = "enabled" if enabled else "disabled"
    typer.echo(f"{name} {state}" if response.changed else f"{name} was {state} already")


@workflow_app.command("delete")
@command
def delete(ref: Annotated[str, typer.Argument(help="team/name@N: the version to delete.")]) -> None:
    """Delete a workflow version no run references.

    Not the current version. Exit 1 when runs reference it (some are named)."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    name, version = _workflow_ref(ref)
    with Client() as client:
        client.coordinator.DeleteWorkflowVersion(pb.DeleteWorkflowVersionRequest(name=name, version=version))
    typer.echo(f"deleted {name} v{version}")


@workflow_app.command("rollback")
@command
def rollback(
    name: Annotated[str, typer.Argument(help="team/name of the workflow.")],
    to: Annotated[
        int, typer.Option("--to", min=1, help="The version whose definition becomes current again.")
    ],
    override: OverrideOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make an earlier version's definition current again.

    As a new version, type-checked against the registry and checked against the policies as they
    are now (a required rule refuses it unless overridden with --override RULE="reason", which
    is recorded); audited."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    overrides = parse_overrides(override)
    with Client() as client:
        response = client.coordinator.RollbackWorkflow(
            pb.RollbackWorkflowRequest(name=name, to_version=to, overrides=overrides)
        )
    w = response.workflow
    if as_json:
        print_json(
            {
                "name": w.name,
                "version": w.version,
                "registered": response.registered,
                "policy_findings": [finding_json(f) for f in response.policy_findings],
                "warnings": list(response.warnings),
            }
        )
        return
    for warning in response.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for p in response.policy_findings:
        if p.level != "advise":  # advisory findings are among the warnings
            typer.echo(finding_line(p))
    if response.registered:
        typer.echo(f"rolled back {w.name} to the definition of v{to}, as v{w.version}")
    else:
        typer.echo(f"{w.name} v{w.version} is the definition of v{to} already")
