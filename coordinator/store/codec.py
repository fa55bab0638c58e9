"""How the Store keeps domain objects: their JSON forms, and the rows of every table as tuples
to write and decoders of rows read. Shared by every Store implementation (SQLite, PostgreSQL),
whose tables have the same columns; each store only adds its own SQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from contracts import jsontext
from contracts.model import Contract, Deprecation, Emits, Migration, RetryPolicy, Timeouts
from coordinator.store.records import (
    RUN_TERMINAL,
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    Binding,
    ContractRecord,
    EventRecord,
    OfferRecord,
    RunRecord,
    ScheduleRecord,
    SpanRecord,
    StepRecord,
    TaskFailure,
    TeamRecord,
    TimerRecord,
    TokenRecord,
    UiSessionRecord,
    WorkflowRecord,
)

# Retention (docs/production.md, "Retention"): the runs it deletes (in a terminal status: the
# predicate of the runs_finished index, word for word).
RUN_TERMINAL_SQL = "status IN ({})".format(", ".join(f"'{s}'" for s in sorted(RUN_TERMINAL)))


def retry_to_json(policy: RetryPolicy) -> dict[str, Any]:
    return {
        "max_attempts": policy.max_attempts,
        "initial_backoff": policy.initial_backoff,
        "backoff_coefficient": policy.backoff_coefficient,
        "max_backoff": policy.max_backoff,
        "non_retryable": list(policy.non_retryable),
    }


def retry_from_json(value: dict[str, Any] | None) -> RetryPolicy:
    value = value or {}
    return RetryPolicy(
        max_attempts=value.get("max_attempts"),
        initial_backoff=value.get("initial_backoff"),
        backoff_coefficient=value.get("backoff_coefficient"),
        max_backoff=value.get("max_backoff"),
        non_retryable=tuple(value.get("non_retryable") or ()),
    )


def timeouts_to_json(timeouts: Timeouts) -> dict[str, Any]:
    return {
        "schedule_to_start": timeouts.schedule_to_start,
        "start_to_close": timeouts.start_to_close,
        "heartbeat": timeouts.heartbeat,
    }


def timeouts_from_json(value: dict[str, Any] | None) -> Timeouts:
    value = value or {}
    return Timeouts(
        schedule_to_start=value.get("schedule_to_start"),
        start_to_close=value.get("start_to_close"),
        heartbeat=value.get("heartbeat"),
    )


def deprecation_to_json(value: Deprecation | None) -> dict[str, Any] | None:
    return None if value is None else {"sunset": value.sunset, "replacement": value.replacement}


def deprecation_from_json(value: dict[str, Any] | None) -> Deprecation | None:
    return None if not value else Deprecation(value["sunset"], value.get("replacement", ""))


def contract_to_json(contract: Contract) -> dict[str, Any]:
    """Parsed fields (without source text or deprecation, which are stored beside)."""
    return {
        "name": contract.name,
        "version": contract.version,
        "description": contract.description,
        "input_schema": contract.input_schema,
        "output_schema": contract.output_schema,
        "timeouts": timeouts_to_json(contract.timeouts),
        "retry": retry_to_json(contract.retry),
        "idempotent": contract.idempotent,
        "max_concurrency": contract.max_concurrency,
        "visibility": contract.visibility,
        "sensitive": list(contract.sensitive),
        "kind": contract.kind,
        "source_name": contract.source_name,
        **(
            {"emits": {"event": e.event, "major": e.major, "payload": e.payload}}
            if (e := contract.emits) is not None
            else {}
        ),
        **({"migrates_from": dataclasses.asdict(contract.migrates_from)} if contract.migrates_from else {}),
    }


def contract_from_json(
    value: dict[str, Any], source_text: str, deprecated: dict[str, Any] | None
) -> Contract:
    return Contract(
        name=value["name"],
        version=value["version"],
        input_schema=value["input_schema"],
        output_schema=value["output_schema"],
        description=value.get("description", ""),
        timeouts=timeouts_from_json(value.get("timeouts")),
        retry=retry_from_json(value.get("retry")),
        idempotent=bool(value.get("idempotent")),
        max_concurrency=value.get("max_concurrency"),
        visibility=value.get("visibility", "public"),
        sensitive=tuple(value.get("sensitive") or ()),
        deprecated=deprecation_from_json(deprecated),
        kind=value.get("kind", "task"),
        emits=Emits(**value["emits"]) if value.get("emits") else None,
        source_text=source_text,
        source_name=value.get("source_name", ""),
        migrates_from=Migration(**value["migrates_from"]) if value.get("migrates_from") else None,
    )


def version_key(version: str) -> tuple[int, int, int]:
    """Sort key of an exact MAJOR.MINOR.PATCH version."""
    parts = [*version.split("-", 1)[0].split("."), "0", "0", "0"][:3]
    try:
        return (int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return (0, 0, 0)


# ---------- rows <-> records ----------
#
# Both stores keep the same columns under the same names, so a row of either (``sqlite3.Row`` or
# psycopg's ``dict_row``: anything indexed by column name) decodes here, and each store writes
# the tuples built here with its own SQL. Booleans are Python bools: SQLite stores them as 1/0,
# PostgreSQL as ``boolean``.


class Row(Protocol):
    def __getitem__(self, column: str, /) -> Any: ...


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    """Compact JSON text, as every ``*_json`` column holds it (``contracts.jsontext``: orjson,
    ~10x the standard library's speed on a large payload, with its meaning)."""
    return jsontext.compact(value, _json_default)


_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields_of(record: Any) -> dict[str, Any]:
    """A record's fields as a shallow dict. Its payloads are JSON values already, so
    ``dataclasses.asdict``'s recursive deep copy (the biggest cost of a commit on the hot path,
    see benchmarks/) bought nothing before ``json.dumps``; a nested dataclass still serialises
    through ``_json_default``."""
    names = _FIELDS.get(type(record))
    if names is None:
        names = _FIELDS[type(record)] = tuple(f.name for f in dataclasses.fields(record))
    return {name: getattr(record, name) for name in names}


# The columns of ``runs`` a transition writes (``version`` is the store's: see ``Store.apply``).
RUN_COLUMNS = (
    "run_id",
    "workflow",
    "workflow_version",
    "team",
    "status",
    "created_ms",
    "finished_ms",
    "idempotency_key",
    "caller_team",
    "involved",
    "sampled",
    "data_json",
    "input_json",
    "output_json",
)
# The columns of ``runs`` a run's transitions change (``RUN_COLUMNS`` positions in
# ``RUN_MUTABLE_AT``). The others (its workflow and version, teams, creation time and idempotency
# key) are written once, by the insert: in SQLite an UPDATE naming an indexed column rewrites
# that index's entry even with the same value (3 of the 5 pages each run update wrote).
RUN_MUTABLE_COLUMNS = (
    "status",
    "finished_ms",
    "involved",
    "sampled",
    "data_json",
    "input_json",
    "output_json",
)
RUN_MUTABLE_AT = tuple(RUN_COLUMNS.index(name) for name in RUN_MUTABLE_COLUMNS)


_DEFAULTS: dict[type, dict[str, Any]] = {}


def _without_defaults(record: Any, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the fields that hold their dataclass default (of the same type): a stored
    record says only what differs, and decoding (``Record(**data)``) puts the defaults back. So a
    record field's default must never change: rows stored before would read differently."""
    defaults = _DEFAULTS.get(type(record))
    if defaults is None:
        defaults = {}
        for f in dataclasses.fields(record):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
        _DEFAULTS[type(record)] = defaults
    return {
        name: value
        for name, value in data.items()
        if name not in defaults or type(value) is not type(defaults[name]) or value != defaults[name]
    }


def run_to_row(run: RunRecord) -> tuple[Any, ...]:
    """The values of ``RUN_COLUMNS``, ``involved`` as the list of involved teams (each store
    stores it its own way). The record's ``version`` stays out of ``data_json``: the column is
    the truth, and a copy in the JSON would only ever be stale. Its payloads are columns of their
    own (see "Payloads" below)."""
    data = _fields_of(run)
    data["error"] = run.error.to_json() if run.error else None
    del data["version"], data["input"], data["output"]
    data = _without_defaults(run, data)
    return (
        run.run_id,
        run.workflow,
        run.workflow_version,
        run.team,
        run.status,
        run.created_ms,
        run.finished_ms,
        run.idempotency_key,
        run.caller_team,
        list(run.involved_teams),
        bool(run.sampled),
        dumps(data),
        payload_json(run, "input"),
        payload_json(run, "output"),
    )


def run_from_json(
    version: int, text: str, input_json: str | None = None, output_json: str | None = None
) -> RunRecord:
    """A run from its ``version``, ``data_json``, ``input_json`` and ``output_json`` columns.
    Without the payload columns (a read that does not need them: ``Store.get_run(payloads=False)``)
    its input and output are None, unless its row was written before they had columns."""
    data = json.loads(text)
    data["error"] = TaskFailure.from_json(data.get("error"))
    data["involved_teams"] = tuple(data.get("involved_teams") or ())
    data["version"] = version
    data.setdefault("input", None)
    run = RunRecord(**data)
    _payloads_from_columns(run, input_json, output_json)
    return run


# Payloads: a run's and a step's input and output, in columns of their own (input_json,
# output_json; schema 18 in SQLite, 14 in PostgreSQL), apart from the rest of the record.
# - A record's payloads are written with every write of its row, as its other fields are, but
#   encoded once: the record keeps the text of each payload beside it (``payload_json``), so the
#   transitions after the first (a step has three, each rewriting its row) and the wire (a task's
#   input, WatchRun) reuse it. A record read from the store keeps the text it was read from.
# - A read that needs no payloads (the span receiver's, finding a trace's run) leaves the
#   columns out and decodes only data_json: a few hundred bytes, not the payloads.
# - A NULL column: no payload (None), or a row written before the columns, whose data_json holds
#   it. The first write of such a row moves it out.
# This relies on payloads never changing in place: a transition gives a record a new value, and
# every change made to a payload for a view (redaction) is made on a copy.
_PAYLOAD_TEXTS = "_payload_texts"


def payload_json(record: RunRecord | StepRecord, name: str) -> str | None:
    """The JSON text of ``record``'s payload field ``name`` ("input" or "output"), or None for
    None: encoded the first time, then the same text while the field holds the same value."""
    value = getattr(record, name)
    if value is None:
        return None
    texts: dict[str, tuple[Any, str]] | None = record.__dict__.get(_PAYLOAD_TEXTS)
    if texts is None:
        texts = record.__dict__[_PAYLOAD_TEXTS] = {}
    else:
        known = texts.get(name)
        if known is not None and known[0] is value:
            return known[1]
    text = dumps(value)
    texts[name] = (value, text)
    return text


def _payloads_from_columns(
    record: RunRecord | StepRecord, input_json: str | None, output_json: str | None
) -> None:
    for name, text in (("input", input_json), ("output", output_json)):
        if text is not None:
            value = json.loads(text)
            setattr(record, name, value)
            record.__dict__.setdefault(_PAYLOAD_TEXTS, {})[name] = (value, text)


# Steps and attempts. Their rows' columns (run_id, step_id; attempt_id) are not repeated in their
# data_json, nor what follows from them (a step's idempotency key "<run_id>:<step_id>"), nor fields
# at their defaults. A step's retry and timeout policy is stored once per distinct policy, in the
# table ``policies``, and the step row names it (``policy_ref``): every step of a workflow has the
# same one, so its copy in every row was most of the row. Rows written before are still read.
STEP_COLUMNS = ("run_id", "step_id", "data_json", "policy_ref", "input_json", "output_json")
ATTEMPT_COLUMNS = ("attempt_id", "run_id", "step_id", "data_json")


def policy_ref(policy: dict[str, Any]) -> tuple[str, str]:
    """(key, policy_json) of a step's policy in ``policies``; ("", "") for no policy."""
    if not policy:
        return "", ""
    # A step keeps its policy object from transition to transition: its key is computed once
    # (a copy kept beside it tells a policy changed in place from the one the key is of).
    known = _policy_refs.get(id(policy))
    if known is not None and known[0] is policy and known[1] == policy:
        return known[2]
    text = json.dumps(policy, separators=(",", ":"), sort_keys=True)
    ref = hashlib.sha256(text.encode()).hexdigest()[:24], text
    if len(_policy_refs) >= _POLICY_REFS_KEPT:
        _policy_refs.clear()
    _policy_refs[id(policy)] = (policy, json.loads(text), ref)
    return ref


# policy_ref's memo: id -> (the policy, a copy of it as it was, its (key, json)).
_policy_refs: dict[int, tuple[dict[str, Any], Any, tuple[str, str]]] = {}
_POLICY_REFS_KEPT = 4096


def step_to_row(step: StepRecord) -> tuple[tuple[Any, ...], tuple[str, str]]:
    """The values of ``STEP_COLUMNS``, and the (key, policy_json) its ``policy_ref`` names."""
    data = _fields_of(step)
    data["error"] = step.error.to_json() if step.error else None
    del data["run_id"], data["step_id"], data["policy"], data["input"], data["output"]
    if step.idempotency_key == f"{step.run_id}:{step.step_id}":
        del data["idempotency_key"]
    policy = policy_ref(step.policy)
    row = (
        step.run_id,
        step.step_id,
        dumps(_without_defaults(step, data)),
        policy[0],
        payload_json(step, "input"),
        payload_json(step, "output"),
    )
    return row, policy


def step_from_row(
    run_id: str,
    step_id: str,
    text: str,
    policy_json: str | None,
    input_json: str | None = None,
    output_json: str | None = None,
) -> StepRecord:
    """A step from its row and the policy its ``policy_ref`` names (None: none, or a row written
    before policies were kept apart, whose data_json holds its own)."""
    data = json.loads(text)
    data["run_id"], data["step_id"] = run_id, step_id
    data.setdefault("idempotency_key", f"{run_id}:{step_id}")
    if policy_json:
        data["policy"] = json.loads(policy_json)
    data["error"] = TaskFailure.from_json(data.get("error"))
    step = StepRecord(**data)
    _payloads_from_columns(step, input_json, output_json)
    return step


def attempt_to_row(attempt: AttemptRecord) -> tuple[Any, ...]:
    """The values of ``ATTEMPT_COLUMNS``."""
    data = _fields_of(attempt)
    data["error"] = attempt.error.to_json() if attempt.error else None
    del data["attempt_id"], data["run_id"], data["step_id"]
    return attempt.attempt_id, attempt.run_id, attempt.step_id, dumps(_without_defaults(attempt, data))


def attempt_from_row(attempt_id: str, run_id: str, step_id: str, text: str) -> AttemptRecord:
    data = json.loads(text)
    data["attempt_id"], data["run_id"], data["step_id"] = attempt_id, run_id, step_id
    data["error"] = TaskFailure.from_json(data.get("error"))
    return AttemptRecord(**data)


def steps_and_attempts(
    steps: Iterable[Sequence[Any]], attempts: Iterable[Sequence[Any]]
) -> tuple[list[StepRecord], list[AttemptRecord]]:
    """A run's steps from (run_id, step_id, data_json, policy_json, input_json, output_json) rows
    read in step id order, and its attempts from rows of ``ATTEMPT_COLUMNS`` (sorted here: by
    step id, then number)."""
    decoded = [attempt_from_row(*row) for row in attempts]
    decoded.sort(key=lambda a: (a.step_id, a.number))
    return [step_from_row(*row) for row in steps], decoded


# audit (id is the store's)
AUDIT_COLUMNS = ("at_ms", "actor", "action", "object", "owner_team", "platform_intervention", "details_json")


def audit_to_row(audit: AuditRecord) -> tuple[Any, ...]:
    return (
        audit.at_ms,
        audit.actor,
        audit.action,
        audit.object,
        audit.owner_team,
        bool(audit.platform_intervention),
        dumps(audit.details),
    )


def audit_filter(
    team: str, since_ms: int, before_id: int, placeholder: str, *, until_ms: int = 0, action: str = ""
) -> tuple[str, list[Any]]:
    """The WHERE clause (with its leading space, or "") and arguments of ``Store.list_audit``'s
    filters, in either store's placeholder style."""
    conditions: list[str] = []
    args: list[Any] = []
    if action:
        conditions.append(f"action = {placeholder}")
        args.append(action)
    if until_ms:
        conditions.append(f"at_ms < {placeholder}")
        args.append(until_ms)
    if team:
        conditions.append(f"(owner_team = {placeholder} OR actor = {placeholder})")
        args += [team, team]
    if since_ms:
        conditions.append(f"at_ms >= {placeholder}")
        args.append(since_ms)
    if before_id:
        conditions.append(f"id < {placeholder}")
        args.append(before_id)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), args


def audit_from_row(row: Row) -> AuditRecord:
    return AuditRecord(
        id=row["id"],
        at_ms=row["at_ms"],
        actor=row["actor"],
        action=row["action"],
        object=row["object"],
        owner_team=row["owner_team"],
        platform_intervention=bool(row["platform_intervention"]),
        details=json.loads(row["details_json"]),
    )


EVENT_COLUMNS = (
    "event_id",
    "contract",
    "contract_version",
    "team",
    "payload_json",
    "published_ms",
    "triggered_json",
    "trace_context_json",
    "delivered_ms",
    "handled_ms",
    "source_run",
    "sensitive_json",
)


def event_to_row(event: EventRecord) -> tuple[Any, ...]:
    return (
        event.event_id,
        event.contract,
        event.contract_version,
        event.team,
        dumps(event.payload),
        event.published_ms,
        dumps(list(event.triggered_runs)),
        dumps(event.trace_context),
        event.delivered_ms,
        event.handled_ms,
        event.source_run,
        dumps(list(event.sensitive)),
    )


def event_from_row(row: Row) -> EventRecord:
    return EventRecord(
        event_id=row["event_id"],
        contract=row["contract"],
        contract_version=row["contract_version"],
        team=row["team"],
        payload=json.loads(row["payload_json"]),
        published_ms=row["published_ms"],
        triggered_runs=tuple(json.loads(row["triggered_json"])),
        trace_context=json.loads(row["trace_context_json"]),
        delivered_ms=row["delivered_ms"],
        handled_ms=row["handled_ms"],
        source_run=row["source_run"],
        sensitive=tuple(json.loads(row["sensitive_json"] or "[]")),
    )


def event_filter(contract: str, team: str, mark: str) -> tuple[str, list[Any]]:
    """The WHERE clause (with ``mark`` as the placeholder) and arguments of ``list_events``."""
    clauses: list[str] = []
    args: list[Any] = []
    if contract:
        clauses.append(f"contract = {mark}")
        args.append(contract)
    if team:
        clauses.append(f"team = {mark}")
        args.append(team)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


TEAM_COLUMNS = ("name", "created_ms", "retry_json", "timeouts_json")


def team_to_row(team: TeamRecord) -> tuple[Any, ...]:
    return (
        team.name,
        team.created_ms,
        dumps(retry_to_json(team.retry)),
        dumps(timeouts_to_json(team.timeouts)),
    )


def team_from_row(row: Row) -> TeamRecord:
    return TeamRecord(
        name=row["name"],
        created_ms=row["created_ms"],
        retry=retry_from_json(json.loads(row["retry_json"])),
        timeouts=timeouts_from_json(json.loads(row["timeouts_json"])),
    )


UI_SESSION_COLUMNS = ("key", "team", "admin", "sealed_token", "csrf", "created_ms", "last_seen_ms")


def ui_session_to_row(session: UiSessionRecord) -> tuple[Any, ...]:
    return (
        session.key,
        session.team,
        session.admin,
        session.sealed_token,
        session.csrf,
        session.created_ms,
        session.last_seen_ms,
    )


def ui_session_from_row(row: Row) -> UiSessionRecord:
    return UiSessionRecord(
        key=row["key"],
        team=row["team"],
        admin=bool(row["admin"]),
        sealed_token=bytes(row["sealed_token"]),
        csrf=row["csrf"],
        created_ms=int(row["created_ms"]),
        last_seen_ms=int(row["last_seen_ms"]),
    )


def team_defaults_equal(team: TeamRecord, retry: RetryPolicy, timeouts: Timeouts) -> bool:
    """Whether ``team`` already has these defaults (compared as values: a team stored without
    any holds the empty ones)."""
    return team.retry == retry_from_json(retry_to_json(retry)) and team.timeouts == timeouts_from_json(
        timeouts_to_json(timeouts)
    )


TOKEN_COLUMNS = ("team", "name", "token_hash", "created_ms", "expires_ms", "last_used_ms", "revoked_ms")


def token_to_row(token: TokenRecord) -> tuple[Any, ...]:
    return (
        token.team,
        token.name,
        token.token_hash,
        token.created_ms,
        token.expires_ms,
        token.last_used_ms,
        token.revoked_ms,
    )


def token_from_row(row: Row) -> TokenRecord:
    return TokenRecord(**{name: row[name] for name in TOKEN_COLUMNS})


# Runs that are not finished, for SQL (the statuses ``runs_active`` indexes).
ACTIVE_STATUSES_SQL = "('pending', 'running')"

# ``Store.consumers_of`` in either store (``%s``: the contract name): the newest version of each
# workflow calling it, and the older versions unfinished runs use.
CONSUMERS_SQL = (
    "SELECT w.* FROM workflows w JOIN workflow_contracts wc ON wc.workflow = w.name AND wc.version = w.version"
    " WHERE wc.contract = %s AND (w.version = (SELECT MAX(m.version) FROM workflows m WHERE m.name = w.name)"
    " OR EXISTS (SELECT 1 FROM runs r WHERE r.workflow = w.name AND r.workflow_version = w.version"
    f" AND r.status IN {ACTIVE_STATUSES_SQL}))"
    " ORDER BY w.name, w.version"
)


def pinned_like(name: str) -> str:
    """A LIKE pattern every ``data_json`` that pinned contract ``name`` matches (``"name":``, as
    ``dumps`` writes keys): a cheap filter before the JSON is parsed. Names hold no LIKE
    wildcards (lowercase letters, digits, '-' and one '/')."""
    return f'%"{name}":%'


def pinned_path(name: str) -> str:
    """SQLite's JSON path of the version of contract ``name`` a run pinned (in ``data_json``)."""
    return '$.pinned."' + name.replace('"', "") + '"'


CONTRACT_COLUMNS = (
    "name",
    "version",
    "team",
    "major",
    "vkey",
    "fields_json",
    "source_text",
    "deprecated_json",
    "registered_ms",
    "registered_by",
    "retired_ms",
)


def contract_to_row(record: ContractRecord) -> tuple[Any, ...]:
    contract = record.contract
    major, minor, patch = version_key(contract.version)
    return (
        contract.name,
        contract.version,
        contract.team,
        major,
        major * 1_000_000_000_000 + minor * 1_000_000 + patch,  # orders versions as numbers
        dumps(contract_to_json(contract)),
        contract.source_text,
        deprecation_text(contract.deprecated),
        record.registered_ms,
        record.registered_by,
        record.retired_ms,
    )


def deprecation_text(value: Deprecation | None) -> str | None:
    """The ``deprecated_json`` column: NULL when not deprecated."""
    return dumps(deprecation_to_json(value)) if value else None


def contract_from_row(row: Row) -> ContractRecord:
    contract = contract_from_json(
        json.loads(row["fields_json"]),
        row["source_text"],
        json.loads(row["deprecated_json"]) if row["deprecated_json"] else None,
    )
    return ContractRecord(contract, row["registered_ms"], row["registered_by"], int(row["retired_ms"] or 0))


WORKFLOW_COLUMNS = (
    "name",
    "version",
    "team",
    "description",
    "source_text",
    "source_name",
    "definition_json",
    "registered_ms",
    "registered_by",
    "contracts_json",
)


def workflow_to_row(record: WorkflowRecord) -> tuple[Any, ...]:
    return (
        record.name,
        record.version,
        record.team,
        record.description,
        record.source_text,
        record.source_name,
        record.definition_json,
        record.registered_ms,
        record.registered_by,
        dumps(list(record.contracts)),
    )


def workflow_from_row(row: Row) -> WorkflowRecord:
    return WorkflowRecord(
        name=row["name"],
        team=row["team"],
        version=row["version"],
        description=row["description"],
        source_text=row["source_text"],
        source_name=row["source_name"],
        definition_json=row["definition_json"],
        registered_ms=row["registered_ms"],
        registered_by=row["registered_by"],
        contracts=tuple(json.loads(row["contracts_json"])),
    )


AGENT_COLUMNS = (
    "agent_id",
    "team",
    "bindings_json",
    "concurrency",
    "hostname",
    "agent_version",
    "registered_ms",
)


def agent_to_row(agent: AgentRecord) -> tuple[Any, ...]:
    return (
        agent.agent_id,
        agent.team,
        dumps([dataclasses.asdict(b) for b in agent.bindings]),
        agent.concurrency,
        agent.hostname,
        agent.agent_version,
        agent.registered_ms,
    )


def agent_from_row(row: Row) -> AgentRecord:
    return AgentRecord(
        agent_id=row["agent_id"],
        team=row["team"],
        bindings=tuple(Binding(**b) for b in json.loads(row["bindings_json"])),
        concurrency=row["concurrency"],
        hostname=row["hostname"],
        agent_version=row["agent_version"],
        registered_ms=row["registered_ms"],
    )


SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "start_ns",
    "end_ns",
    "team",
    "service",
    "kind",
    "status",
    "status_message",
    "attributes_json",
    "events_json",
    "links_json",
    "run_id",
)


