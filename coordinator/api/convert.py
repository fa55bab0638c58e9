"""Conversion between domain records and wire messages (the only place both meet).

Both directions where a client reads a message back into the domain form (``span_from_pb`` for
``accord runs trace`` and the UI). Cheap to import: the engine's and the registry's types are only
named in annotations, so a command line that needs one conversion does not load the engine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from contracts import jsontext
from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2 as agent_pb
from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.model import Contract, RetryPolicy, Timeouts, seconds_to_ms
from contracts.policy import PolicyFinding, Rule
from coordinator.principal import Principal
from coordinator.redaction import redact_flows, redact_paths, redact_step_input, scrub_text
from coordinator.store import codec
from coordinator.store.records import (
    ATTEMPT_TERMINAL,
    STEP_TERMINAL,
    AttemptRecord,
    AuditRecord,
    ContractRecord,
    EventRecord,
    PolicyRecord,
    RunRecord,
    ScheduleRecord,
    StepRecord,
    TaskFailure,
    TokenRecord,
    WorkflowRecord,
)
from coordinator.telemetry.visibility import SpanView

if TYPE_CHECKING:
    from coordinator.engine import Assignment, RunView
    from coordinator.registry import ConsumerImpact, Finding, Notice

RUN_STATUS = {
    "pending": pb.RUN_STATUS_PENDING,
    "running": pb.RUN_STATUS_RUNNING,
    "succeeded": pb.RUN_STATUS_SUCCEEDED,
    "failed": pb.RUN_STATUS_FAILED,
    "cancelled": pb.RUN_STATUS_CANCELLED,
}
RUN_STATUS_NAME = {v: k for k, v in RUN_STATUS.items()}
STEP_STATUS = {
    "pending": pb.STEP_STATUS_PENDING,
    "scheduled": pb.STEP_STATUS_SCHEDULED,
    "running": pb.STEP_STATUS_RUNNING,
    "succeeded": pb.STEP_STATUS_SUCCEEDED,
    "failed": pb.STEP_STATUS_FAILED,
    "skipped": pb.STEP_STATUS_SKIPPED,
    "cancelled": pb.STEP_STATUS_CANCELLED,
}
STEP_STATUS_NAME = {v: k for k, v in STEP_STATUS.items()}
ATTEMPT_STATUS = {
    "scheduled": pb.ATTEMPT_STATUS_SCHEDULED,
    "running": pb.ATTEMPT_STATUS_RUNNING,
    "succeeded": pb.ATTEMPT_STATUS_SUCCEEDED,
    "failed": pb.ATTEMPT_STATUS_FAILED,
    "timed_out": pb.ATTEMPT_STATUS_TIMED_OUT,
    "cancelled": pb.ATTEMPT_STATUS_CANCELLED,
}
ATTEMPT_STATUS_NAME = {v: k for k, v in ATTEMPT_STATUS.items()}


def dumps(value: Any) -> str:
    """Compact JSON text for the wire (``contracts.jsontext``, as the store's rows)."""
    return jsontext.compact(value)


def _payload(record: RunRecord | StepRecord, name: str, shown: Any) -> str:
    """``shown``, the record's payload ``name`` as this viewer sees it, as JSON text: the text the
    record keeps of it (``codec.payload_json``, encoded once) when nothing in it was redacted."""
    if shown is not None and shown is getattr(record, name):
        return codec.payload_json(record, name) or "null"
    return dumps(shown)


def retry_to_pb(policy: RetryPolicy) -> common_pb.RetryPolicy:
    return common_pb.RetryPolicy(
        max_attempts=policy.max_attempts or 0,
        initial_backoff_ms=seconds_to_ms(policy.initial_backoff),
        backoff_coefficient=policy.backoff_coefficient or 0.0,
        max_backoff_ms=seconds_to_ms(policy.max_backoff),
        non_retryable=list(policy.non_retryable),
    )


def retry_from_pb(message: common_pb.RetryPolicy) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=message.max_attempts or None,
        initial_backoff=message.initial_backoff_ms / 1000 if message.initial_backoff_ms else None,
        backoff_coefficient=message.backoff_coefficient or None,
        max_backoff=message.max_backoff_ms / 1000 if message.max_backoff_ms else None,
        non_retryable=tuple(message.non_retryable),
    )


