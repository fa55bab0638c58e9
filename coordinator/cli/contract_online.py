"""Contract and workflow commands that talk to the coordinator: register, list, show, deprecate.

The wire code and the gRPC client are imported inside the commands (start-up time).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coordinator.cli._apps import contract_app, workflow_app
from coordinator.cli._output import command, fail, print_json
from coordinator.cli.policy_cmd import OverrideOption, blocking, finding_json, finding_line, parse_overrides

if TYPE_CHECKING:
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise fail(f"{path}: cannot read the file: {exc.strerror or exc}") from None


def _unknown_keywords(c: pb.Contract) -> list[str]:
    """Where a registered version's schemas hold keywords JSON Schema does not define (typos
    registered before they were refused: they keep working, the validator ignores them)."""
    from contracts._keywords import unknown_keywords

    found: list[str] = []
    for side, text in (("input", c.input_schema_json), ("output", c.output_schema_json)):
        try:
            schema = json.loads(text or "{}")
        except ValueError:
            continue
        found += [side + u.pointer.replace("/", ".") for u in unknown_keywords(schema)]
    return found


def _migrates_from(c: pb.Contract) -> dict[str, Any] | None:
    """The ``migrates_from:`` of the file as registered (docs/contracts.md, "Migration adapters")."""
    if "migrates_from" not in c.source_text:
        return None
    from contracts.errors import AccordError
    from contracts.loader import parse_contract_text

    try:
        migration = parse_contract_text(c.source_text, "registered", registered=True).migrates_from
    except AccordError:  # registered, so it parsed once; shown as absent rather than failing
        return None
    if migration is None:
        return None
    return {"contract": migration.ref, "input": migration.input, "output": migration.output}


def _contract_json(c: pb.Contract) -> dict[str, Any]:
    return {
        "name": c.name,
        "version": c.version,
        "team": c.team,
        "description": c.description,
        "visibility": c.visibility,
        "idempotent": c.idempotent,
        "input": json.loads(c.input_schema_json or "{}"),
        "output": json.loads(c.output_schema_json or "{}"),
        "sensitive": list(c.sensitive),
        "unknown_keywords": _unknown_keywords(c),
        "deprecated": {"sunset": c.deprecated.sunset, "replacement": c.deprecated.replacement}
        if c.HasField("deprecated")
        else None,
        "retired_unix_ms": c.retired_unix_ms,
        "migrates_from": _migrates_from(c),
        "registered_unix_ms": c.registered_unix_ms,
        "registered_by": c.registered_by,
    }


def _finding_line(f: pb.Finding) -> str:
    mark = "BREAKING" if f.breaking else "note"
    return f"{mark}: {f.pointer or '/'}: {f.message}"


def _impact_line(i: pb.ConsumerImpact) -> str:
    return f"breaks workflow {i.workflow} (v{i.workflow_version}, team {i.team}), step {i.step} reads {i.field}: {i.message}"


@contract_app.command("register")
@command
def register_contract(
    file: Annotated[Path, typer.Argument(help="Contract file (YAML or JSON).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only check: would this break anyone, what do the policies say?")
    ] = False,
    override: OverrideOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a contract version; refused if it breaks an earlier version or a consumer, or
    does not satisfy a required policy rule (docs/governance.md). Advisory rules only warn."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    text = _read(file)
    overrides = parse_overrides(override)
    with Client() as client:
        response = client.coordinator.RegisterContract(
            pb.RegisterContractRequest(
                source_text=text, source_name=str(file), dry_run=dry_run, overrides=overrides
            )
        )
    breaking = (
        any(f.breaking for f in response.findings)
        or bool(response.broken_consumers)
        or bool(blocking(response.policy_findings))
    )
    if as_json:
        print_json(
            {
                "contract": f"{response.contract.name}@{response.contract.version}",
                "registered": response.registered,
                "findings": [
                    {"pointer": f.pointer, "message": f.message, "breaking": f.breaking}
                    for f in response.findings
                ],
                "broken_consumers": [
                    {
                        "workflow": i.workflow,
                        "version": i.workflow_version,
                        "team": i.team,
                        "step": i.step,
                        "field": i.field,
                        "message": i.message,
                    }
                    for i in response.broken_consumers
                ],
                "policy_findings": [finding_json(f) for f in response.policy_findings],
                "warnings": list(response.warnings),
            }
        )
    else:
        ref = f"{response.contract.name}@{response.contract.version}"
        for warning in response.warnings:
            typer.echo(f"warning: {warning}", err=True)
        for f in response.findings:
            typer.echo(_finding_line(f))
        for i in response.broken_consumers:
            typer.echo(_impact_line(i))
        for p in response.policy_findings:
            if p.level != "advise":  # advisories are among the warnings already
                typer.echo(finding_line(p))
        if dry_run:
            typer.echo(f"{ref}: {'would be REFUSED' if breaking else 'can be registered'}")
        elif response.registered:
            typer.echo(f"registered {ref}")
        else:
            typer.echo(f"{ref} is already registered (unchanged)")
    if dry_run and breaking:
        raise typer.Exit(1)


@contract_app.command("list")
@command
def list_contracts(
    team: Annotated[str, typer.Option(help="Only this team's contracts.")] = "",
    prefix: Annotated[str, typer.Option(help="Name prefix, e.g. payments/charge.")] = "",
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Every version, not the newest per major.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List registered contracts (newest version of each major)."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListContracts(
            pb.ListContractsRequest(team=team, name_prefix=prefix, all_versions=all_versions)
        )
    if as_json:
        print_json([_contract_json(c) for c in response.contracts])
        return
    for c in response.contracts:
        note = f"  deprecated, sunset {c.deprecated.sunset}" if c.HasField("deprecated") else ""
        if c.retired_unix_ms:
            note += "  retired"
        unknown = _unknown_keywords(c)
        if unknown:
            note += f"  unknown schema keywords (ignored): {', '.join(unknown)}"
        typer.echo(f"{c.name}@{c.version}  {c.visibility}  {c.description}{note}")


@contract_app.command("show")
@command
def show_contract(
    ref: Annotated[str, typer.Argument(help="team/name, team/name@^1 or team/name@1.2.3")],
    as_json: JsonOption = False,
) -> None:
    """Show one contract version and the versions registered."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.GetContract(pb.GetContractRequest(ref=ref))
    if as_json:
        print_json({**_contract_json(response.contract), "versions": list(response.versions)})
        return
    c = response.contract
    typer.echo(f"{c.name}@{c.version}  (team {c.team}, {c.visibility})")
    if c.description:
        typer.echo(c.description)
    typer.echo(f"versions: {', '.join(response.versions)}")
    if c.HasField("deprecated"):
        typer.echo(f"deprecated: sunset {c.deprecated.sunset}, replacement {c.deprecated.replacement or '-'}")
    if c.retired_unix_ms:
        typer.echo("retired: new runs and workflows can no longer use this version")
    typer.echo("")
    typer.echo(c.source_text.rstrip())


