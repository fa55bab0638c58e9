"""Policies as data: rules the platform (or a team, for its own namespace) applies to the
contracts, workflows and agents registered (docs/governance.md).

A rule's condition is a JSON Schema the object must satisfy; the object is the registration as a
JSON document -- the file's own keys for a contract or workflow, what the agent reports for an
agent -- plus ``facts``: values the coordinator derives from it, so that a rule can say what the
file's keys alone cannot (a timeout in seconds, the other teams a workflow calls, each field of a
contract's schemas and whether it is declared sensitive). There is no rule language beyond JSON
Schema. Conditions are bounded like a contract's schemas (``contracts.limits``) and their
``pattern`` keywords run on RE2 (``contracts.regex``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from contracts import lifecycle
from contracts._yaml import Document, escape, parse_document, pointer_to_field
from contracts.errors import FailedPreconditionError
from contracts.loader import _check_embedded_schema, _Problems, _report_schema_error
from contracts.model import Contract, RetryPolicy, Timeouts, Workflow
from contracts.validation import compiled_validator

__all__ = [
    "APPLIES_TO",
    "LEVELS",
    "MAX_RULES",
    "PolicyFinding",
    "Rule",
    "Verdict",
    "agent_document",
    "contract_facts",
    "evaluate",
    "parse_policy_text",
    "workflow_facts",
]

APPLIES_TO = ("contract", "workflow", "agent")
LEVELS = ("advise", "require")
#: The most rules one policy file holds.
MAX_RULES = 200
#: The most findings one rule reports about one object.
MAX_FINDINGS_PER_RULE = 10
_MAX_DETAIL = 200

_RULE_ID = r"^[a-z][a-z0-9-]{0,62}$"

_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["rules"],
    "properties": {
        "policy": {"type": "string", "description": "a name for the file, shown by policy list"},
        "description": {"type": "string"},
        "rules": {
            "type": "array",
            "maxItems": MAX_RULES,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "applies_to", "level", "message", "condition"],
                "properties": {
                    "id": {
                        "type": "string",
                        "pattern": _RULE_ID,
                        "description": "lowercase letters, digits and dashes, starting with a letter "
                        '(used in --override ID="reason")',
                    },
                    "applies_to": {"enum": list(APPLIES_TO)},
                    "level": {"enum": list(LEVELS)},
                    "overridable": {"type": "boolean"},
                    "message": {"type": "string", "minLength": 1, "maxLength": 500},
                    "condition": {
                        "type": ["object", "boolean"],
                        "description": "the JSON Schema (2020-12) the object must satisfy",
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Rule:
    """One rule of a policy file. ``scope``: "" for the platform's file, else the team whose
    namespace (contracts, workflows and agents of that team) its rules cover."""

    id: str
    applies_to: str
    level: str
    message: str
    condition: Any
    overridable: bool = False
    scope: str = ""
    source_name: str = ""
    line: int = 0

    def covers(self, kind: str, owner_team: str) -> bool:
        return self.applies_to == kind and (not self.scope or self.scope == owner_team)


@dataclass(frozen=True)
class PolicyFinding:
    """An object does not satisfy a rule: where (file, line, field) and why."""

    rule: str
    level: str
    overridable: bool
    message: str  # the rule's message
    detail: str  # what the condition found, at ``field``
    object: str  # "payments/charge-card@1.2.0", "shipping/order-to-cash", "agent payments-1"
    file: str
    line: int = 0
    field: str = ""
    scope: str = ""
    # The reason given when a ``require`` rule was overridden ("" = not overridden).
    override_reason: str = ""

    def location(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}" if self.field else where

    def __str__(self) -> str:
        text = f"{self.location()}: {self.level} {self.rule}: {self.message} ({self.detail})"
        if self.override_reason:
            text += f"; overridden: {self.override_reason}"
        return text


@dataclass
class Verdict:
    """What the rules say about one registration."""

    findings: list[PolicyFinding] = field(default_factory=list)
    # advise findings, and overrides that were not needed: lines for the caller
    warnings: list[str] = field(default_factory=list)
    # require findings not overridden (or not overridable): the registration is refused
    blocking: list[PolicyFinding] = field(default_factory=list)
    # (rule, reason, source "request"|"file") for each override used: recorded once registered
    used: list[tuple[str, str, str]] = field(default_factory=list)

    def refusal(self, obj: str) -> FailedPreconditionError:
        lines = [str(f) for f in self.blocking]
        fix = [f.rule for f in self.blocking if f.overridable]
        hint = (
            f'; fix it, or register with --override {fix[0]}="reason" (or overrides: in the file), '
            "which is recorded"
            if fix
            else "; fix it (these rules cannot be overridden)"
        )
        return FailedPreconditionError(
            f"{obj} does not satisfy {len(self.blocking)} required policy rule(s){hint}", lines
        )


def parse_policy_text(text: str, source_name: str, team: str = "") -> list[Rule]:
    """The rules of a policy file, or :class:`~contracts.errors.FileProblemsError` naming each
    problem's line and field. ``team``: the file is that team's own (its rules may only advise)."""
    document = parse_document(text, source_name)
    problems = _Problems(document)
    if document.problems:
        problems.raise_if_any()
    data = document.data
    from jsonschema import Draft202012Validator

    for error in Draft202012Validator(_FILE_SCHEMA).iter_errors(data):
        _report_schema_error(problems, error, "policy")
    problems.raise_if_any()
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(data["rules"]):
        pointer = f"/rules/{index}"
        rule_id = raw["id"]
        line = document.line_of(pointer) or 0
        if rule_id in seen:
            problems.add(f"{pointer}/id", f"duplicate rule id '{rule_id}' (first at line {seen[rule_id]})")
        seen.setdefault(rule_id, line)
        if rule_id in lifecycle.OVERRIDABLE:
            problems.add(
                f"{pointer}/id",
                f"'{rule_id}' is the name of a lifecycle rule runs override; choose another id",
            )
        if team and raw["level"] != "advise":
            problems.add(
                f"{pointer}/level",
                f"a team's own rules advise: level must be 'advise' in a --team {team} file "
                "(rules that block are the platform's, applied without --team)",
            )
        if team and raw.get("overridable"):
            problems.add(
                f"{pointer}/overridable", "an advisory rule never blocks, so there is nothing to override"
            )
        _check_embedded_schema(
            problems, f"{pointer}/condition", raw["condition"], f"rule {rule_id} condition"
        )
        rules.append(
            Rule(
                id=rule_id,
                applies_to=raw["applies_to"],
                level=raw["level"],
                message=raw["message"],
                condition=raw["condition"],
                overridable=bool(raw.get("overridable", False)),
                scope=team,
                source_name=source_name,
                line=line,
            )
        )
    problems.raise_if_any()
    return rules


# -- the documents rules see -----------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What a rule is checked against: the JSON document, the line of each of its pointers, and
    where each ``facts`` entry comes from in the file (a facts pointer prefix -> a file pointer)."""

    kind: str
    object: str
    owner_team: str
    file: str
    data: Any
    lines: Mapping[str, int] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)

    def place(self, pointer: str) -> tuple[str, int]:
        """The file's field and line of ``pointer`` in the document (facts mapped to the file)."""
        if pointer == "/facts" or pointer.startswith("/facts/"):
            best = ""
            for prefix in self.origins:
                if (pointer == prefix or pointer.startswith(prefix + "/")) and len(prefix) > len(best):
                    best = prefix
            pointer = self.origins[best] if best else ""
        probe = pointer
        while True:
            if probe in self.lines:
                return pointer_to_field(pointer), self.lines[probe]
            if not probe:
                return pointer_to_field(pointer), 0
            probe = probe.rsplit("/", 1)[0]