def timeouts_to_pb(timeouts: Timeouts) -> common_pb.Timeouts:
    return common_pb.Timeouts(
        schedule_to_start_ms=seconds_to_ms(timeouts.schedule_to_start),
        start_to_close_ms=seconds_to_ms(timeouts.start_to_close),
        heartbeat_ms=seconds_to_ms(timeouts.heartbeat),
    )


def timeouts_from_pb(message: common_pb.Timeouts) -> Timeouts:
    return Timeouts(
        schedule_to_start=message.schedule_to_start_ms / 1000 if message.schedule_to_start_ms else None,
        start_to_close=message.start_to_close_ms / 1000 if message.start_to_close_ms else None,
        heartbeat=message.heartbeat_ms / 1000 if message.heartbeat_ms else None,
    )


def error_to_pb(error: TaskFailure | None, hide: set[str] | None = None) -> common_pb.TaskError | None:
    """``hide``: sensitive values to mask where the message or details quote them (a schema
    violation quotes the value it refuses)."""
    if error is None:
        return None
    message, details = error.message, error.details_json
    if hide:
        message = scrub_text(message, hide)
        if details:
            try:
                details = dumps(_scrub_strings(json.loads(details), hide))
            except ValueError:
                details = scrub_text(details, hide)
    return common_pb.TaskError(
        type=error.type, message=message, retryable=error.retryable, details_json=details
    )


def _scrub_strings(value: Any, hide: set[str]) -> Any:
    if isinstance(value, str):
        return scrub_text(value, hide)
    if isinstance(value, dict):
        return {k: _scrub_strings(v, hide) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_strings(v, hide) for v in value]
    return value


def run_sensitive_values(view: RunView, flows: Sequence[str]) -> set[str]:
    """The values of ``view``'s run that some view must not show: those of fields its contracts
    mark sensitive, and those where the workflow's ``flows`` take them."""
    found: set[str] = set()
    for step in view.steps:
        contract = view.contracts.get(step.contract)
        if contract is not None and contract.sensitive:
            redact_paths(step.input, "input", contract.sensitive, found)
            redact_paths(step.output, "output", contract.sensitive, found)
        redact_step_input(step.step_id, step.input, flows, found)
    redact_flows(view.run.input, "input", flows, found)
    redact_flows(view.run.output, "output", flows, found)
    return found


def error_from_pb(error: common_pb.TaskError) -> TaskFailure:
    return TaskFailure(
        type=error.type or "EngineError",
        message=error.message,
        retryable=error.retryable,
        details_json=error.details_json,
    )


# List answers never carry whole documents or payloads: a contract's or workflow's source text is
# left out (GetContract, GetWorkflow have it), and a run's input or output or an event's payload
# only when at most this long (GetRun, GetEvent have them whole). See docs/production.md
# "Limits on requests".
LISTED_PAYLOAD_MAX = 16 * 1024


def contract_to_pb(
    record: ContractRecord | Contract,
    registered_ms: int = 0,
    registered_by: str = "",
    *,
    listed: bool = False,
) -> pb.Contract:
    if isinstance(record, ContractRecord):
        contract, registered_ms, registered_by = record.contract, record.registered_ms, record.registered_by
    else:
        contract = record
    message = pb.Contract(
        name=contract.name,
        team=contract.team,
        version=contract.version,
        description=contract.description,
        input_schema_json=dumps(contract.input_schema),
        output_schema_json=dumps(contract.output_schema),
        timeouts=timeouts_to_pb(contract.timeouts),
        retry=retry_to_pb(contract.retry),
        idempotent=contract.idempotent,
        visibility=contract.visibility,
        sensitive=list(contract.sensitive),
        source_text="" if listed else contract.source_text,
        registered_unix_ms=registered_ms,
        registered_by=registered_by,
        retired_unix_ms=record.retired_ms if isinstance(record, ContractRecord) else 0,
    )
    if contract.deprecated is not None:
        message.deprecated.CopyFrom(
            pb.Deprecation(sunset=contract.deprecated.sunset, replacement=contract.deprecated.replacement)
        )
    return message


def finding_to_pb(finding: Finding) -> pb.Finding:
    return pb.Finding(pointer=finding.pointer, message=finding.message, breaking=finding.breaking)