# A span as stored. What its row says already is not repeated in its attributes: the run id and
# team, and the attempt id that follows from the run, step and attempt number; nor is the name of
# a run's, step's or attempt's span, which follows from its attributes (the key "." lists which:
# "r" run id, "t" team, "a" attempt id; "R", "S", "A" the name of a run, step or attempt span).
# Keys: the coordinator's own ("accord.step_id", ...) are written as "." and a letter of
# ``_CODES``; other "accord.x" keys as ".x"; a key of its own that starts with "." gets another
# in front. An empty mapping or list is "". On SQLite the trace, span and parent span ids are
# stored as their 16 and 8 bytes rather than hex text (``binary_ids``). Rows written before, in
# plain JSON with hex ids, read the same. _CODES may grow, never change: stored rows depend on it.
_ACCORD = "accord."
_ELIDED = {"r": "accord.run_id", "t": "accord.team", "a": "accord.attempt_id"}
_CODES = {
    "s": "accord.step_id",
    "c": "accord.contract",
    "v": "accord.contract_version",
    "n": "accord.attempt",
    "g": "accord.agent_id",
    "A": "accord.attempt_status",
    "q": "accord.queue_wait_ms",
    "u": "accord.started_unix_ms",
    "S": "accord.step_status",
    "b": "accord.step_started",
    "w": "accord.workflow",
    "W": "accord.workflow_version",
    "R": "accord.run_status",
    "e": "accord.engine",
    "E": "accord.error_type",
    "k": "accord.task_id",
    "x": "accord.event_id",
}
_CODE_OF = {key: code for code, key in _CODES.items()}
_HEX = frozenset("0123456789abcdef")


