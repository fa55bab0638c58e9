"""Migration adapters (``migrates_from:`` in a contract file; docs/contracts.md, "Migration
adapters"): reading them, type-checking both mappings with the composition checker, and applying
them to a call.

The input mapping is a template over the old major's input (``${input.order_id}``); the output
mapping a template over the new major's output (``${output.ref}``). Both are checked by running
the composition checker on a workflow made for the purpose: for the input, one whose input is
the old major's input schema and whose one step calls the new version with the mapping; for the
output, one whose input is the new version's output schema and whose one step calls a contract
whose input schema is the old major's output schema. So every rule of workflow mappings holds:
each reference exists, what it reads fits where it goes, every required field is supplied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from contracts.composition import ContractCatalog, check_workflow
from contracts.errors import ReferenceError_
from contracts.model import JSON, Contract, Migration, StepSpec, Workflow
from contracts.refs import evaluate, find_references

__all__ = ["MigrationFinding", "adapt_input", "adapt_output", "check_migration", "template_problems"]

_STEP = "adapt"


class MigrationFinding:
    """One finding of ``check_migration``: ``field`` is ``migrates_from.input.amount.cents``."""

    def __init__(self, field: str, message: str, line: int | None, breaking: bool) -> None:
        self.field, self.message, self.line, self.breaking = field, message, line, breaking

    def __str__(self) -> str:
        return self.message


def _as_input_root(template: Any) -> Any:
    """``${output...}`` written as ``${input...}``: the reference language's roots are fixed, so
    an output mapping is read (checked and evaluated) over ``input``."""
    if isinstance(template, str):
        return template.replace("${output.", "${input.").replace("${output}", "${input}")
    if isinstance(template, Mapping):
        return {key: _as_input_root(value) for key, value in template.items()}
    if isinstance(template, list):
        return [_as_input_root(value) for value in template]
    return template


def template_problems(template: Any, root: str, pointer: str) -> list[tuple[str, str]]:
    """(pointer, message) for each reference of ``template`` that is not ``${ROOT...}``."""
    problems: list[tuple[str, str]] = []
    checked = _as_input_root(template) if root == "output" else template
    try:
        refs = find_references(checked)
    except ReferenceError_ as exc:
        return [(pointer, str(exc).replace("${input", "${" + root) if root == "output" else str(exc))]
    for ref in refs:
        if not ref.path or ref.path[0] != "input":
            problems.append(
                (
                    pointer + ref.pointer,
                    f"a migrates_from.{pointer.rsplit('/', 1)[-1]} reference starts with ${{{root}.}}",
                )
            )
    return problems


def adapt_input(migration: Migration, old_input: Any) -> Any:
    """The new major's input for a call made with the old major's input (raises
    ``ReferenceError_`` for a value the mapping reads and the input lacks)."""
    return evaluate(migration.input, {"input": old_input})


def adapt_output(migration: Migration, new_output: Any) -> Any:
    """The old major's output from the new major's output."""
    return evaluate(_as_input_root(migration.output), {"input": new_output})


def check_migration(new: Contract, old: Contract, lines: Mapping[str, int]) -> list[MigrationFinding]:
    """Type-check ``new.migrates_from`` against ``old`` (the old major's newest version) and
    ``new``. ``lines``: the contract file's JSON pointers -> lines, for the messages."""
    migration = new.migrates_from
    assert migration is not None
    findings: list[MigrationFinding] = []
    # old input -> new input
    findings += _run(
        "input",
        f"{old.ref}'s input",
        old.input_schema,
        replace(new, migrates_from=None, visibility="public"),
        migration.input,
        lines,
    )
    # new output -> old output: the "callee" is a contract whose input is the old output schema
    target = Contract(
        name=old.name,
        version=old.version,
        input_schema=old.output_schema,
        output_schema={},
        visibility="public",
    )
    findings += _run(
        "output", f"{new.ref}'s output", new.output_schema, target, _as_input_root(migration.output), lines
    )
    return findings


def _run(
    side: str,
    source_name: str,
    source_schema: Mapping[str, JSON],
    callee: Contract,
    template: Any,
    lines: Mapping[str, int],
) -> list[MigrationFinding]:
    prefix = f"/migrates_from/{side}"
    step_pointer = f"/steps/{_STEP}/input"
    workflow = Workflow(
        name=callee.name,
        input_schema=source_schema,
        steps={_STEP: StepSpec(id=_STEP, contract=callee.name, version_range=callee.version, input=template)},
        lines={
            step_pointer + key[len(prefix) :]: line for key, line in lines.items() if key.startswith(prefix)
        },
    )
    result = check_workflow(workflow, ContractCatalog([callee]))
    found: list[MigrationFinding] = []
    for f in result.findings:
        if not f.pointer.startswith(step_pointer):
            continue
        suffix = f.pointer[len(step_pointer) :]
        # The finding may point inside the target schema (".../cents/type"): name the mapping's key.
        while suffix and prefix + suffix not in lines:
            suffix = suffix.rsplit("/", 1)[0]
        field = f"migrates_from.{side}" + suffix.replace("/", ".")
        message = (
            f.message.replace(f"step '{_STEP}', input", f"migrates_from.{side}")
            .replace(f"steps.{_STEP}.input", f"migrates_from.{side}")
            .replace("the workflow input schema", source_name)
        )
        if side == "output":
            message = message.replace("${input", "${output").replace("input field", "output field")
            message = (
                message.replace("in input;", "in output;")
                .replace("in input (", "in output (")
                .replace("(input has:", "(output has:")
            )
        found.append(MigrationFinding(field, message, lines.get(prefix + suffix), f.breaking))
    return found
