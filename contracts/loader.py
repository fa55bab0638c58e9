"""Loading contract and workflow files (YAML or JSON) into the domain model.

The file formats are defined by the JSON Schemas shipped in ``contracts/schemas/``; on top of
them come the checks a schema cannot express (versions and ranges parse, sensitive paths exist,
the embedded schemas are valid JSON Schema 2020-12, references are well formed...). Every problem
names the file, the line and the field, and says what is expected; all problems of a file are
reported at once in one :class:`~contracts.errors.FileProblemsError`.
"""

from __future__ import annotations

import datetime
import difflib
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from contracts import _schemas, limits, regex
from contracts._keywords import unknown_keywords
from contracts._yaml import Document, escape, parse_document, pointer_to_field
from contracts.durations import parse_duration
from contracts.errors import DurationError, FileProblemsError, Problem, ReferenceError_, VersionError
from contracts.migration import template_problems as migration_template_problems
from contracts.model import (
    WAIT_APPROVAL,
    WAIT_SIGNAL,
    Contract,
    Deprecation,
    Emits,
    Migration,
    RetryPolicy,
    Schedule,
    StepSpec,
    Timeouts,
    Trigger,
    WaitSpec,
    Workflow,
)
from contracts.refs import EMITS_ROOTS, find_references
from contracts.validation import validate_payload
from contracts.versions import parse_version, single_major, split_ref

__all__ = [
    "CONTRACT_FILE_SCHEMA",
    "DEFAULT_CONCURRENCY",
    "WORKFLOW_FILE_SCHEMA",
    "file_schema",
    "load_contract",
    "load_contract_dir",
    "load_workflow",
    "parse_contract_text",
    "parse_workflow_text",
]

CONTRACT_FILE_SCHEMA = "contract.schema.json"
WORKFLOW_FILE_SCHEMA = "workflow.schema.json"
DEFAULT_CONCURRENCY = 10
CONTRACT_SUFFIXES = (".yaml", ".yml", ".json")

_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@cache
def file_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of a file format (``contract.schema.json`` or ``workflow.schema.json``)."""
    text = resources.files("contracts").joinpath("schemas", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def _file_validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(file_schema(name))


# -- problems -------------------------------------------------------------------------------


class _Problems:
    """Collects the problems of one document, each with its line and field."""

    def __init__(self, document: Document, *, registered: bool = False) -> None:
        self.document = document
        # Re-reading a file the registry already holds: the rules added after it was registered
        # (schema limits, RE2 patterns) do not apply, so what was registered keeps working.
        self.registered = registered
        self.items: list[Problem] = list(document.problems)
        self.bad_pointers: set[str] = set()

    def add(self, pointer: str, message: str, *, line_pointer: str | None = None) -> None:
        self.bad_pointers.add(pointer)
        line = self.document.line_of(line_pointer if line_pointer is not None else pointer)
        self.items.append(Problem(self.document.source_name, message, line, pointer_to_field(pointer)))

    def is_bad(self, pointer: str) -> bool:
        """True if ``pointer`` or an ancestor already has a problem (so no follow-up noise)."""
        return any(pointer == bad or pointer.startswith(bad + "/") for bad in self.bad_pointers)

    def is_bad_within(self, pointer: str) -> bool:
        """True if ``pointer``, an ancestor or anything under it has a problem: a schema with a
        problem anywhere inside is not walked by later checks (its keywords may have any type)."""
        return self.is_bad(pointer) or any(bad.startswith(pointer + "/") for bad in self.bad_pointers)

    def raise_if_any(self) -> None:
        if self.items:
            ordered = sorted(self.items, key=lambda p: (p.line if p.line is not None else 0, p.field))
            raise FileProblemsError(ordered)


def _pointer(path: Iterable[Any]) -> str:
    return "".join(f"/{escape(str(part))}" for part in path)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "mapping"


def _where(pointer: str) -> str:
    return f"in {pointer_to_field(pointer)}" if pointer else "at the top level"


def _schema_problems(problems: _Problems, schema_name: str) -> None:
    """Validate the raw document against its file schema; each error becomes a clear problem."""
    data = problems.document.data
    for error in _file_validator(schema_name).iter_errors(data):
        _report_schema_error(problems, error, schema_name)


def _deref_file_schema(sub: Any, schema_name: str) -> Any:
    """Follow a ``#/$defs/...`` reference inside a file schema (for descriptions)."""
    if isinstance(sub, Mapping) and isinstance(sub.get("$ref"), str):
        try:
            return _schemas.resolve_pointer(file_schema(schema_name), sub["$ref"])
        except _schemas.UnresolvableRef:
            return sub
    return sub