def _attempt_id_of(attributes: dict[str, Any], run_id: str) -> str | None:
    if "accord.step_id" not in attributes or "accord.attempt" not in attributes:
        return None
    return f"{run_id}:{attributes['accord.step_id']}:{attributes['accord.attempt']}"


def _derived_names(attributes: dict[str, Any]) -> dict[str, str]:
    """The names the engine gives a run's ("R"), step's ("S") and attempt's ("A") span."""
    names = {}
    if "accord.workflow" in attributes:
        names["R"] = f"run {attributes['accord.workflow']}"
    if "accord.step_id" in attributes:
        names["S"] = f"step {attributes['accord.step_id']}"
    if all(k in attributes for k in ("accord.attempt", "accord.contract", "accord.contract_version")):
        names["A"] = (
            f"attempt {attributes['accord.attempt']} {attributes['accord.contract']}"
            f"@{attributes['accord.contract_version']}"
        )
    return names


def _encode_attributes(span: SpanRecord) -> tuple[str, str]:
    """(the name column, attributes_json)."""
    attributes = span.attributes
    if not attributes:
        return span.name, ""
    elided = ""
    if span.run_id and attributes.get("accord.run_id") == span.run_id:
        elided += "r"
    if span.team and attributes.get("accord.team") == span.team:
        elided += "t"
    if "accord.attempt_id" in attributes and attributes["accord.attempt_id"] == _attempt_id_of(
        attributes, span.run_id
    ):
        elided += "a"
    name = span.name
    for code, derived in _derived_names(attributes).items():
        if name == derived:
            elided, name = elided + code, ""
            break
    skipped = {_ELIDED[c] for c in elided if c in _ELIDED}
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if key in skipped:
            continue
        if key in _CODE_OF:
            out["." + _CODE_OF[key]] = value
        elif key.startswith(_ACCORD) and len(key) > len(_ACCORD) + 1 and key[len(_ACCORD)] != ".":
            out["." + key[len(_ACCORD) :]] = value
        elif key.startswith("."):
            out["." + key] = value
        else:
            out[key] = value
    if elided:
        out["."] = elided
    return name, dumps(out)