def _fields(schema: Any, side: str, pointer: str, out: list[tuple[str, str, str]], depth: int = 0) -> None:
    """(path as in ``sensitive:``, field name, file pointer) of every declared property."""
    if not isinstance(schema, Mapping) or depth > 40:
        return
    props = schema.get("properties")
    if isinstance(props, Mapping):
        for name, sub in props.items():
            path = f"{side}.{name}"
            where = f"{pointer}/properties/{escape(str(name))}"
            out.append((path, str(name), where))
            _fields(sub, path, where, out, depth + 1)
    items = schema.get("items")
    if isinstance(items, Mapping):
        _fields(items, side, f"{pointer}/items", out, depth + 1)


def contract_facts(contract: Contract) -> tuple[dict[str, Any], dict[str, str]]:
    """``facts`` of a contract: ``timeout_s`` (start-to-close, null if unset) and ``fields``
    ({path, name, sensitive} of every declared property of its schemas)."""
    found: list[tuple[str, str, str]] = []
    if contract.kind == "event":
        _fields(contract.input_schema, "payload", "/payload", found)
    else:
        _fields(contract.input_schema, "input", "/input", found)
        _fields(contract.output_schema, "output", "/output", found)
    sensitive = set(contract.sensitive)
    fields = []
    origins = {"/facts/timeout_s": "/timeout"}
    for index, (path, name, where) in enumerate(found):
        covered = path in sensitive or any(path.startswith(s + ".") for s in sensitive)
        fields.append({"path": path, "name": name, "sensitive": covered})
        origins[f"/facts/fields/{index}"] = where
    return {"timeout_s": contract.timeouts.start_to_close, "fields": fields}, origins