def policy_finding_to_pb(finding: PolicyFinding) -> pb.PolicyFinding:
    return pb.PolicyFinding(
        rule=finding.rule,
        level=finding.level,
        overridable=finding.overridable,
        message=finding.message,
        detail=finding.detail,
        object=finding.object,
        file=finding.file,
        line=finding.line,
        field=finding.field,
        scope=finding.scope,
        override_reason=finding.override_reason,
    )


def policy_rule_to_pb(rule: Rule, record: PolicyRecord | None = None) -> pb.PolicyRule:
    return pb.PolicyRule(
        id=rule.id,
        applies_to=rule.applies_to,
        level=rule.level,
        overridable=rule.overridable,
        message=rule.message,
        condition_json=json.dumps(rule.condition, separators=(",", ":")),
        scope=rule.scope,
        source_name=rule.source_name,
        line=rule.line,
        applied_unix_ms=record.applied_ms if record else 0,
        applied_by=record.applied_by if record else "",
    )


def impact_to_pb(impact: ConsumerImpact) -> pb.ConsumerImpact:
    return pb.ConsumerImpact(
        workflow=impact.workflow,
        workflow_version=impact.workflow_version,
        team=impact.team,
        step=impact.step,
        field=impact.field,
        message=impact.message,
        runs_last_30_days=impact.runs,
    )


def notice_to_pb(notice: Notice) -> pb.Notice:
    return pb.Notice(
        kind=notice.kind,
        contract=notice.contract,
        sunset=notice.sunset,
        replacement=notice.replacement,
        workflow=notice.workflow,
        workflow_version=notice.workflow_version,
        step=notice.step,
        team=notice.team,
        runs_last_30_days=notice.runs,
        past_sunset=notice.past_sunset,
        message=notice.message,
    )


def workflow_to_pb(
    record: WorkflowRecord, disabled_ms: int = 0, triggers: Sequence[str] = (), *, listed: bool = False
) -> pb.Workflow:
    """``triggers``: the event contracts (team/name) of its ``triggers:``, which a list answer
    (``listed``, without the source text) still shows."""
    return pb.Workflow(
        disabled_unix_ms=disabled_ms,
        name=record.name,
        team=record.team,
        version=record.version,
        description=record.description,
        source_text="" if listed else record.source_text,
        triggers=list(triggers),
        definition_json=record.definition_json,
        registered_unix_ms=record.registered_ms,
        registered_by=record.registered_by,
    )


def _sees(principal: Principal, *teams: str) -> bool:
    return principal.admin or principal.team in teams


def _listed(text: str, listed: bool) -> str:
    return "" if listed and len(text) > LISTED_PAYLOAD_MAX else text


def run_summary_to_pb(
    run: RunRecord,
    principal: Principal,
    flows: Sequence[str] = (),
    hide: set[str] | None = None,
    *,
    listed: bool = False,
    omit_input: bool = False,
) -> pb.Run:
    """``flows``: the run's ``sensitive_flows`` (``Registry.run_flows``); what lands in the run
    output (or in the run input, from a trigger's event) is redacted for every viewer, the
    admin too: no team receives it there as its own step's input. ``listed``: for a list
    answer, which leaves out an input or output larger than ``LISTED_PAYLOAD_MAX``.
    ``omit_input``: leave the input out (a WatchRun message after the first: it never changes)."""
    visible = _sees(principal, run.team)
    run_input = None if omit_input else redact_flows(run.input, "input", flows)
    output = redact_flows(run.output, "output", flows)
    message = pb.Run(
        run_id=run.run_id,
        workflow=run.workflow,
        workflow_version=run.workflow_version,
        team=run.team,
        status=RUN_STATUS[run.status],
        input_json=_listed(_payload(run, "input", run_input), listed) if visible and not omit_input else "",
        output_json=_listed(_payload(run, "output", output), listed)
        if visible and output is not None
        else "",
        payload_hidden=not visible,
        idempotency_key=run.idempotency_key,
        created_unix_ms=run.created_ms,
        finished_unix_ms=run.finished_ms,
        trace_id=run.trace_id,
        # A call to a retired major served through an adapter shows as "1 via 2.0.0".
        pinned_versions={
            name: f"{run.adapted[name]} via {version}" if name in run.adapted else version
            for name, version in run.pinned.items()
        },
        started_by=run.started_by,
        warnings=run.warnings,
        deadline_unix_ms=run.deadline_ms,
        retry_of=run.retry_of,
        sensitive_flows=sorted(flows) if visible else [],
    )
    error = error_to_pb(run.error, hide)
    if error is not None:
        message.error.CopyFrom(error)
    return message