def _report_schema_error(problems: _Problems, error: ValidationError, schema_name: str) -> None:
    pointer = _pointer(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    expected = schema.get("description")
    instance = error.instance
    validator = error.validator
    if validator == "additionalProperties" and isinstance(instance, Mapping):
        known = list((schema.get("properties") or {}).keys())
        for key in instance:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else "expected one of: " + ", ".join(known)
            problems.add(f"{pointer}/{escape(str(key))}", f"unknown key '{key}' {_where(pointer)}; {hint}")
        return
    if validator == "required":
        match = re.match(r"^'(.+)' is a required property$", error.message)
        missing = match.group(1) if match else str(error.validator_value)
        what = ""
        sub = _deref_file_schema((schema.get("properties") or {}).get(missing), schema_name)
        if isinstance(sub, Mapping) and sub.get("description"):
            what = f" ({sub['description']})"
        problems.add(
            f"{pointer}/{escape(missing)}",
            f"missing required key '{missing}' {_where(pointer)}{what}",
            line_pointer=pointer,
        )
        return
    if validator == "pattern" and "propertyNames" in error.absolute_schema_path:
        # the instance is the offending key; the path is the mapping holding it
        key = str(instance)
        problems.add(
            f"{pointer}/{escape(key)}", f"'{key}' is not valid: expected {expected or error.message}"
        )
        return
    if validator == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        words = expected or " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)
        hint = ""
        if "string" in types and isinstance(instance, int | float) and not isinstance(instance, bool):
            pattern = schema.get("pattern")
            if pattern is None or re.search(pattern, str(instance)):
                hint = " (quote it in YAML)"
            elif "duration" in str(expected):
                hint = f" (add a unit, e.g. {instance}s)"
        problems.add(pointer, f"expected {words}, got {_json_type(instance)} {_show(instance)}{hint}")
        return
    if validator == "pattern":
        problems.add(pointer, f"{_show(instance)} is not valid: expected {expected or error.message}")
        return
    if validator in ("enum", "const"):
        allowed = error.validator_value if validator == "enum" else [error.validator_value]
        options = ", ".join(str(v) for v in allowed)
        problems.add(pointer, f"{_show(instance)} is not allowed: expected one of {options}")
        return
    if validator == "minProperties" and error.validator_value == 1:
        problems.add(pointer, f"{pointer_to_field(pointer) or 'the file'} must not be empty")
        return
    if validator == "minimum":
        problems.add(pointer, f"{_show(instance)} is too small: expected at least {error.validator_value}")
        return
    problems.add(pointer, error.message)


def _check_embedded_schema(
    problems: _Problems, pointer: str, schema: Any, what: str, *, strict: bool = True
) -> None:
    """An input/output/payload schema must itself be valid JSON Schema 2020-12 with local refs;
    with `strict`, every keyword in it must be a 2020-12 keyword or start with ``x-``."""
    if problems.is_bad(pointer) or schema is None:
        return
    if not problems.registered:
        over = limits.schema_limit_problems(schema, what)
        for message in over:
            problems.add(pointer, message)
        if over:
            return
    if strict:
        for unknown in unknown_keywords(schema):
            problems.add(pointer + unknown.pointer, f"in the {what} schema: {unknown.message}")
    meta = Draft202012Validator(Draft202012Validator.META_SCHEMA)
    for error in meta.iter_errors(schema):
        inner = pointer + _pointer(error.absolute_path)
        message = error.message
        if error.absolute_path and error.absolute_path[-1] == "type" and error.validator == "anyOf":
            message = (
                f"{_show(error.instance)} is not a JSON Schema type; expected one of {', '.join(_TYPE_WORDS)}"
            )
        problems.add(inner, f"the {what} schema is not valid JSON Schema 2020-12: {message}")
    if problems.is_bad_within(pointer):
        return
    for holder, ref in _schemas.local_refs(schema):
        try:
            _schemas.resolve_pointer(schema, ref)
        except _schemas.UnresolvableRef as exc:
            problems.add(f"{pointer}{holder}/$ref", f"$ref {exc}; define it under $defs in the same schema")
    if problems.registered:
        return
    # Checked only for new files (above): a registered one keeps loading (_Problems.registered).
    cycle = None if problems.is_bad_within(pointer) else _schemas.unguarded_ref_cycle(schema)
    if cycle is not None:
        problems.add(
            f"{pointer}{cycle}/$ref",
            f"in the {what} schema: this $ref leads back to a schema it is part of without first going "
            "into a field or an item, so validating a value against it would never end; put the "
            "reference under properties/items (recursion into a part of the value) or remove it",
        )
    for where, pattern in limits.patterns(schema, pointer):
        reason = regex.unsupported(pattern)
        if reason is not None:
            problems.add(
                where,
                f"the regular expression {_show(pattern)} cannot run on RE2, the linear-time engine "
                f"contracts use ({reason}); lookaround and backreferences are not supported, "
                "rewrite it without them (docs/contracts.md, 'Regular expressions')",
            )


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _duration(problems: _Problems, pointer: str, value: Any) -> float | None:
    if value is None or problems.is_bad(pointer):
        return None
    try:
        return parse_duration(value)
    except DurationError as exc:
        problems.add(pointer, str(exc))
        return None


def _timeouts(problems: _Problems, pointer: str, owner: Mapping[str, Any]) -> Timeouts:
    nested = owner.get("timeouts") if isinstance(owner.get("timeouts"), Mapping) else {}
    assert isinstance(nested, Mapping)
    if "timeout" in owner and "start_to_close" in nested:
        problems.add(
            f"{pointer}/timeouts/start_to_close",
            "both 'timeout' and 'timeouts.start_to_close' are set; keep one (timeout is start-to-close)",
        )
    start_to_close = _duration(problems, f"{pointer}/timeout", owner.get("timeout"))
    if start_to_close is None:
        start_to_close = _duration(
            problems, f"{pointer}/timeouts/start_to_close", nested.get("start_to_close")
        )
    return Timeouts(
        schedule_to_start=_duration(
            problems, f"{pointer}/timeouts/schedule_to_start", nested.get("schedule_to_start")
        ),
        start_to_close=start_to_close,
        heartbeat=_duration(problems, f"{pointer}/timeouts/heartbeat", nested.get("heartbeat")),
    )


def _retry(problems: _Problems, pointer: str, value: Any) -> RetryPolicy:
    if not isinstance(value, Mapping) or problems.is_bad(pointer):
        return RetryPolicy()
    max_attempts = value.get("max_attempts")
    coefficient = value.get("backoff_coefficient")
    non_retryable = value.get("non_retryable")
    return RetryPolicy(
        max_attempts=max_attempts if isinstance(max_attempts, int) else None,
        initial_backoff=_duration(problems, f"{pointer}/initial_backoff", value.get("initial_backoff")),
        backoff_coefficient=float(coefficient) if isinstance(coefficient, int | float) else None,
        max_backoff=_duration(problems, f"{pointer}/max_backoff", value.get("max_backoff")),
        non_retryable=tuple(str(x) for x in non_retryable) if isinstance(non_retryable, list) else (),
    )


def _as_schema(value: Any) -> Mapping[str, Any]:
    if value is True or value is None:
        return {}
    if value is False:
        return {"not": {}}
    return value if isinstance(value, Mapping) else {}


def _read(source: str | Path, source_name: str | None) -> tuple[str, str]:
    if isinstance(source, Path) or source_name is None:
        path = Path(source)
        name = source_name or str(path)
        try:
            return path.read_text(encoding="utf-8"), name
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise FileProblemsError([Problem(name, f"cannot read the file: {reason}")]) from None
    return source, source_name


# -- contracts ------------------------------------------------------------------------------


def load_contract(source: str | Path, source_name: str | None = None) -> Contract:
    """Load a contract file.

    ``source`` is a path (a :class:`~pathlib.Path`, or a ``str`` when ``source_name`` is None) or
    the file's text (a ``str`` together with ``source_name``, the name used in messages).
    Raises FileProblemsError listing every problem, each with file, line and field.
    """
    text, name = _read(source, source_name)
    return parse_contract_text(text, name)


def parse_contract_text(
    text: str, source_name: str, *, registered: bool = False, strict: bool = True
) -> Contract:
    """Parse the text of a contract file (YAML or JSON); see :func:`load_contract`.

    ``registered``: the text is one the registry already holds, read again; the rules added
    since it may have been registered (the limits of ``contracts.limits``, the RE2 rule, unknown
    keywords inside the schemas) are not applied to it, so it keeps working. ``strict=False``
    alone accepts unknown keywords inside the schemas.
    """
    strict = strict and not registered
    document = parse_document(text, source_name)
    problems = _Problems(document, registered=registered)
    if document.problems and document.data is None:
        problems.raise_if_any()
    data = document.data
    if not isinstance(data, Mapping):
        problems.add("", "a contract file must be a mapping with keys contract, version, input, output, ...")
        problems.raise_if_any()
    assert isinstance(data, Mapping)
    _schema_problems(problems, CONTRACT_FILE_SCHEMA)

    kind = data.get("kind", "task")
    if kind == "event":
        for key in ("input", "output"):
            if key in data:
                problems.add(f"/{key}", f"an event contract has a 'payload' schema, not '{key}'")
        input_schema: Any = data.get("payload")
        output_schema: Any = {}
        _check_embedded_schema(problems, "/payload", input_schema, "payload", strict=strict)
    else:
        if "payload" in data:
            problems.add(
                "/payload", "'payload' is only for 'kind: event'; a task contract has 'input' and 'output'"
            )
        input_schema, output_schema = data.get("input"), data.get("output")
        _check_embedded_schema(problems, "/input", input_schema, "input", strict=strict)
        _check_embedded_schema(problems, "/output", output_schema, "output", strict=strict)

    schemas = {"input": input_schema, "output": output_schema}
    sensitive = data.get("sensitive") if isinstance(data.get("sensitive"), list) else []
    assert isinstance(sensitive, list)
    if len(sensitive) > limits.MAX_SENSITIVE_PATHS and not registered:
        problems.add(
            "/sensitive",
            f"{len(sensitive)} sensitive paths, over the limit of {limits.MAX_SENSITIVE_PATHS}; "
            "mark a whole object sensitive rather than each of its fields",
        )
        sensitive = []
    for index, path in enumerate(sensitive):
        pointer = f"/sensitive/{index}"
        if problems.is_bad(pointer) or not isinstance(path, str):
            continue
        side = path.partition(".")[0]
        if side not in schemas or problems.is_bad_within(f"/{side}"):
            continue
        _check_sensitive_path(problems, pointer, path, schemas[side], side)

    deprecated = data.get("deprecated")
    deprecation: Deprecation | None = None
    if isinstance(deprecated, Mapping) and not problems.is_bad("/deprecated"):
        sunset = deprecated.get("sunset")
        try:
            datetime.date.fromisoformat(str(sunset))
        except ValueError:
            problems.add(
                "/deprecated/sunset", f"{_show(sunset)} is not valid: expected an ISO date such as 2027-03-01"
            )
        replacement = deprecated.get("replacement", "")
        if replacement:
            try:
                split_ref(str(replacement))
            except VersionError as exc:
                problems.add("/deprecated/replacement", str(exc))
        deprecation = Deprecation(sunset=str(sunset), replacement=str(replacement or ""))

    emits = _emits(problems, data, str(kind))
    migration = _migration(problems, data, kind)
    timeouts = _timeouts(problems, "", data)
    retry = _retry(problems, "/retry", data.get("retry"))
    if not problems.is_bad("/version"):
        try:  # the file schema's pattern says the shape, not the bounds of each number
            parse_version(str(data.get("version")))
        except VersionError as exc:
            problems.add("/version", str(exc))
    problems.raise_if_any()

    version = str(data["version"])
    return Contract(
        name=str(data["contract"]),
        version=version,
        input_schema=_as_schema(input_schema),
        output_schema=_as_schema(output_schema),
        description=str(data.get("description", "")),
        timeouts=timeouts,
        retry=retry,
        idempotent=bool(data.get("idempotent", False)),
        max_concurrency=data["max_concurrency"] if isinstance(data.get("max_concurrency"), int) else None,
        visibility=str(data.get("visibility", "public")),
        sensitive=tuple(str(s) for s in sensitive),
        deprecated=deprecation,
        kind=str(kind),
        emits=emits,
        source_text=text,
        source_name=source_name,
        migrates_from=migration,
    )


def _emits(problems: _Problems, data: Mapping[str, Any], kind: str) -> Emits | None:
    """``emits:`` (its shape is checked by the file schema): an event contract of the contract's
    own team, by major, and a payload mapping whose references read ``input`` or ``output``.
    Whether the mapping fits the event's payload schema is checked at registration, against the
    registered event contract (``contracts.composition.check_emits``)."""
    value = data.get("emits")
    if not isinstance(value, Mapping) or problems.is_bad_within("/emits"):
        return None
    if kind == "event":
        problems.add("/emits", "an event contract cannot emit events; 'emits' is for task contracts")
        return None
    event, _, major = str(value["event"]).partition("@")
    team = str(data.get("contract", "")).split("/", 1)[0]
    if event.split("/", 1)[0] != team:
        problems.add(
            "/emits/event",
            f"{value['event']} belongs to team {event.split('/', 1)[0]}; a contract of team {team} may"
            f" emit only its own team's events (e.g. {team}/{event.split('/', 1)[-1]}@{major})",
        )
        return None
    payload = value["payload"]
    for ref_problem in _emits_reference_problems(payload):
        problems.add(*ref_problem)
    return Emits(event=event, major=int(major), payload=payload)


def _emits_reference_problems(template: Any, pointer: str = "/emits/payload") -> list[tuple[str, str]]:
    if isinstance(template, str):
        try:
            find_references(template, roots=EMITS_ROOTS)
        except ReferenceError_ as exc:
            return [(pointer, str(exc))]
        return []
    found: list[tuple[str, str]] = []
    if isinstance(template, Mapping):
        for key, value in template.items():
            found += _emits_reference_problems(value, f"{pointer}/{escape(str(key))}")
    elif isinstance(template, list):
        for index, value in enumerate(template):
            found += _emits_reference_problems(value, f"{pointer}/{index}")
    return found


def _migration(problems: _Problems, data: Mapping[str, Any], kind: Any) -> Migration | None:
    """``migrates_from:``: an older major of this same contract, and reference syntax of both
    mappings (whether they type-check needs the registry: ``contracts.migration``)."""
    raw = data.get("migrates_from")
    if not isinstance(raw, Mapping) or problems.is_bad("/migrates_from"):
        return None
    if kind == "event":
        problems.add("/migrates_from", "an event contract cannot declare migrates_from")
        return None
    name, range_text = _contract_ref(problems, "/migrates_from/contract", raw.get("contract"))
    if not name:
        return None
    this = str(data.get("contract", ""))
    if name != this:
        problems.add(
            "/migrates_from/contract",
            f"migrates_from names {name}, but an adapter serves an older major of this same contract ({this})",
        )
        return None
    if not range_text.lstrip("^").isdigit():
        problems.add(
            "/migrates_from/contract", f"name the older major alone, e.g. {name}@1 (not @{range_text})"
        )
        return None
    major = int(range_text.lstrip("^"))
    try:
        this_major = parse_version(str(data.get("version", ""))).major
    except VersionError:
        return None
    if major >= this_major:
        problems.add(
            "/migrates_from/contract",
            f"migrates_from must name an older major than this version's ({this_major}), not {major}",
        )
        return None
    for side in ("input", "output"):
        for pointer, message in migration_template_problems(raw.get(side), side, f"/migrates_from/{side}"):
            problems.add(pointer, message)
    return Migration(contract=name, major=major, input=raw.get("input"), output=raw.get("output"))


def _check_sensitive_path(problems: _Problems, pointer: str, path: str, schema: Any, side: str) -> None:
    current: Any = schema
    parts = path.split(".")[1:]
    for depth, part in enumerate(parts):
        lookup = _schemas.child(current, part, schema if schema is not None else {})
        if lookup.schema is None or not lookup.declared:
            known = _schemas.declared_fields(current, schema)
            where = ".".join([side, *parts[:depth]])
            listing = f"; {where} has: {', '.join(known)}" if known else f"; {where} declares no fields"
            problems.add(pointer, f"sensitive path '{path}' does not exist in the {side} schema{listing}")
            return
        current = lookup.schema


def load_contract_dir(directory: str | Path) -> list[Contract]:
    """Load every contract file (``*.yaml``, ``*.yml``, ``*.json``) under ``directory``, recursively.

    Problems of all files are reported together; two files declaring the same ``name@version``
    are a problem too.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileProblemsError([Problem(str(root), "not a directory of contract files")])
    contracts: list[Contract] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in CONTRACT_SUFFIXES):
        try:
            contract = load_contract(path)
        except FileProblemsError as exc:
            problems.extend(exc.problems)
            continue
        if contract.ref in seen:
            problems.append(
                Problem(str(path), f"{contract.ref} is also defined in {seen[contract.ref]}", 1, "version")
            )
            continue
        seen[contract.ref] = str(path)
        contracts.append(contract)
    if problems:
        raise FileProblemsError(problems)
    return contracts


# -- workflows ------------------------------------------------------------------------------


def load_workflow(source: str | Path, source_name: str | None = None) -> Workflow:
    """Load a workflow file; ``source`` as for :func:`load_contract`.

    Checks the file on its own (format, ranges, reference syntax); whether it type-checks against
    its contracts is :func:`contracts.composition.check_workflow`'s job.
    """
    text, name = _read(source, source_name)
    return parse_workflow_text(text, name)


def _template_problems(problems: _Problems, pointer: str, template: Any) -> None:
    if isinstance(template, str):
        try:
            find_references(template)
        except ReferenceError_ as exc:
            problems.add(pointer, str(exc))
    elif isinstance(template, Mapping):
        for key, value in template.items():
            _template_problems(problems, f"{pointer}/{escape(str(key))}", value)
    elif isinstance(template, list):
        for index, value in enumerate(template):
            _template_problems(problems, f"{pointer}/{index}", value)


def _contract_ref(problems: _Problems, pointer: str, value: Any) -> tuple[str, str]:
    if problems.is_bad(pointer) or not isinstance(value, str):
        return "", ""
    try:
        name, range_text = split_ref(value)
        single_major(range_text)
    except VersionError as exc:
        problems.add(pointer, str(exc))
        return "", ""
    return name, range_text


# Keys of a contract-calling step that a waiting step has no use for.
_NOT_FOR_WAITING = ("for_each", "concurrency", "retry", "timeout", "timeouts")


def _wait_for(problems: _Problems, pointer: str, raw: Mapping[str, Any], strict: bool) -> WaitSpec | None:
    """The ``wait_for`` of a step, or None for a step that calls a contract; reports a step with
    both or neither, and the keys a waiting step cannot use."""
    if "wait_for" not in raw:
        if "contract" not in raw:
            problems.add(
                pointer,
                "a step needs 'contract' (the contract it calls, e.g. payments/charge-card@^1) "
                "or 'wait_for' (an approval or a signal to wait for)",
            )
        return None
    if "contract" in raw:
        problems.add(
            f"{pointer}/wait_for",
            "a step either calls a contract or waits ('wait_for'), not both; split it into two steps",
        )
        return None
    for key in _NOT_FOR_WAITING:
        if key in raw:
            problems.add(
                f"{pointer}/{key}",
                f"'{key}' is for steps that call a contract; a waiting step has its own "
                "'timeout' inside wait_for",
            )
    base = f"{pointer}/wait_for"
    value = raw.get("wait_for")
    if problems.is_bad_within(base) or not isinstance(value, Mapping) or len(value) != 1:
        return None
    kind = next(iter(value))
    body = value[kind]
    if not isinstance(body, Mapping):
        return None
    inner = f"{base}/{kind}"
    timeout = _duration(problems, f"{inner}/timeout", body.get("timeout"))
    by = tuple(str(team) for team in body.get("by") or ())
    if kind == WAIT_APPROVAL:
        return WaitSpec(WAIT_APPROVAL, by, timeout, str(body.get("on_timeout") or "reject"))
    schema = body.get("schema")
    if schema is not None:
        _check_embedded_schema(problems, f"{inner}/schema", schema, "signal payload", strict=strict)
    return WaitSpec(
        WAIT_SIGNAL,
        by,
        timeout,
        str(body.get("on_timeout") or "fail"),
        name=str(body.get("name", "")),
        schema=_as_schema(schema) if schema is not None else None,
    )


def _schedules(problems: _Problems, document: Document, data: Mapping[str, Any]) -> tuple[Schedule, ...]:
    """The ``schedules`` of a workflow file: each cron expression parsed by the cron library, each
    time zone found, each input checked against the workflow's input schema."""
    from contracts.schedules import ScheduleError, check_cron, check_timezone

    raw = data.get("schedules") if isinstance(data.get("schedules"), list) else []
    assert isinstance(raw, list)
    found: list[Schedule] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        pointer = f"/schedules/{index}"
        if not isinstance(item, Mapping) or problems.is_bad_within(pointer):
            continue
        schedule_id = str(item.get("id"))
        if schedule_id in seen:
            problems.add(f"{pointer}/id", f"schedule id '{schedule_id}' is used twice; ids must be unique")
        seen.add(schedule_id)
        timezone = str(item.get("timezone", "UTC"))
        try:
            check_cron(str(item["cron"]))
        except ScheduleError as exc:
            problems.add(f"{pointer}/cron", str(exc))
        try:
            check_timezone(timezone)
        except ScheduleError as exc:
            problems.add(f"{pointer}/timezone", str(exc))
        run_input = item.get("input", {})
        schema = data.get("input")
        if isinstance(schema, Mapping | bool) and not problems.is_bad_within("/input"):
            for violation in validate_payload(schema, run_input, "input"):
                problems.add(f"{pointer}/input", f"does not match the workflow's input schema: {violation}")
        found.append(
            Schedule(
                id=schedule_id,
                cron=str(item["cron"]),
                timezone=timezone,
                input=run_input,
                overlap=str(item.get("overlap", "skip")),
                catch_up=str(item.get("catch_up", "none")),
                max_catch_up=int(item.get("max_catch_up", 10)),
                line=document.line_of(pointer),
            )
        )
    return tuple(found)


def parse_workflow_text(
    text: str, source_name: str, *, registered: bool = False, strict: bool = True
) -> Workflow:
    """Parse the text of a workflow file (YAML or JSON); see :func:`load_workflow` (and
    :func:`parse_contract_text` for ``registered`` and ``strict``)."""
    strict = strict and not registered
    document = parse_document(text, source_name)
    problems = _Problems(document, registered=registered)
    if document.problems and document.data is None:
        problems.raise_if_any()
    data = document.data
    if not isinstance(data, Mapping):
        problems.add("", "a workflow file must be a mapping with keys workflow, input, steps, output, ...")
        problems.raise_if_any()
    assert isinstance(data, Mapping)
    _schema_problems(problems, WORKFLOW_FILE_SCHEMA)
    if "input" in data:
        _check_embedded_schema(problems, "/input", data.get("input"), "workflow input", strict=strict)

    steps: dict[str, StepSpec] = {}
    raw_steps = data.get("steps") if isinstance(data.get("steps"), Mapping) else {}
    assert isinstance(raw_steps, Mapping)
    for step_id, raw in raw_steps.items():
        pointer = f"/steps/{escape(step_id)}"
        if not isinstance(raw, Mapping):
            continue  # reported by the schema
        wait = _wait_for(problems, pointer, raw, strict)
        name, range_text = _contract_ref(problems, f"{pointer}/contract", raw.get("contract"))
        for key in ("input", "when", "for_each"):
            if key in raw:
                _template_problems(problems, f"{pointer}/{key}", raw[key])
        for_each = raw.get("for_each")
        if isinstance(for_each, str) and not problems.is_bad(f"{pointer}/for_each"):
            refs = find_references(for_each)
            if len(refs) != 1 or not refs[0].whole:
                problems.add(
                    f"{pointer}/for_each",
                    "for_each must be exactly one reference to an array, e.g. ${steps.reserve.output.items}",
                )
        concurrency = raw.get("concurrency")
        if concurrency is not None and "for_each" not in raw:
            problems.add(
                f"{pointer}/concurrency", "concurrency limits a for_each fan-out; this step has no for_each"
            )
        steps[step_id] = StepSpec(
            id=step_id,
            contract=name,
            version_range=range_text,
            input=raw.get("input", {}),
            when=raw.get("when") if isinstance(raw.get("when"), str) else None,
            for_each=for_each if isinstance(for_each, str) else None,
            concurrency=(concurrency if isinstance(concurrency, int) else DEFAULT_CONCURRENCY)
            if "for_each" in raw
            else None,
            retry=_retry(problems, f"{pointer}/retry", raw.get("retry")),
            timeouts=_timeouts(problems, pointer, raw),
            line=document.line_of(pointer),
            wait=wait,
        )

    triggers: list[Trigger] = []
    raw_triggers = data.get("triggers") if isinstance(data.get("triggers"), list) else []
    assert isinstance(raw_triggers, list)
    for index, raw in enumerate(raw_triggers):
        pointer = f"/triggers/{index}"
        if not isinstance(raw, Mapping):
            continue
        name, range_text = _contract_ref(problems, f"{pointer}/on", raw.get("on"))
        if "input" in raw:
            _template_problems(problems, f"{pointer}/input", raw["input"])
        triggers.append(
            Trigger(
                on=name, version_range=range_text, input=raw.get("input", {}), line=document.line_of(pointer)
            )
        )
    if "output" in data:
        _template_problems(problems, "/output", data["output"])
    sensitive = data.get("sensitive") if isinstance(data.get("sensitive"), list) else []
    assert isinstance(sensitive, list)
    for index, path in enumerate(sensitive):
        if (
            isinstance(path, str)
            and not problems.is_bad(f"/sensitive/{index}")
            and not problems.is_bad_within("/input")
        ):
            _check_sensitive_path(problems, f"/sensitive/{index}", path, data.get("input"), "input")
    run_timeout = _duration(problems, "/timeout", data.get("timeout"))
    schedules = _schedules(problems, document, data)
    problems.raise_if_any()

    return Workflow(
        name=str(data["workflow"]),
        input_schema=_as_schema(data.get("input")),
        steps=steps,
        output=data.get("output"),
        description=str(data.get("description", "")),
        triggers=tuple(triggers),
        source_text=text,
        source_name=source_name,
        sensitive=tuple(str(s) for s in sensitive),
        overrides=tuple((str(k), str(v)) for k, v in (data.get("overrides") or {}).items()),
        timeout=run_timeout,
        schedules=schedules,
        lines=dict(document.lines),
    )