def _decode_attributes(text: str, name: str, run_id: str, team: str) -> tuple[str, dict[str, Any]]:
    if not text:
        return name, {}
    stored = json.loads(text)
    if not isinstance(stored, dict):
        return name, {}
    attributes: dict[str, Any] = {}
    elided = ""
    for key, value in stored.items():
        if key == ".":
            elided = value
        elif key.startswith(".."):
            attributes[key[1:]] = value
        elif len(key) == 2 and key[0] == "." and key[1] in _CODES:
            attributes[_CODES[key[1]]] = value
        elif key.startswith("."):
            attributes[_ACCORD + key[1:]] = value
        else:
            attributes[key] = value
    if "r" in elided:
        attributes["accord.run_id"] = run_id
    if "t" in elided:
        attributes["accord.team"] = team
    if "a" in elided:
        attributes["accord.attempt_id"] = _attempt_id_of(attributes, run_id)
    for code, derived in _derived_names(attributes).items():
        if code in elided:
            name = derived
    return name, attributes


def span_id_to_db(value: str) -> str | bytes:
    """A trace or span id in hex as SQLite stores it: its bytes (half the size), or the text as it
    is when it is not lower-case hex of 16 or 32 digits."""
    if len(value) in (16, 32) and _HEX.issuperset(value):
        return bytes.fromhex(value)
    return value