def attempt_to_pb(attempt: AttemptRecord, hide: set[str] | None = None) -> pb.Attempt:
    message = pb.Attempt(
        attempt_id=attempt.attempt_id,
        number=attempt.number,
        status=ATTEMPT_STATUS[attempt.status],
        agent_id=attempt.agent_id,
        scheduled_unix_ms=attempt.scheduled_ms,
        started_unix_ms=attempt.started_ms,
        finished_unix_ms=attempt.finished_ms,
    )
    error = error_to_pb(attempt.error, hide)
    if error is not None:
        message.error.CopyFrom(error)
    return message


def step_to_pb(
    view: RunView,
    step: StepRecord,
    principal: Principal,
    flows: Sequence[str] = (),
    hide: set[str] | None = None,
) -> pb.Step:
    """A step as ``principal`` sees it: its team sees its payloads whole; any other viewer (the
    workflow's owner and the admin too) sees the fields its contract marks sensitive, and what
    a sensitive value flows into (``flows``, the run's ``sensitive_flows``), as ``[redacted]``."""
    # A waiting step's input is what the teams it names answer on: they see it, and the answer.
    visible = _sees(principal, view.run.team, step.team, *step.answer_by)
    contract = view.contracts.get(step.contract)
    # The admin sees every payload's structure, but no team's sensitive values (it receives none).
    own = not principal.admin and principal.team == step.team
    sensitive = contract.sensitive if contract is not None and not own else ()
    tainted = () if own else flows
    hidden = None if own else hide  # sensitive values quoted in its errors
    message = pb.Step(
        id=step.step_id,
        contract=step.contract,
        contract_version=step.contract_version,
        team=step.team,
        status=STEP_STATUS[step.status],
        waiting_reason=view.waiting.get(step.step_id, ""),
        idempotency_key=step.idempotency_key,
        input_json=_payload(
            step,
            "input",
            redact_step_input(step.step_id, redact_paths(step.input, "input", sensitive), tainted),
        )
        if visible and step.input is not None
        else "",
        output_json=_payload(step, "output", redact_paths(step.output, "output", sensitive))
        if visible and step.output is not None
        else "",
        payload_hidden=not visible,
        attempts=[attempt_to_pb(a, hidden) for a in view.attempts.get(step.step_id, [])],
        started_unix_ms=step.started_ms,
        finished_unix_ms=step.finished_ms,
        next_attempt_unix_ms=step.next_attempt_ms,
        waiting_for=step.waiting_for,
        reused_from=step.reused_from,
    )
    error = error_to_pb(step.error, hidden)
    if error is not None:
        message.error.CopyFrom(error)
    return message


def run_to_pb(view: RunView, principal: Principal, flows: Sequence[str] = ()) -> pb.Run:
    hide = run_sensitive_values(view, flows)
    message = run_summary_to_pb(view.run, principal, flows, hide)
    message.steps.extend(step_to_pb(view, step, principal, flows, hide) for step in view.steps)
    _step_flows(message, flows)
    return message


def _step_flows(message: pb.Run, flows: Sequence[str]) -> None:
    """A viewer who does not see the run's payloads (a called team) still gets the flows into
    the steps whose payloads it sees: a client masking them (the web UI) needs them."""
    if message.payload_hidden:
        seen = {step.id.partition("[")[0] for step in message.steps if not step.payload_hidden}
        message.sensitive_flows.extend(
            flow for flow in sorted(flows) if flow.startswith("steps.") and flow.split(".")[1] in seen
        )