@contract_app.command("deprecate")
@command
def deprecate(
    ref: Annotated[str, typer.Argument(help="team/name@1 (a major) or team/name@1.2.0")],
    sunset: Annotated[str, typer.Option(help="ISO date after which it may go away.")],
    replacement: Annotated[str, typer.Option(help="What to use instead, e.g. payments/charge-card@2.")] = "",
) -> None:
    """Deprecate a contract version or major."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.DeprecateContract(
            pb.DeprecateContractRequest(ref=ref, sunset=sunset, replacement=replacement)
        )
    for c in response.contracts:
        typer.echo(f"deprecated {c.name}@{c.version} (sunset {sunset})")


def _workflow_unknown_keywords(w: pb.Workflow) -> list[str]:
    """Where a registered workflow version's schemas (input, signal payloads) hold keywords JSON
    Schema does not define (registered before they were refused; the validator ignores them)."""
    from contracts._keywords import unknown_fields, workflow_schemas
    from contracts._yaml import parse_document

    if not w.source_text:
        return []
    return unknown_fields(workflow_schemas(parse_document(w.source_text, w.name).data))


def _workflow_json(w: pb.Workflow) -> dict[str, Any]:
    return {
        "name": w.name,
        "team": w.team,
        "version": w.version,
        "description": w.description,
        "definition": json.loads(w.definition_json or "{}"),
        "registered_unix_ms": w.registered_unix_ms,
        "registered_by": w.registered_by,
        "disabled_unix_ms": w.disabled_unix_ms,
        "unknown_keywords": _workflow_unknown_keywords(w),
    }


@workflow_app.command("register")
@command
def register_workflow(
    file: Annotated[Path, typer.Argument(help="Workflow file (YAML or JSON).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate against the registry and the policies only.")
    ] = False,
    override: OverrideOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a new version of a workflow; refused if it does not type-check, or does not
    satisfy a required policy rule (docs/governance.md). Advisory rules only warn."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    text = _read(file)
    overrides = parse_overrides(override)
    with Client() as client:
        response = client.coordinator.RegisterWorkflow(
            pb.RegisterWorkflowRequest(
                source_text=text, source_name=str(file), dry_run=dry_run, overrides=overrides
            )
        )
    blocked = bool(blocking(response.policy_findings))
    breaking = any(f.breaking for f in response.findings)
    if as_json:
        print_json(
            {
                **_workflow_json(response.workflow),
                "registered": response.registered,
                "findings": [
                    {"pointer": f.pointer, "message": f.message, "breaking": f.breaking}
                    for f in response.findings
                ],
                "policy_findings": [finding_json(f) for f in response.policy_findings],
                "warnings": list(response.warnings),
            }
        )
    else:
        for warning in response.warnings:
            typer.echo(f"warning: {warning}", err=True)
        for f in response.findings:
            typer.echo(_finding_line(f))
        for p in response.policy_findings:
            if p.level != "advise":
                typer.echo(finding_line(p))
        w = response.workflow
        if dry_run:
            typer.echo(
                f"{w.name}: {'does NOT type-check' if breaking else 'type-checks against the registry'}"
                + ("; a required policy rule would REFUSE it" if blocked else "")
            )
        elif response.registered:
            typer.echo(f"registered {w.name} v{w.version}")
        else:
            typer.echo(f"unchanged: {w.name} v{w.version} is this file already; nothing registered")
    if dry_run and breaking:
        raise typer.Exit(2)  # as a refused register: composition failures are bad input
    if dry_run and blocked:
        raise typer.Exit(1)  # as contract register --dry-run: the check says no


@workflow_app.command("validate")
@command
def validate_workflow(
    file: Annotated[Path, typer.Argument(help="Workflow file (YAML or JSON).")],
    as_json: JsonOption = False,
) -> None:
    """Check a workflow against the registered contracts without registering it (the same as
    'workflow register --dry-run'; 'workflow check' does it offline, against contract files)."""
    register_workflow(file, dry_run=True, as_json=as_json)


@workflow_app.command("list")
@command
def list_workflows(
    team: Annotated[str, typer.Option(help="Only this team's workflows.")] = "",
    as_json: JsonOption = False,
) -> None:
    """List workflows (newest version of each)."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.ListWorkflows(pb.ListWorkflowsRequest(team=team))
    if as_json:
        print_json([_workflow_json(w) for w in response.workflows])
        return
    for w in response.workflows:
        note = "  (disabled)" if w.disabled_unix_ms else ""
        unknown = _workflow_unknown_keywords(w)
        if unknown:
            note += f"  unknown schema keywords (ignored): {', '.join(unknown)}"
        typer.echo(f"{w.name}  v{w.version}  {w.description}{note}")


@workflow_app.command("show")
@command
def show_workflow(
    name: str,
    version: Annotated[int, typer.Option(help="0 = newest.")] = 0,
    as_json: JsonOption = False,
) -> None:
    """Show one workflow version."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        response = client.coordinator.GetWorkflow(pb.GetWorkflowRequest(name=name, version=version))
    w = response.workflow
    if as_json:
        print_json({**_workflow_json(w), "source": w.source_text})
        return
    typer.echo(f"{w.name} v{w.version} (team {w.team}, registered by {w.registered_by})")
    if w.disabled_unix_ms:
        typer.echo("disabled: starts no runs (accord workflow enable to start them again)")
    typer.echo("")
    typer.echo(w.source_text.rstrip())
