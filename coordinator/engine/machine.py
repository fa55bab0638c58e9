"""The run state machine: pure functions of (run state, event) that change the state's records and
record in a ``Transition`` what the change writes and what follows from it (timers to arm or
disarm, tasks to offer or withdraw, spans to emit).

No I/O and no clock: the time is the transition's ``now``. The engine (``engine.py``) reads the
state, calls one of these, and commits the transition with compare-and-swap; if the commit loses
a race it reads the state again and calls the function anew. See docs/architecture.md, "The run
state machine".

Events: a run starts (``start``), an agent claims a task (``claim``), an attempt succeeds
(``attempt_succeeded``) or fails (``attempt_failed``), an agent gives a task back (``release``),
the caller cancels (``cancel``), a team answers a waiting step (``answer``), a timer fires
(``fire``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from contracts.durations import format_duration
from contracts.errors import AccordError, FailedPreconditionError, InvalidArgumentError, Violation
from contracts.limits import InlineBudgetSpent
from contracts.migration import adapt_input, adapt_output
from contracts.model import WAIT_APPROVAL, Contract, Migration, RetryPolicy, Timeouts, Workflow, seconds_to_ms
from contracts.refs import evaluate, evaluate_condition
from contracts.validation import validate_payload
from coordinator.checks import INLINE_BYTES, payload_size, validate_large_inline
from coordinator.engine import spans as span_builders
from coordinator.engine.policy import effective_policy, policy_from_json, policy_to_json
from coordinator.engine.state import RunState, Transition
from coordinator.store.records import (
    ATTEMPT_CANCELLED,
    ATTEMPT_FAILED,
    ATTEMPT_RUNNING,
    ATTEMPT_SCHEDULED,
    ATTEMPT_SUCCEEDED,
    ATTEMPT_TIMED_OUT,
    RUN_CANCELLED,
    RUN_FAILED,
    RUN_SUCCEEDED,
    RUN_TERMINAL,
    STEP_CANCELLED,
    STEP_FAILED,
    STEP_PENDING,
    STEP_RUNNING,
    STEP_SCHEDULED,
    STEP_SKIPPED,
    STEP_SUCCEEDED,
    STEP_TERMINAL,
    TIMER_CHECK_INPUT,
    TIMER_LEASE,
    TIMER_RETRY,
    TIMER_RUN_TIMEOUT,
    TIMER_SCHEDULE_TO_START,
    TIMER_START_TO_CLOSE,
    TIMER_WAIT,
    AttemptRecord,
    RunRecord,
    RunSnapshot,
    StepRecord,
    TaskFailure,
    TimerRecord,
)
from coordinator.telemetry.propagation import new_span_id

DONE = (STEP_SUCCEEDED, STEP_SKIPPED)


@dataclass(frozen=True)
class Limits:
    """Platform settings the machine needs."""

    default_fan_out: int = 16


def retry_key(run_id: str, step_id: str) -> str:
    return f"{run_id}/{step_id}"


# ================= a run starts =================


def new_run(
    run: RunRecord,
    spec: Workflow,
    contracts: dict[str, Contract],
    team_defaults: dict[str, tuple[RetryPolicy, Timeouts]],
    new_span_id: Any = new_span_id,
) -> RunState:
    """The state of a run about to start: one pending step per workflow step, each with the
    retry and timeout policy resolved now (it stays stable for the run's life)."""
    state = RunState(run, spec, contracts, spec.dependencies())
    for step_spec in spec.steps.values():
        if step_spec.wait is not None:
            state.steps[step_spec.id] = StepRecord(
                run_id=run.run_id,
                step_id=step_spec.id,
                spec_id=step_spec.id,
                contract="",
                contract_version="",
                team=run.team,
                status=STEP_PENDING,
                idempotency_key=f"{run.run_id}:{step_spec.id}",
                span_id=new_span_id(),
                waiting_for=step_spec.wait.describe(),
                answer_by=list(step_spec.wait.by),
            )
            continue
        contract = contracts[step_spec.contract]
        defaults = team_defaults.get(contract.team, _NO_DEFAULTS)
        state.steps[step_spec.id] = StepRecord(
            run_id=run.run_id,
            step_id=step_spec.id,
            spec_id=step_spec.id,
            contract=contract.name,
            contract_version=contract.version,
            team=contract.team,
            status=STEP_PENDING,
            idempotency_key=f"{run.run_id}:{step_spec.id}",
            span_id=new_span_id(),
            policy=_step_policy(step_spec, contract, defaults),
        )
    return state


_NO_DEFAULTS = (RetryPolicy(), Timeouts())
# (id of a step's spec, contract name and version, the team's defaults) -> (that spec, the step's
# policy as JSON): every run of a workflow version resolves the same policy for each step, and
# the one dict, shared by the steps of every run (never changed in place), is also what the
# store's policy key is computed once for (codec.policy_ref).
_POLICIES: dict[tuple[Any, ...], tuple[Any, dict[str, Any]]] = {}
_POLICIES_KEPT = 4096


def _step_policy(
    step_spec: Any, contract: Contract, defaults: tuple[RetryPolicy, Timeouts]
) -> dict[str, Any]:
    key = (id(step_spec), contract.name, contract.version, defaults)
    known = _POLICIES.get(key)
    if known is not None and known[0] is step_spec:
        return known[1]
    policy = policy_to_json(*effective_policy(step_spec, contract, *defaults))
    if len(_POLICIES) >= _POLICIES_KEPT:
        _POLICIES.clear()
    _POLICIES[key] = (step_spec, policy)
    return policy


def start(state: RunState, tr: Transition, limits: Limits) -> None:
    """The run's first transition: write it and its steps, arm its timeout, start every step
    that can start."""
    tr.touch(state.record)
    if state.spec.timeout:
        run = state.record
        run.deadline_ms = tr.now + seconds_to_ms(state.spec.timeout)
        tr.arm(TIMER_RUN_TIMEOUT, run.run_id, run.run_id, run.deadline_ms)
    for step in state.steps.values():
        tr.step(step)
    advance(state, tr, limits)


# ================= a retry =================


def reusable_steps(spec: Workflow, steps: list[StepRecord], from_step: str = "") -> dict[str, StepRecord]:
    """The steps of a finished run whose recorded outputs a retry reuses (workflow step id ->
    its record): every step that succeeded or was skipped and is neither ``from_step`` nor
    downstream of it; without ``from_step``, nor downstream of a step that did not succeed (the
    first failed step, and what was left unfinished). Raises for an unknown ``from_step``, or
    when there is nothing to run again."""
    records = {s.step_id: s for s in steps if s.item_index is None}
    if from_step and from_step not in spec.steps:
        raise InvalidArgumentError(
            f"--from {from_step}: the workflow has no such step; its steps are: {', '.join(spec.steps)}"
        )
    if from_step:
        again = {from_step}
    else:
        again = {sid for sid in spec.steps if sid not in records or records[sid].status not in DONE}
        if not again:
            raise FailedPreconditionError(
                "every step of the run succeeded: there is nothing to retry; name a step with "
                "--from STEP, or start it anew with accord runs rerun"
            )
    readers: dict[str, list[str]] = {}
    for reader, reads in spec.dependencies().items():
        for upstream in reads:
            readers.setdefault(upstream, []).append(reader)
    todo = list(again)
    while todo:
        for reader in readers.get(todo.pop(), []):
            if reader not in again:
                again.add(reader)
                todo.append(reader)
    return {
        sid: records[sid]
        for sid in spec.steps
        if sid not in again and sid in records and records[sid].status in DONE
    }


def reuse(state: RunState, original_run_id: str, reused: dict[str, StepRecord], tr: Transition) -> None:
    """Before ``start``: the reused steps of a retried run are done already, with the outputs
    (or skips) recorded by ``original_run_id``, and say so (``reused_from``, in their spans too)."""
    for step_id, old in reused.items():
        step = state.steps[step_id]
        step.status, step.output, step.input = old.status, copy.deepcopy(old.output), copy.deepcopy(old.input)
        step.started_ms = step.finished_ms = tr.now
        step.reused_from = original_run_id
        if old.fan_out >= 0:
            step.fan_out = 0  # its items are not copied: its output is the array they made
        if state.record.sampled:
            tr.spans.append(span_builders.step_span(state.record, step, state.record.span_id))


# ================= agents =================


def claim(state: RunState, attempt: AttemptRecord, agent_id: str, tr: Transition) -> None:
    """``attempt`` (scheduled) now runs on ``agent_id``: its offer and schedule-to-start timer
    go, its start-to-close deadline and heartbeat lease are armed."""
    step = state.steps[attempt.step_id]
    _, timeouts = policy_from_json(step.policy)
    now = tr.now
    attempt.status, attempt.agent_id, attempt.started_ms = ATTEMPT_RUNNING, agent_id, now
    if timeouts.start_to_close:
        attempt.close_deadline_ms = now + seconds_to_ms(timeouts.start_to_close)
        tr.arm(TIMER_START_TO_CLOSE, attempt.attempt_id, attempt.run_id, attempt.close_deadline_ms)
    if timeouts.heartbeat:
        tr.arm(TIMER_LEASE, attempt.attempt_id, attempt.run_id, now + seconds_to_ms(timeouts.heartbeat))
    if attempt.schedule_deadline_ms:
        tr.disarm(TIMER_SCHEDULE_TO_START, attempt.attempt_id)
    tr.withdraw(attempt.attempt_id)
    tr.running(attempt, state.record.caller_team)
    step.status = STEP_RUNNING
    tr.lock(state.record)
    tr.attempt(attempt)
    tr.step(step)


def release(state: RunState, attempt: AttemptRecord, error: TaskFailure, tr: Transition) -> None:
    """The agent gave the task back unfinished (it is stopping, or its poll ended before it got
    the task): a new attempt, offered at once. Not a failure: it does not count against retries."""
    _end_attempt(state, attempt, ATTEMPT_CANCELLED, error, tr)
    new_attempt(state, state.steps[attempt.step_id], tr)


def attempt_succeeded(
    state: RunState, attempt: AttemptRecord, output: Any, tr: Transition, limits: Limits
) -> None:
    """The attempt's output (already checked against the contract) completes its step. A step
    served through a migration adapter gets the output mapped back to the major it called."""
    step = state.steps[attempt.step_id]
    migration = _migration_of(state, step)
    if migration is not None:
        try:
            output = adapt_output(migration, output)
        except AccordError as exc:
            error = TaskFailure(
                "MappingError",
                f"the migration adapter of {step.contract}@{step.contract_version} could not map its "
                f"output back to {migration.ref}: {exc}",
                False,
            )
            attempt_failed(state, attempt, ATTEMPT_FAILED, error, tr)
            return
    _end_attempt(state, attempt, ATTEMPT_SUCCEEDED, None, tr)
    step.output, step.error = output, None
    _finish_step(state, step, STEP_SUCCEEDED, tr)
    advance(state, tr, limits)


def attempt_failed(
    state: RunState, attempt: AttemptRecord, status: str, error: TaskFailure, tr: Transition
) -> None:
    """Retry the step (at once, or after its backoff) while its policy allows; else it fails,
    and with it the run."""
    # Everything that could raise comes before the first change: a transition never raises
    # half way, so the run can always move on (docs/architecture.md, "The run state machine").
    step = state.steps[attempt.step_id]
    retry, _ = policy_from_json(step.policy)
    retryable = error.retryable and error.type not in retry.non_retryable
    again = retryable and step.attempt_count < (retry.max_attempts or 1)
    delay_ms = seconds_to_ms(retry.backoff(step.attempt_count)) if again else 0
    _end_attempt(state, attempt, status, error, tr)
    step.error = error
    if again:
        if delay_ms <= 0:
            new_attempt(state, step, tr)
        else:
            step.status = STEP_SCHEDULED
            step.next_attempt_ms = tr.now + delay_ms
            tr.step(step)
            tr.arm(TIMER_RETRY, retry_key(step.run_id, step.step_id), step.run_id, step.next_attempt_ms)
        return
    if not retryable:
        why = "not retryable"
    else:
        why = f"gave up after {step.attempt_count} attempt{'s' if step.attempt_count != 1 else ''}"
    _finish_step(state, step, STEP_FAILED, tr)
    failure = TaskFailure(
        error.type,
        f"step {step.step_id} ({step.contract}@{step.contract_version}) failed, {why}: {error.message}",
        False,
        error.details_json,
    )
    if step.item_index is not None:
        parent = state.steps[step.spec_id]
        parent.error = failure
        _finish_step(state, parent, STEP_FAILED, tr)
    _finish_run(state, RUN_FAILED, failure, None, tr)


def output_violation(contract: Contract, output: Any) -> TaskFailure | None:
    """The non-retryable failure of an output that does not match its contract, if it does not."""
    return output_failure(contract, validate_payload(contract.output_schema, output, "output"))


def output_failure(contract: Contract, violations: list[Violation]) -> TaskFailure | None:
    """``output_violation`` of an output already validated: its ``violations``."""
    if not violations:
        return None
    return TaskFailure(
        "ContractViolation",
        f"the output of {contract.ref} does not match its schema: " + "; ".join(str(v) for v in violations),
        False,
    )


# ================= the caller =================


def answer(state: RunState, step_id: str, output: Any, tr: Transition, limits: Limits) -> None:
    """A waiting step is answered (approved, rejected, or signalled with ``output``, checked by
    the caller): it succeeds with that output and the run goes on."""
    step = state.steps[step_id]
    step.output, step.error = output, None
    _finish_step(state, step, STEP_SUCCEEDED, tr)
    tr.lock(state.record)
    advance(state, tr, limits)


def approval_output(approved: bool, by: str, comment: str) -> dict[str, Any]:
    """What an approval step outputs (``contracts.model.APPROVAL_OUTPUT_SCHEMA``)."""
    return {"approved": approved, "by": by, "comment": comment}


def cancel(state: RunState, actor: str, reason: str, tr: Transition) -> None:
    run = state.record
    run.cancel_requested, run.cancel_reason = True, reason
    message = f"cancelled by {actor}" + (f": {reason}" if reason else "")
    _finish_run(state, RUN_CANCELLED, TaskFailure("Cancelled", message, False), None, tr)


def abandon(snapshot: RunSnapshot, error: TaskFailure, tr: Transition) -> None:
    """End a run that cannot go on (its workflow version or a pinned contract is gone): without a
    workflow to drive it, it fails with ``error`` and everything unfinished in it is cancelled,
    its timers and offers with it."""
    run = snapshot.run
    for attempt in snapshot.attempts:
        if attempt.status in (ATTEMPT_SCHEDULED, ATTEMPT_RUNNING):
            tr.withdraw(attempt.attempt_id)
            if attempt.status == ATTEMPT_RUNNING:
                tr.stopped(attempt.attempt_id)
            for kind in (TIMER_SCHEDULE_TO_START, TIMER_START_TO_CLOSE, TIMER_LEASE):
                tr.disarm(kind, attempt.attempt_id)
            attempt.status, attempt.finished_ms = ATTEMPT_CANCELLED, tr.now
            tr.attempt(attempt)
    for step in snapshot.steps:
        if step.status not in STEP_TERMINAL:
            tr.disarm(TIMER_RETRY, retry_key(step.run_id, step.step_id))
            if step.wait_deadline_ms:
                tr.disarm(TIMER_WAIT, retry_key(step.run_id, step.step_id))
            step.status, step.finished_ms, step.next_attempt_ms, step.wait_deadline_ms = (
                STEP_CANCELLED,
                tr.now,
                0,
                0,
            )
            tr.step(step)
    if run.deadline_ms:
        tr.disarm(TIMER_RUN_TIMEOUT, run.run_id)
    run.status, run.error, run.finished_ms = RUN_FAILED, error, tr.now
    tr.touch(run)
    tr.finished = True


# ================= timers =================


def fire(state: RunState, timer: TimerRecord, tr: Transition, limits: Limits) -> None:
    """Act on a due timer; the transition consumes it whatever it finds (a timer whose attempt or
    step has moved on since it was armed does nothing). A ``check_input`` timer is fired with
    its verdict through ``input_checked``."""
    if timer.kind == TIMER_CHECK_INPUT:
        raise ValueError("a check_input timer is fired through input_checked, with its verdict")
    tr.fired(timer)
    tr.lock(state.record)
    if state.record.status in RUN_TERMINAL:
        return
    now = tr.now
    if timer.kind == TIMER_RUN_TIMEOUT:
        run = state.record
        if run.deadline_ms and run.deadline_ms <= now:
            limit = format_duration(state.spec.timeout or (run.deadline_ms - run.created_ms) / 1000)
            error = TaskFailure(
                "RunTimeout",
                f"the run did not finish within its timeout of {limit}; in-flight tasks were cancelled",
                False,
            )
            _finish_run(state, RUN_FAILED, error, None, tr)
        return
    if timer.kind == TIMER_WAIT:
        _wait_timed_out(state, timer.key.split("/", 1)[1], tr, limits)
        return
    if timer.kind == TIMER_RETRY:
        step_id = timer.key.split("/", 1)[1]
        step = state.steps.get(step_id)
        if (
            step is not None
            and step.status == STEP_SCHEDULED
            and step_id not in state.current
            and step.next_attempt_ms
        ):
            new_attempt(state, step, tr)
        return
    attempt = state.attempts.get(timer.key)
    if attempt is None or state.current.get(attempt.step_id) != attempt.attempt_id:
        return
    step = state.steps[attempt.step_id]
    _, timeouts = policy_from_json(step.policy)
    if timer.kind == TIMER_SCHEDULE_TO_START and attempt.status == ATTEMPT_SCHEDULED:
        error = TaskFailure(
            "ScheduleToStartTimeout",
            f"no agent of team {step.team} picked up {step.contract}@{attempt.major} within "
            f"{timeouts.schedule_to_start:g}s",
            False,
        )
        attempt_failed(state, attempt, ATTEMPT_TIMED_OUT, error, tr)
    elif timer.kind == TIMER_START_TO_CLOSE and attempt.status == ATTEMPT_RUNNING:
        if attempt.close_deadline_ms and attempt.close_deadline_ms <= now:
            error = TaskFailure(
                "StartToCloseTimeout",
                f"attempt {attempt.number} on agent {attempt.agent_id} did not finish within "
                f"{timeouts.start_to_close:g}s",
                True,
            )
            attempt_failed(state, attempt, ATTEMPT_TIMED_OUT, error, tr)
    elif timer.kind == TIMER_LEASE and attempt.status == ATTEMPT_RUNNING:
        error = TaskFailure(
            "HeartbeatTimeout",
            f"agent {attempt.agent_id} sent no heartbeat for attempt {attempt.number} within "
            f"{timeouts.heartbeat:g}s",
            True,
        )
        attempt_failed(state, attempt, ATTEMPT_TIMED_OUT, error, tr)


def _wait_timed_out(state: RunState, step_id: str, tr: Transition, limits: Limits) -> None:
    """A waiting step's timeout: its ``on_timeout`` decides (approve, reject, or fail)."""
    step = state.steps.get(step_id)
    spec = state.spec.steps.get(step_id)
    if step is None or spec is None or spec.wait is None or step.status != STEP_RUNNING:
        return
    if not step.wait_deadline_ms or step.wait_deadline_ms > tr.now:
        return
    wait = spec.wait
    waited = format_duration(wait.timeout or 0)
    step.wait_deadline_ms = 0  # consumed by this transition: nothing left to disarm
    if wait.kind == WAIT_APPROVAL and wait.on_timeout in ("approve", "reject"):
        verdict = "approved" if wait.on_timeout == "approve" else "rejected"
        comment = f"no answer within {waited}: {verdict} by its on_timeout"
        answer(state, step_id, approval_output(wait.on_timeout == "approve", "", comment), tr, limits)
        return
    error = TaskFailure("WaitTimeout", f"no {wait.describe()} within {waited}", False)
    step.error = error
    _finish_step(state, step, STEP_FAILED, tr)
    _finish_run(
        state, RUN_FAILED, TaskFailure(error.type, f"step {step_id}: {error.message}", False), None, tr
    )


def heartbeat_period_ms(state: RunState, attempt: AttemptRecord) -> int:
    _, timeouts = policy_from_json(state.steps[attempt.step_id].policy)
    return seconds_to_ms(timeouts.heartbeat)


# ================= steps =================


def new_attempt(state: RunState, step: StepRecord, tr: Transition) -> None:
    """Schedule the step's next attempt: offered to its contract's agents (and handed at once to
    one already waiting, by the engine's commit), with its schedule-to-start deadline."""
    contract = state.contracts[step.contract]
    _, timeouts = policy_from_json(step.policy)
    now = tr.now
    step.attempt_count += 1
    attempt = AttemptRecord(
        attempt_id=f"{state.record.run_id}:{step.step_id}:{step.attempt_count}",
        run_id=state.record.run_id,
        step_id=step.step_id,
        number=step.attempt_count,
        status=ATTEMPT_SCHEDULED,
        contract=contract.name,
        major=contract.major,
        span_id=new_span_id(),
        scheduled_ms=now,
    )
    if timeouts.schedule_to_start:
        attempt.schedule_deadline_ms = now + seconds_to_ms(timeouts.schedule_to_start)
        tr.arm(TIMER_SCHEDULE_TO_START, attempt.attempt_id, attempt.run_id, attempt.schedule_deadline_ms)
    if step.next_attempt_ms:
        tr.disarm(TIMER_RETRY, retry_key(step.run_id, step.step_id))
    step.status, step.next_attempt_ms = STEP_SCHEDULED, 0
    if not step.started_ms:
        step.started_ms = now
    state.attempts[attempt.attempt_id] = attempt
    state.current[step.step_id] = attempt.attempt_id
    tr.lock(state.record)
    tr.step(step)
    tr.attempt(attempt)
    tr.offer(attempt, state.record.caller_team)


def advance(state: RunState, tr: Transition, limits: Limits) -> None:
    """Start every step whose data is there; finish fan-outs and the run when they are done."""
    run = state.record
    tr.lock(run)
    progress = True
    while progress and run.status not in RUN_TERMINAL:
        progress = False
        for spec_id, spec in state.spec.steps.items():
            if run.status in RUN_TERMINAL:
                return
            step = state.steps[spec_id]
            if step.status == STEP_PENDING and step.fan_out < 0:
                deps = [state.steps[d].status for d in state.deps.get(spec_id, [])]
                if any(s not in DONE for s in deps):
                    continue
                progress = True
                if STEP_SKIPPED in deps:
                    _finish_step(state, step, STEP_SKIPPED, tr)
                    continue
                scope = _scope(state)
                try:
                    if spec.when is not None and not evaluate_condition(spec.when, scope):
                        _finish_step(state, step, STEP_SKIPPED, tr)
                        continue
                    if spec.for_each is not None:
                        items = evaluate(spec.for_each, scope)
                        if not isinstance(items, list):
                            raise _MappingError(
                                f"for_each must evaluate to an array, got {type(items).__name__}"
                            )
                        inputs = [evaluate(spec.input, {**scope, "item": item}) for item in items]
                    else:
                        step_input = evaluate(spec.input, scope)
                except (AccordError, _MappingError) as exc:
                    _fail_mapping(state, step, TaskFailure("MappingError", str(exc), False), tr)
                    return
                if spec.for_each is None:
                    if not _start_step(state, step, step_input, tr):
                        return
                    continue
                step.fan_out, step.status, step.started_ms = len(inputs), STEP_RUNNING, tr.now
                step.input = items
                tr.step(step)
                for index, item_input in enumerate(inputs):
                    item_id = f"{spec_id}[{index}]"
                    item = StepRecord(
                        run_id=run.run_id,
                        step_id=item_id,
                        spec_id=spec_id,
                        item_index=index,
                        contract=step.contract,
                        contract_version=step.contract_version,
                        team=step.team,
                        status=STEP_PENDING,
                        idempotency_key=f"{run.run_id}:{item_id}",
                        span_id=new_span_id(),
                        input=item_input,
                        policy=step.policy,
                    )
                    state.steps[item_id] = item
                    tr.step(item)
            if step.fan_out >= 0 and step.status == STEP_RUNNING:
                items_ = [state.steps[f"{spec_id}[{i}]"] for i in range(step.fan_out)]
                active = sum(1 for i in items_ if i.status in (STEP_SCHEDULED, STEP_RUNNING))
                limit = spec.concurrency or limits.default_fan_out
                for item in items_:
                    if active >= limit:
                        break
                    if item.status == STEP_PENDING:
                        if not _start_step(state, item, item.input, tr):
                            return
                        active += 1
                if all(i.status == STEP_SUCCEEDED for i in items_):
                    step.output = [i.output for i in items_]
                    _finish_step(state, step, STEP_SUCCEEDED, tr)
                    progress = True
    if run.status in RUN_TERMINAL:
        return
    if all(state.steps[s].status in DONE for s in state.spec.steps):
        _finish_run(state, RUN_SUCCEEDED, None, _evaluate_output(state.spec.output, _scope(state)), tr)


# ================= helpers =================


class _MappingError(Exception):
    pass


def _end_attempt(
    state: RunState, attempt: AttemptRecord, status: str, error: TaskFailure | None, tr: Transition
) -> None:
    # Disarm only what this attempt armed: each disarm is a write.
    if attempt.status == ATTEMPT_SCHEDULED:
        tr.withdraw(attempt.attempt_id)
        if attempt.schedule_deadline_ms:
            tr.disarm(TIMER_SCHEDULE_TO_START, attempt.attempt_id)
    elif attempt.status == ATTEMPT_RUNNING:
        tr.stopped(attempt.attempt_id)
        if attempt.close_deadline_ms:
            tr.disarm(TIMER_START_TO_CLOSE, attempt.attempt_id)
        if heartbeat_period_ms(state, attempt):
            tr.disarm(TIMER_LEASE, attempt.attempt_id)
    attempt.status, attempt.error, attempt.finished_ms = status, error, tr.now
    tr.lock(state.record)
    tr.attempt(attempt)
    if state.current.get(attempt.step_id) == attempt.attempt_id:
        del state.current[attempt.step_id]
    if state.record.sampled:
        tr.spans.append(span_builders.attempt_span(state.record, state.steps[attempt.step_id], attempt))


def _finish_step(state: RunState, step: StepRecord, status: str, tr: Transition) -> None:
    if step.next_attempt_ms:
        tr.disarm(TIMER_RETRY, retry_key(step.run_id, step.step_id))
    if step.wait_deadline_ms:
        tr.disarm(TIMER_WAIT, retry_key(step.run_id, step.step_id))
    step.status, step.finished_ms, step.next_attempt_ms, step.wait_deadline_ms = status, tr.now, 0, 0
    if not step.started_ms:
        step.started_ms = step.finished_ms
    tr.step(step)
    parent_span = state.record.span_id
    if step.item_index is not None:
        parent_span = state.steps[step.spec_id].span_id
    if state.record.sampled:
        tr.spans.append(span_builders.step_span(state.record, step, parent_span))


def _finish_run(state: RunState, status: str, error: TaskFailure | None, output: Any, tr: Transition) -> None:
    run = state.record
    for step in list(state.steps.values()):
        attempt_id = state.current.get(step.step_id)
        if attempt_id is not None:
            _end_attempt(state, state.attempts[attempt_id], ATTEMPT_CANCELLED, None, tr)
    for step in state.steps.values():
        if step.status not in STEP_TERMINAL:
            _finish_step(state, step, STEP_CANCELLED, tr)
    if run.deadline_ms and not (error is not None and error.type == "RunTimeout"):
        tr.disarm(TIMER_RUN_TIMEOUT, run.run_id)
    run.status, run.error, run.output, run.finished_ms = status, error, output, tr.now
    tr.touch(run)
    tr.finished = True
    if run.sampled:
        span = span_builders.run_span(run)
        if run.links:
            span = dataclasses.replace(span, links=[dict(link) for link in run.links])
        tr.spans.append(span)


def _fail_mapping(state: RunState, step: StepRecord, error: TaskFailure, tr: Transition) -> None:
    """The step never reached its team: the workflow's own mapping (``input:`` / ``for_each:``)
    failed. The error says so and names the workflow's team, not the contract's (whose team did
    nothing wrong); ``details`` carry it for the UI (docs/ui.md, "Reading a trace")."""
    run = state.record
    spec = state.spec.steps.get(step.spec_id or step.step_id)
    field = (
        "for_each" if spec is not None and spec.for_each is not None and step.item_index is None else "input"
    )
    mapping = f"steps.{step.spec_id or step.step_id}.{field}"
    details = {"failed_in": "mapping", "team": run.team, "workflow": run.workflow, "mapping": mapping}
    error = TaskFailure(
        error.type,
        f"{error.message} (in the mapping {mapping} of workflow {run.workflow}, team {run.team})",
        False,
        json.dumps(details),
    )
    step.error = error
    _finish_step(state, step, STEP_FAILED, tr)
    _finish_run(
        state,
        RUN_FAILED,
        TaskFailure(error.type, f"step {step.step_id}: {error.message}", False, error.details_json),
        None,
        tr,
    )


def _scope(state: RunState) -> dict[str, Any]:
    steps = {
        spec_id: {"output": state.steps[spec_id].output}
        for spec_id in state.spec.steps
        if state.steps[spec_id].status in DONE
    }
    return {"input": state.record.input, "steps": steps}


def _start_step(state: RunState, step: StepRecord, step_input: Any, tr: Transition) -> bool:
    """Validate the mapped input and schedule the first attempt; False when the run failed. A
    waiting step starts waiting instead (its input is what the people answering it see).

    A large input is not validated here, on the event loop: the step waits (scheduled, no
    attempt) for a ``check_input`` timer due at once, which the engine fires after validating the
    input in a worker process within the check budget (``input_checked``). So does a small one
    whose validation runs over the transition's inline budget (``contracts.limits``)."""
    wait = state.spec.steps[step.spec_id].wait
    if wait is not None:
        step.input, step.status, step.started_ms = step_input, STEP_RUNNING, tr.now
        if wait.timeout:
            step.wait_deadline_ms = tr.now + seconds_to_ms(wait.timeout)
            tr.arm(TIMER_WAIT, retry_key(step.run_id, step.step_id), step.run_id, step.wait_deadline_ms)
        tr.lock(state.record)
        tr.step(step)
        return True
    contract = state.contracts[step.contract]
    migration = _migration_of(state, step)
    if migration is not None:
        # A call to a retired major, served by this newer version: its input in the new shape.
        try:
            step_input = adapt_input(migration, step_input)
        except AccordError as exc:
            step.input = step_input
            error = TaskFailure(
                "MappingError",
                f"the migration adapter of {contract.ref} could not map the input of {migration.ref}: {exc}",
                False,
            )
            _fail_mapping(state, step, error, tr)
            return False
    step.input = step_input
    violations: list[Violation] | None = None
    size = payload_size(step_input)
    if size <= INLINE_BYTES:
        try:
            violations = validate_payload(contract.input_schema, step_input, "input")
        except InlineBudgetSpent:
            violations = None  # a costly schema: validated in a worker, as a large input is
    else:  # here too when that is quick (None: a worker validates it)
        violations = validate_large_inline(contract.input_schema, step_input, "input", size)
    if violations is None:
        step.status, step.next_attempt_ms = STEP_SCHEDULED, 0
        if not step.started_ms:
            step.started_ms = tr.now
        tr.step(step)
        tr.arm(TIMER_CHECK_INPUT, retry_key(step.run_id, step.step_id), step.run_id, tr.now)
        return True
    if violations:
        _fail_mapping(state, step, input_violation(contract, violations), tr)
        return False
    new_attempt(state, step, tr)
    return True


def input_violation(contract: Contract, violations: list[Violation]) -> TaskFailure:
    """The non-retryable failure of a mapped input that does not match its contract."""
    return TaskFailure(
        "ContractViolation",
        f"the mapped input does not match {contract.ref}: " + "; ".join(str(v) for v in violations),
        False,
    )


def waiting_input(state: RunState, timer: TimerRecord) -> tuple[StepRecord, Contract] | None:
    """The step a ``check_input`` timer is for and its contract, while it still waits for the
    check (None once the run ended or the step moved on)."""
    if timer.kind != TIMER_CHECK_INPUT or state.record.status in RUN_TERMINAL:
        return None
    step = state.steps.get(timer.key.split("/", 1)[1])
    if (
        step is None
        or step.status != STEP_SCHEDULED
        or step.step_id in state.current
        or step.next_attempt_ms
        or step.attempt_count
    ):
        return None
    return step, state.contracts[step.contract]


def input_checked(
    state: RunState, timer: TimerRecord, verdict: tuple[TaskFailure | None] | None, tr: Transition
) -> bool:
    """A ``check_input`` timer, fired with the verdict on the step's mapped input: ``(None,)``
    it matches its contract, the step's first attempt starts; ``(failure,)`` the step and the run
    fail. ``verdict`` None: the engine found nothing waiting (on a state this one is newer
    than): nothing changes and True asks for the check to be made."""
    waiting = waiting_input(state, timer)
    if waiting is not None and verdict is None:
        return True
    tr.fired(timer)
    tr.lock(state.record)
    if waiting is None or verdict is None:
        return False
    step, _ = waiting
    if verdict[0] is not None:
        _fail_mapping(state, step, verdict[0], tr)
    else:
        new_attempt(state, step, tr)
    return False


def _migration_of(state: RunState, step: StepRecord) -> Migration | None:
    """The adapter serving this step, when it calls a retired major (``RunRecord.adapted``)."""
    if step.contract not in state.record.adapted:
        return None
    return state.contracts[step.contract].migrates_from


def _evaluate_output(template: Any, scope: dict[str, Any]) -> Any:
    if template is None:
        return {}
    try:
        return evaluate(template, scope)
    except AccordError:
        if isinstance(template, dict):
            result = {}
            for key, value in template.items():
                try:
                    result[key] = evaluate(value, scope)
                except AccordError:
                    result[key] = None  # e.g. the output of a skipped step
            return result
        return None