class WatchEncoder:
    """The WatchRun messages of one watcher, one per view of the run: the whole run each time,
    or with ``changes_only`` the whole run first and then only what changed (the steps whose
    message differs from the one last sent; the input never). A step sent finished, with every
    attempt finished, never changes again and is not converted again."""

    def __init__(self, principal: Principal, flows: Sequence[str], *, changes_only: bool) -> None:
        self._principal = principal
        self._flows = flows
        self._changes_only = changes_only
        self._first = True
        self._sent: dict[str, bytes] = {}  # step id -> its message as last sent
        self._final: set[str] = set()  # step ids sent finished for good
        # step id -> what its message was made of when last made (_fingerprint): a step whose
        # fields did not change is not converted again to be compared.
        self._prints: dict[str, tuple[Any, ...]] = {}
        self._hide: set[str] | None = None

    def encode(self, view: RunView) -> pb.WatchRunResponse:
        partial = self._changes_only and not self._first
        self._first = False
        if not partial:
            return pb.WatchRunResponse(
                run=self._remember(run_to_pb(view, self._principal, self._flows), view)
            )
        hide = run_sensitive_values(view, self._flows)
        if hide != self._hide:  # what errors must hide changed: every step is made again
            self._prints.clear()
            self._hide = hide
        message = run_summary_to_pb(view.run, self._principal, self._flows, hide, omit_input=True)
        for step in view.steps:
            if step.step_id in self._final:
                continue
            made_of = _fingerprint(view, step)
            if self._prints.get(step.step_id) == made_of:
                continue
            self._prints[step.step_id] = made_of
            encoded = step_to_pb(view, step, self._principal, self._flows, hide)
            data = encoded.SerializeToString(deterministic=True)
            if self._sent.get(step.step_id) != data:
                self._sent[step.step_id] = data
                message.steps.append(encoded)
        _step_flows(message, self._flows)
        self._remember(message, view)
        return pb.WatchRunResponse(run=message, partial=True, step_ids=[s.step_id for s in view.steps])

    def _remember(self, message: pb.Run, view: RunView) -> pb.Run:
        if self._changes_only:
            for encoded in message.steps:
                self._sent.setdefault(encoded.id, encoded.SerializeToString(deterministic=True))
            if self._hide is None:  # the whole run was sent: what its steps were made of
                self._hide = run_sensitive_values(view, self._flows)
                self._prints = {step.step_id: _fingerprint(view, step) for step in view.steps}
            for step in view.steps:
                attempts = view.attempts.get(step.step_id, ())
                if step.status in STEP_TERMINAL and all(a.status in ATTEMPT_TERMINAL for a in attempts):
                    self._final.add(step.step_id)
        return message


def _fingerprint(view: RunView, step: StepRecord) -> tuple[Any, ...]:
    """Every field ``step_to_pb`` reads that can change in a run's life (payloads and errors are
    compared by value, the same objects by identity first)."""
    return (
        step.status,
        view.waiting.get(step.step_id, ""),
        step.input,
        step.output,
        step.error,
        step.attempt_count,
        step.started_ms,
        step.finished_ms,
        step.next_attempt_ms,
        step.waiting_for,
        step.reused_from,
        step.contract_version,
        step.idempotency_key,
        tuple(
            (
                a.attempt_id,
                a.number,
                a.status,
                a.agent_id,
                a.scheduled_ms,
                a.started_ms,
                a.finished_ms,
                a.error,
            )
            for a in view.attempts.get(step.step_id, ())
        ),
    )


def task_to_pb(assignment: Assignment) -> agent_pb.Task:
    attempt, step, run = assignment.attempt, assignment.step, assignment.run
    return agent_pb.Task(
        task_id=f"{run.run_id}:{step.step_id}",
        attempt_id=attempt.attempt_id,
        attempt=attempt.number,
        run_id=run.run_id,
        step_id=step.step_id,
        workflow=run.workflow,
        contract=step.contract,
        contract_version=step.contract_version,
        input_json=_payload(step, "input", step.input),
        idempotency_key=step.idempotency_key,
        timeouts=timeouts_to_pb(assignment.timeouts),
        deadline_unix_ms=attempt.close_deadline_ms,
        trace_context=assignment.trace_context,
    )


def token_to_pb(token: TokenRecord) -> pb.TeamToken:
    """A team's token as callers see it: never the token or its hash."""
    return pb.TeamToken(
        team=token.team,
        name=token.name,
        created_unix_ms=token.created_ms,
        expires_unix_ms=token.expires_ms,
        last_used_unix_ms=token.last_used_ms,
        revoked_unix_ms=token.revoked_ms,
    )


