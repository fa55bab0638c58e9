"""Offline contract and workflow commands: lint, diff, check (no coordinator needed; ``diff``
asks it only for a side given as a registered contract, team/name@version).

Exit codes (docs/troubleshooting.md, "Exit codes"): 0 ok; 1 the check failed (a breaking change inside one major);
2 bad input (a file with problems, a workflow that does not type-check).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from contracts.errors import FileProblemsError, Problem
from coordinator.cli._apps import contract_app, workflow_app
from coordinator.cli._output import command, print_json

# The loader (JSON Schema, YAML), the compatibility checker and the composition checker are
# imported inside the commands that use them: ``lint`` needs only the loader.
if TYPE_CHECKING:
    from contracts.compat import Finding
    from contracts.composition import CompositionResult
    from contracts.model import Contract

JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON document instead of text.")]


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {"file": problem.file, "line": problem.line, "field": problem.field, "message": problem.message}


def _finding_json(finding: Finding, line: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pointer": finding.pointer,
        "message": finding.message,
        "breaking": finding.breaking,
    }
    if line is not None:
        out["line"] = line
    return out


@contract_app.command("lint")
@command
def lint(
    files: Annotated[
        list[Path], typer.Argument(help="Contract files (YAML or JSON) to check.", show_default=False)
    ],
    as_json: JsonOption = False,
) -> None:
    """Check contract files offline: format, versions, durations, schemas, sensitive paths.

    Prints "ok FILE (team/name@version)" per good file and every problem as FILE:LINE: FIELD: MESSAGE. Exit 0 when all files are good, 2 otherwise.
    """
    from contracts.loader import load_contract

    report: list[dict[str, Any]] = []
    failed = False
    for path in files:
        try:
            contract = load_contract(path)
        except FileProblemsError as exc:
            failed = True
            report.append(
                {"file": str(path), "ok": False, "problems": [_problem_json(p) for p in exc.problems]}
            )
            if not as_json:
                for problem in exc.problems:
                    typer.echo(f"error: {problem}", err=True)
            continue
        report.append({"file": str(path), "ok": True, "contract": contract.ref, "problems": []})
        if not as_json:
            typer.echo(f"ok {path} ({contract.ref})")
    if as_json:
        print_json(report)
    if failed:
        raise typer.Exit(2)


# "team/name", "team/name@1.2.0", "team/name@^1": a registered contract, not a file.
_REF = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(@\S+)?")


def _is_ref(arg: str) -> bool:
    """Whether a diff argument names a registered contract: it looks like team/name[@version]
    and is not an existing file (nor meant to be one: .yaml, .yml, .json)."""
    if Path(arg).exists() or arg.lower().endswith((".yaml", ".yml", ".json")):
        return False
    return _REF.fullmatch(arg) is not None


@contract_app.command("diff")
@command
def diff(
    old: Annotated[
        str,
        typer.Argument(
            metavar="OLD",
            help="The older version: a contract file, or a registered contract as team/name@version.",
            show_default=False,
        ),
    ],
    new: Annotated[
        str,
        typer.Argument(
            metavar="NEW",
            help="The newer version: a contract file, or a registered contract as team/name@version.",
            show_default=False,
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Compare two versions of a contract, by the rules registration applies.

    Each side is a file (offline) or a registered contract, team/name@VERSION or a range such as team/name@^1 (asks the coordinator): diff a file against what is registered before registering it.

    Inside one major version, input may only widen and output may only narrow: each finding is printed with its JSON pointer, and any breaking one makes the exit code 1. A different major may break anything (exit 0, with a note). Files with problems exit 2.
    """
    from contracts.compat import check_contract_compat

    if _is_ref(old) and _is_ref(new):
        _diff_registered(old, new, as_json)
        return
    old_contract, new_contract = _load_pair(old, new)
    findings = check_contract_compat(
        old_contract.input_schema,
        old_contract.output_schema,
        new_contract.input_schema,
        new_contract.output_schema,
    )
    _report_diff(
        old_contract.ref, new_contract.ref, findings, old_contract.major == new_contract.major, as_json
    )