def span_id_from_db(value: str | bytes) -> str:
    return value.hex() if isinstance(value, bytes) else value


def _list_json(value: list[Any]) -> str:
    return dumps(value) if value else ""


# Spans decoded, scrubbed or encoded per turn of the event loop (here, and by the OTLP receiver,
# the span sink and the forwarder): an agent's export of hundreds of spans is worked through a
# few dozen at a time (~1 ms), so a run's next step never waits behind all of it.
SPANS_PER_TURN = 32
S = TypeVar("S")


async def in_turns(items: Sequence[S], per_turn: int = SPANS_PER_TURN) -> AsyncIterator[Sequence[S]]:
    """``items`` in slices of ``per_turn``, pausing for the event loop between them."""
    for start in range(0, len(items), per_turn):
        if start:
            await asyncio.sleep(0)
        yield items[start : start + per_turn]


async def span_rows(spans: Sequence[SpanRecord], *, binary_ids: bool = False) -> list[tuple[Any, ...]]:
    """``span_to_row`` of every span, a few dozen per turn of the event loop (``in_turns``)."""
    rows: list[tuple[Any, ...]] = []
    async for some in in_turns(spans):
        rows.extend(span_to_row(span, binary_ids=binary_ids) for span in some)
    return rows


def span_to_row(span: SpanRecord, *, binary_ids: bool = False) -> tuple[Any, ...]:
    name, attributes = _encode_attributes(span)
    ids: tuple[Any, ...] = (span.trace_id, span.span_id, span.parent_span_id)
    if binary_ids:
        ids = tuple(span_id_to_db(v) if v else v for v in ids)
    return (
        *ids,
        name,
        span.start_ns,
        span.end_ns,
        span.team,
        span.service,
        span.kind,
        span.status,
        span.status_message,
        attributes,
        _list_json(span.events),
        _list_json(span.links),
        span.run_id,
    )