def audit_to_pb(entry: AuditRecord) -> pb.AuditEntry:
    return pb.AuditEntry(
        id=entry.id,
        at_unix_ms=entry.at_ms,
        actor=entry.actor,
        action=entry.action,
        object=entry.object,
        owner_team=entry.owner_team,
        platform_intervention=entry.platform_intervention,
        details_json=dumps(entry.details),
    )


def event_to_pb(
    event: EventRecord, principal: Principal, sensitive: Iterable[str] = (), *, listed: bool = False
) -> pb.Event:
    """An event as ``principal`` sees it: the payload only for its team and the admin, with the
    fields that carry a sensitive value (``sensitive``: ``input.card``, those the event keeps
    and those its contract marks) as ``[redacted]`` for them too: no team receives an event as
    its own step's input (the runs it starts show their own taint). ``listed``: for a list
    answer, which leaves out a payload larger than ``LISTED_PAYLOAD_MAX`` (``payload_omitted``)."""
    payload = dumps(redact_flows(event.payload, "input", sensitive)) if _sees(principal, event.team) else ""
    shown = _listed(payload, listed)
    return pb.Event(
        event_id=event.event_id,
        contract=event.contract,
        contract_version=event.contract_version,
        team=event.team,
        payload_json=shown,
        payload_omitted=bool(payload) and not shown,
        payload_bytes=len(payload.encode()),
        published_unix_ms=event.published_ms,
        triggered_runs=list(event.triggered_runs),
        trace_context=event.trace_context,
        delivered_unix_ms=event.delivered_ms,
        handled_unix_ms=event.handled_ms,
        source_run=event.source_run,
    )


SPAN_STATUS = {"ok": pb.SPAN_STATUS_OK, "error": pb.SPAN_STATUS_ERROR}
SPAN_STATUS_NAME = {v: k for k, v in SPAN_STATUS.items()}


def span_to_pb(view: SpanView) -> pb.Span:
    """A span as its viewer may see it (``telemetry.query.scoped_run_spans``), for the wire."""
    return pb.Span(
        trace_id=view.trace_id,
        span_id=view.span_id,
        parent_span_id=view.parent_span_id,
        name=view.name,
        team=view.team,
        service=view.service,
        start_unix_nano=view.start_ns,
        end_unix_nano=view.end_ns,
        status=SPAN_STATUS.get(view.status, pb.SPAN_STATUS_UNSPECIFIED),
        status_message=view.status_message,
        attributes_json=json.dumps(dict(view.attributes), default=str) if view.attributes else "",
        redacted=view.redacted,
        kind=view.kind,
        events_json=json.dumps(list(view.events), default=str) if view.events else "",
        links_json=json.dumps(list(view.links)) if view.links else "",
    )


def span_from_pb(span: pb.Span) -> SpanView:
    """The inverse of ``span_to_pb``, for clients."""
    return SpanView(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        name=span.name,
        start_ns=span.start_unix_nano,
        end_ns=span.end_unix_nano,
        team=span.team,
        service=span.service,
        kind=span.kind or "internal",
        status=SPAN_STATUS_NAME.get(span.status, "unset"),
        status_message=span.status_message,
        attributes=json.loads(span.attributes_json) if span.attributes_json else {},
        events=tuple(json.loads(span.events_json)) if span.events_json else (),
        links=tuple(json.loads(span.links_json)) if span.links_json else (),
        redacted=span.redacted,
        owner=span.team,
    )


def schedule_to_pb(record: ScheduleRecord) -> pb.Schedule:
    spec = record.spec
    return pb.Schedule(
        workflow=record.workflow,
        id=record.schedule_id,
        cron=str(spec.get("cron", "")),
        timezone=str(spec.get("timezone", "UTC")),
        input_json=dumps(spec.get("input", {})),
        overlap=str(spec.get("overlap", "skip")),
        catch_up=str(spec.get("catch_up", "none")),
        max_catch_up=int(spec.get("max_catch_up", 10)),
        paused=record.paused,
        next_due_unix_ms=record.next_due_ms,
        last_due_unix_ms=record.last_due_ms,
        last_run_id=record.last_run_id,
        queued_unix_ms=record.queued,
    )