def _diff_registered(old: str, new: str, as_json: bool) -> None:
    """Both sides registered: the coordinator's DiffContracts (it resolves ranges and applies
    who may see what)."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from coordinator.client import Client

    with Client() as client:
        answer = client.coordinator.DiffContracts(pb.DiffContractsRequest(old_ref=old, new_ref=new))
        refs = []
        for ref in (old, new):
            c = client.coordinator.GetContract(pb.GetContractRequest(ref=ref)).contract
            refs.append(f"{c.name}@{c.version}")
    _report_diff(refs[0], refs[1], list(answer.findings), answer.same_major, as_json)


def _report_diff(old_ref: str, new_ref: str, findings: list[Any], same_major: bool, as_json: bool) -> None:
    """Print the findings of a diff (``contracts.compat.Finding`` or its wire form); exit 1 when
    a finding breaks compatibility inside one major."""
    from contracts.versions import parse_version

    breaking = same_major and any(f.breaking for f in findings)
    old_version, new_version = old_ref.rpartition("@")[2], new_ref.rpartition("@")[2]
    new_major = int(new_version.split(".", 1)[0])
    notes: list[str] = []
    if not same_major:
        notes.append(
            f"{new_ref} is a different major version than {old_ref}: breaking changes are "
            "allowed across majors (both majors live side by side)"
        )
    elif parse_version(new_version) <= parse_version(old_version):
        notes.append(f"{new_version} is not newer than {old_version}")
    if as_json:
        print_json(
            {
                "old": old_ref,
                "new": new_ref,
                "same_major": same_major,
                "breaking": breaking,
                "findings": [_finding_json(f) for f in findings],
                "notes": notes,
            }
        )
    else:
        for note in notes:
            typer.echo(f"note: {note}")
        for finding in findings:
            kind = ("BREAKING" if same_major else "change") if finding.breaking else "note"
            typer.echo(f"{kind} {finding.pointer or '/'}: {finding.message}")
        if breaking:
            typer.echo(
                f"{new_ref} breaks {old_ref}; publish it as {new_major + 1}.0.0 or keep the old behaviour",
                err=True,
            )
        elif same_major:
            typer.echo(f"ok {new_ref} is compatible with {old_ref}")
    if breaking:
        raise typer.Exit(1)


def _load_pair(old: str, new: str) -> tuple[Contract, Contract]:
    """Both sides of a diff as contracts: a file is loaded, a registered contract fetched."""
    from contracts.loader import load_contract

    problems: list[Problem] = []
    loaded: list[Contract] = []
    for arg in (old, new):
        try:
            loaded.append(_registered_contract(arg) if _is_ref(arg) else load_contract(Path(arg)))
        except FileProblemsError as exc:
            problems.extend(exc.problems)
    if problems:
        raise FileProblemsError(problems)
    old_contract, new_contract = loaded
    if old_contract.name != new_contract.name:
        raise FileProblemsError(
            [
                Problem(
                    new,
                    f"compares {new_contract.name} with {old_contract.name} from {old}; diff compares two "
                    "versions of the same contract",
                    None,
                    "contract",
                )
            ]
        )
    return old_contract, new_contract


def _registered_contract(ref: str) -> Contract:
    """The registered contract ``ref`` names, as the coordinator has it."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts.loader import parse_contract_text
    from coordinator.client import Client

    with Client() as client:
        c = client.coordinator.GetContract(pb.GetContractRequest(ref=ref)).contract
    return parse_contract_text(c.source_text, f"{c.name}@{c.version} (registered)", strict=False)


def _registrable(contracts: list[Contract]) -> tuple[list[Contract], list[str]]:
    """Keep what a registry would accept: a version that breaks its predecessor in the same
    major is left out (with a warning), just as ``accord contract register`` would refuse it."""
    from contracts.compat import check_contract_compat, is_breaking
    from contracts.versions import parse_version

    kept: list[Contract] = []
    warnings: list[str] = []
    latest: dict[tuple[str, int], Contract] = {}
    for contract in sorted(contracts, key=lambda c: (c.name, parse_version(c.version))):
        previous = latest.get((contract.name, contract.major))
        if previous is not None:
            findings = check_contract_compat(
                previous.input_schema, previous.output_schema, contract.input_schema, contract.output_schema
            )
            if is_breaking(findings):
                warnings.append(
                    f"ignoring {contract.source_name}: {contract.ref} breaks {previous.ref} inside major "
                    f"{contract.major}, so a registry would refuse it"
                )
                continue
        latest[(contract.name, contract.major)] = contract
        kept.append(contract)
    return kept, warnings


def _check_json(path: Path, result: CompositionResult, warnings: list[str]) -> dict[str, Any]:
    return {
        "file": str(path),
        "workflow": result.workflow.name,
        "ok": result.ok,
        "findings": [_finding_json(f, result.line_of(f)) for f in result.findings],
        "order": result.order,
        "pinned": {step: contract.ref for step, contract in result.pinned.items()},
        "reads": [
            {
                "step": read.step,
                "target": read.target,
                "from_step": read.from_step,
                "contract": read.contract,
                "version": read.version,
                "major": read.major,
                "field": read.field,
            }
            for read in result.all_reads
        ],
        "sensitive_inputs": sorted(result.sensitive_inputs),
        "warnings": warnings,
    }


@workflow_app.command("check")
@command
def check(
    file: Annotated[Path, typer.Argument(help="The workflow file (YAML or JSON).", show_default=False)],
    contracts_dir: Annotated[
        Path,
        typer.Option(
            "--contracts",
            help="Directory of contract files (searched recursively) standing in for the registry.",
            show_default=False,
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Type-check a workflow offline against the contracts in a directory.

    Every step's range must resolve, every ${...} reference must exist in the schema it reads, and what it reads must fit the callee's input field. A contract version that breaks its predecessor inside one major is ignored, as the registry would refuse it. Exit 0 when the workflow type-checks (notes may be printed), 2 with every problem (file, line, field) when it does not.
    """
    from contracts.composition import ContractCatalog, check_workflow
    from contracts.loader import load_contract_dir, load_workflow

    contracts, warnings = _registrable(load_contract_dir(contracts_dir))
    workflow = load_workflow(file)
    result = check_workflow(workflow, ContractCatalog(contracts))
    if as_json:
        print_json(_check_json(file, result, warnings))
    else:
        for warning in warnings:
            typer.echo(f"warning: {warning}", err=True)
        for finding in result.findings:
            line = result.line_of(finding)
            where = f"{file}:{line}" if line is not None else str(file)
            level = "error" if finding.breaking else "note"
            typer.echo(f"{level}: {where}: {finding.message}", err=True)
        if result.ok:
            pinned = ", ".join(
                f"{step}={result.pinned[step].ref}" for step in result.order if step in result.pinned
            )
            typer.echo(f"ok {file} ({workflow.name}: {pinned})")
    if not result.ok:
        raise typer.Exit(2)