def span_from_row(row: Row) -> SpanRecord:
    name, attributes = _decode_attributes(row["attributes_json"], row["name"], row["run_id"], row["team"])
    return SpanRecord(
        trace_id=span_id_from_db(row["trace_id"]),
        span_id=span_id_from_db(row["span_id"]),
        parent_span_id=span_id_from_db(row["parent_span_id"]),
        name=name,
        start_ns=row["start_ns"],
        end_ns=row["end_ns"],
        team=row["team"],
        service=row["service"],
        kind=row["kind"],
        status=row["status"],
        status_message=row["status_message"],
        attributes=attributes,
        events=json.loads(row["events_json"]) if row["events_json"] else [],
        links=json.loads(row["links_json"]) if row["links_json"] else [],
        run_id=row["run_id"],
    )


# timers and offers: read as plain tuples in these column orders
TIMER_COLUMNS = ("kind", "key", "run_id", "due_ms")
OFFER_COLUMNS = ("attempt_id", "run_id", "contract", "major", "offered_ms", "caller_team")


def timer_from_row(row: Sequence[Any]) -> TimerRecord:
    return TimerRecord(kind=row[0], key=row[1], run_id=row[2], due_ms=row[3])


def timer_order(timer: TimerRecord) -> tuple[int, str, str]:
    """The order ``Store.claim_timers`` answers in: earliest first, then by kind and key."""
    return (timer.due_ms, timer.kind, timer.key)


