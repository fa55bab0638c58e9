"""Read views of runs: what a caller sees (``RunView``) and, for a step that is not running yet,
why it waits, in words a person reads at 3 a.m. ("no agent of team payments is serving
payments/charge-card@1 (queued for 12s)"). Nothing here changes state."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.model import Contract
from coordinator.dispatch import Dispatcher, QueueKey
from coordinator.engine.state import RunState
from coordinator.store.records import (
    ATTEMPT_SCHEDULED,
    RUN_TERMINAL,
    STEP_PENDING,
    STEP_RUNNING,
    STEP_SCHEDULED,
    STEP_TERMINAL,
    AttemptRecord,
    RunRecord,
    RunSnapshot,
    StepRecord,
)


@dataclass
class RunView:
    """A run as a caller sees it (the API layer redacts payloads)."""

    run: RunRecord
    steps: list[StepRecord]
    attempts: dict[str, list[AttemptRecord]]  # step id -> its attempts, oldest first
    waiting: dict[str, str]  # step id -> why it waits
    contracts: dict[str, Contract] = field(default_factory=dict)


def state_view(
    state: RunState,
    dispatcher: Dispatcher,
    default_fan_out: int,
    now_ms: int,
    held: tuple[int, int] | None = None,
    capped: dict[str, tuple[int, int]] | None = None,
) -> RunView:
    """The view of a run whose state is at hand, with why each of its waiting steps waits.
    ``held``: the concurrency limit of the team that started the run and how many of its steps
    run now (None: no limit); ``capped``: contract -> its owner's limit and how many run now."""
    waiting = {}
    if state.record.status not in RUN_TERMINAL:
        for step in state.steps.values():
            reason = waiting_reason(state, step, dispatcher, default_fan_out, now_ms, held, capped)
            if reason:
                waiting[step.step_id] = reason
    return RunView(
        state.record,
        ordered_steps(list(state.steps.values())),
        _by_step(state.attempts.values()),
        waiting,
        state.contracts,
    )


def snapshot_view(snapshot: RunSnapshot, contracts: dict[str, Contract]) -> RunView:
    """The view of a run read from the store (a finished run: nothing waits)."""
    return RunView(snapshot.run, ordered_steps(snapshot.steps), _by_step(snapshot.attempts), {}, contracts)


def waiting_reason(
    state: RunState,
    step: StepRecord,
    dispatcher: Dispatcher,
    default_fan_out: int,
    now_ms: int,
    held: tuple[int, int] | None = None,
    capped: dict[str, tuple[int, int]] | None = None,
) -> str:
    if step.waiting_for and step.status == STEP_RUNNING:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(step.started_ms / 1000))
        until = ""
        if step.wait_deadline_ms:
            until = ", times out " + time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime(step.wait_deadline_ms / 1000)
            )
        return f"waiting for {step.waiting_for} since {since}{until}"
    if step.status == STEP_PENDING:
        if step.item_index is not None:
            spec = state.spec.steps[step.spec_id]
            limit = spec.concurrency or default_fan_out
            return f"waiting for a fan-out slot of {step.spec_id} (at most {limit} items at a time)"
        waiting_on = [
            d for d in state.deps.get(step.spec_id, []) if state.steps[d].status not in STEP_TERMINAL
        ]
        if waiting_on:
            return "waiting for step " + ", ".join(waiting_on)
        return "ready to start"
    if step.status != STEP_SCHEDULED:
        return ""
    attempt_id = state.current.get(step.step_id)
    if attempt_id is None and not step.next_attempt_ms and not step.attempt_count:
        return "validating its mapped input against the contract (a large input: in a worker process)"
    if attempt_id is None:
        seconds = max(0.0, (step.next_attempt_ms - now_ms) / 1000)
        last = step.error
        why = f" after attempt {step.attempt_count} failed ({last.type}: {last.message})" if last else ""
        return f"retrying in {seconds:.1f}s{why}"
    attempt = state.attempts[attempt_id]
    if held is not None and attempt.status == ATTEMPT_SCHEDULED and held[1] >= held[0]:
        team = state.record.caller_team
        return f"held: team {team} may run {held[0]} steps at once, {held[1]} running"
    cap = (capped or {}).get(step.contract)
    if cap is not None and attempt.status == ATTEMPT_SCHEDULED and cap[1] >= cap[0]:
        return f"held: {step.contract} allows {cap[0]} at once, {cap[1]} running"
    key: QueueKey = (attempt.contract, attempt.major)
    label = f"{step.contract}@{attempt.major}"
    agents = dispatcher.serving(key)
    queued = (now_ms - attempt.scheduled_ms) / 1000
    if not agents:
        return f"no agent of team {step.team} is serving {label} (queued for {queued:.0f}s)"
    moment = time.monotonic()
    if any(a.is_polling(moment) for a in agents):
        return f"queued for {queued:.0f}s; being handed to an agent of team {step.team}"
    noun = "agent" if len(agents) == 1 else "agents"
    verb = "is" if len(agents) == 1 else "are"
    return f"queued for {queued:.0f}s; {len(agents)} {noun} of team {step.team} serving {label} {verb} busy"


def ordered_steps(steps: list[StepRecord]) -> list[StepRecord]:
    """Steps in the order they started (not started last), items of a fan-out by index."""

    def key(step: StepRecord) -> tuple[int, str, int]:
        return (step.started_ms or 1 << 62, step.spec_id, -1 if step.item_index is None else step.item_index)

    return sorted(steps, key=key)


def _by_step(attempts: Iterable[AttemptRecord]) -> dict[str, list[AttemptRecord]]:
    by_step: dict[str, list[AttemptRecord]] = {}
    for attempt in sorted(attempts, key=lambda a: a.number):
        by_step.setdefault(attempt.step_id, []).append(attempt)
    return by_step