def workflow_facts(workflow: Workflow) -> tuple[dict[str, Any], dict[str, str]]:
    """``facts`` of a workflow: ``other_teams`` (the teams, other than its own, whose contracts
    its steps call or whose events trigger it) and ``contracts`` (every contract it calls)."""
    own = workflow.name.split("/", 1)[0]
    called = sorted({step.contract for step in workflow.steps.values()})
    teams = {name.split("/", 1)[0] for name in called}
    teams |= {t.on.split("/", 1)[0] for t in workflow.triggers}
    facts = {"other_teams": sorted(teams - {own}), "contracts": called}
    return facts, {"/facts/other_teams": "/steps", "/facts/contracts": "/steps"}


def agent_document(
    agent_id: str,
    team: str,
    hostname: str,
    concurrency: int,
    bindings: list[tuple[str, int, str]],
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
) -> dict[str, Any]:
    """An agent's registration as rules see it: ``bindings`` are (contract, major, engine); the
    team defaults it reports (retry, timeouts) with only the fields it sets. No secrets: agents
    never send them."""
    retry_doc = {k: v for k, v in dataclasses.asdict(retry).items() if v not in (None, ())} if retry else {}
    timeouts_doc = (
        {k: v for k, v in dataclasses.asdict(timeouts).items() if v is not None} if timeouts else {}
    )
    implements = [{"contract": f"{c}@{m}", "engine": e} for c, m, e in bindings]
    return {
        "agent_id": agent_id,
        "team": team,
        "hostname": hostname,
        "concurrency": concurrency,
        "implements": implements,
        "retry": retry_doc,
        "timeouts": timeouts_doc,
        "facts": {"contracts": sorted({c for c, _, _ in bindings})},
    }


def subject_from_text(
    kind: str,
    obj: str,
    owner_team: str,
    source_text: str,
    source_name: str,
    facts: Mapping[str, Any],
    origins: Mapping[str, str],
) -> Subject:
    """A contract's or workflow's file as a rule sees it (parsed again for its lines; the file
    was read once already, so it is within the file limits)."""
    document: Document = parse_document(source_text, source_name)
    data = dict(document.data) if isinstance(document.data, Mapping) else {}
    data["facts"] = dict(facts)
    return Subject(kind, obj, owner_team, source_name, data, document.lines, origins)


def _detail(error: Any) -> tuple[list[Any], str]:
    path = list(error.absolute_path)
    if error.validator == "required":
        match = re.match(r"^'(.+)' is a required property$", error.message)
        if match:
            return [*path, match.group(1)], "is required but missing"
    message = str(error.message)
    if len(message) > _MAX_DETAIL:
        message = message[: _MAX_DETAIL - 3] + "..."
    return path, message


def evaluate(rules: list[Rule] | tuple[Rule, ...], subject: Subject) -> list[PolicyFinding]:
    """Every rule of ``rules`` that covers ``subject`` and that it does not satisfy, each
    violation at its field and line (at most ``MAX_FINDINGS_PER_RULE`` per rule)."""
    findings: list[PolicyFinding] = []
    for rule in rules:
        if not rule.covers(subject.kind, subject.owner_team):
            continue
        errors = compiled_validator(rule.condition).iter_errors(subject.data)
        for error in islice(errors, MAX_FINDINGS_PER_RULE):
            path, detail = _detail(error)
            pointer = "".join(f"/{escape(str(part))}" for part in path)
            field_name, line = subject.place(pointer)
            if pointer.startswith("/facts/fields/") and isinstance(subject.data.get("facts"), Mapping):
                # name the contract's field, not the fact that describes it
                index = path[2] if len(path) > 2 else None
                facts_fields = subject.data["facts"].get("fields") or []
                if isinstance(index, int) and index < len(facts_fields):
                    detail = f"{facts_fields[index]['path']}: {detail}"
            findings.append(
                PolicyFinding(
                    rule=rule.id,
                    level=rule.level,
                    overridable=rule.overridable,
                    message=rule.message,
                    detail=detail,
                    object=subject.object,
                    file=subject.file,
                    line=line,
                    field=field_name,
                    scope=rule.scope,
                )
            )
    return findings


def check_text(
    rules: list[Rule] | tuple[Rule, ...],
    kind: str,
    obj: str,
    owner_team: str,
    source_text: str,
    source_name: str,
    facts: Mapping[str, Any],
    origins: Mapping[str, str],
) -> tuple[list[PolicyFinding], dict[str, str]]:
    """The findings of ``rules`` on a contract's or workflow's file, and the overrides the file
    itself declares (``overrides:``, rule id -> reason). Top-level, so it runs in a worker."""
    subject = subject_from_text(kind, obj, owner_team, source_text, source_name, facts, origins)
    declared = subject.data.get("overrides")
    file_overrides = {str(k): str(v) for k, v in declared.items()} if isinstance(declared, Mapping) else {}
    return evaluate(rules, subject), file_overrides