def offer_to_row(offer: OfferRecord) -> tuple[Any, ...]:
    return (offer.attempt_id, offer.run_id, offer.contract, offer.major, offer.offered_ms, offer.caller_team)


def offer_from_row(row: Sequence[Any]) -> OfferRecord:
    return OfferRecord(
        attempt_id=row[0], run_id=row[1], contract=row[2], major=row[3], offered_ms=row[4], caller_team=row[5]
    )


# schedules
SCHEDULE_COLUMNS = (
    "workflow",
    "schedule_id",
    "spec_json",
    "paused",
    "next_due_ms",
    "claimed_until_ms",
    "state_json",
)


def schedule_state_json(record: ScheduleRecord) -> str:
    return dumps(
        {"last_due_ms": record.last_due_ms, "last_run_id": record.last_run_id, "queued": record.queued}
    )


def schedule_to_row(record: ScheduleRecord) -> tuple[Any, ...]:
    return (
        record.workflow,
        record.schedule_id,
        dumps(record.spec),
        bool(record.paused),
        record.next_due_ms,
        record.claimed_until_ms,
        schedule_state_json(record),
    )


def schedule_from_row(row: Row) -> ScheduleRecord:
    state = json.loads(row["state_json"] or "{}")
    return ScheduleRecord(
        workflow=row["workflow"],
        schedule_id=row["schedule_id"],
        spec=json.loads(row["spec_json"]),
        paused=bool(row["paused"]),
        next_due_ms=int(row["next_due_ms"]),
        claimed_until_ms=int(row["claimed_until_ms"]),
        last_due_ms=int(state.get("last_due_ms", 0)),
        last_run_id=str(state.get("last_run_id", "")),
        queued=[int(d) for d in state.get("queued", [])],
    )


def digest_to_run(row: tuple[Any, ...]) -> RunRecord:
    """A run digest's row (run_id, workflow, workflow_version, team, status, created_ms,
    finished_ms, pinned_json) as a run without payloads."""
    run_id, workflow, version, team, status, created, finished, pinned = row
    return RunRecord(
        run_id=str(run_id),
        workflow=str(workflow),
        workflow_version=int(version),
        team=str(team),
        status=str(status),
        input=None,
        created_ms=int(created),
        trace_id="",
        span_id="",
        finished_ms=int(finished),
        pinned={str(k): str(v) for k, v in (json.loads(pinned or "{}") or {}).items()},
    )
