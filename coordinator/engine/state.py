"""A run's state as the state machine sees it, and the transition it builds.

``RunState`` is read from the store (``Store.load_run``) and may be kept as a cache between
transitions; ``Transition`` collects everything one transition changes (records, timers armed and
cleared, task offers, spans, audit), to be written in one compare-and-swap commit
(``Transition.changes``). See docs/architecture.md, "Durable state".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.model import Contract, Workflow
from coordinator.store.records import (
    ATTEMPT_TERMINAL,
    AttemptRecord,
    AuditRecord,
    Changes,
    EventRecord,
    OfferRecord,
    RunRecord,
    RunSnapshot,
    SpanRecord,
    StepRecord,
    TimerRecord,
)


@dataclass
class RunState:
    """One run with its steps and attempts, its workflow and the contract versions it pinned."""

    record: RunRecord
    spec: Workflow
    contracts: dict[str, Contract]  # contract name -> the pinned version
    deps: dict[str, list[str]]  # workflow step id -> the step ids it reads
    steps: dict[str, StepRecord] = field(default_factory=dict)
    attempts: dict[str, AttemptRecord] = field(default_factory=dict)
    current: dict[str, str] = field(default_factory=dict)  # step id -> its unfinished attempt id

    @classmethod
    def from_snapshot(
        cls, snapshot: RunSnapshot, spec: Workflow, contracts: dict[str, Contract], deps: dict[str, list[str]]
    ) -> RunState:
        state = cls(snapshot.run, spec, contracts, deps)
        for step in snapshot.steps:
            state.steps[step.step_id] = step
        for attempt in sorted(snapshot.attempts, key=lambda a: a.number):
            state.attempts[attempt.attempt_id] = attempt
            if attempt.status not in ATTEMPT_TERMINAL:
                state.current[attempt.step_id] = attempt.attempt_id
        return state


class Transition:
    """What one transition of one run changes, deduplicated by key."""

    def __init__(self, now_ms: int, *, new_run: bool = False) -> None:
        self.now = now_ms
        self.new_run = new_run  # the run itself is created by this transition
        self.run: RunRecord | None = None
        self.run_changed = False
        self.steps: dict[str, StepRecord] = {}
        self.attempts: dict[str, AttemptRecord] = {}
        self.audit: list[AuditRecord] = []
        self.requests: dict[tuple[str, str], Any] = {}
        self.timers_set: dict[tuple[str, str], TimerRecord] = {}
        self.timers_clear: set[tuple[str, str]] = set()
        self.timers_fired: dict[tuple[str, str], TimerRecord] = {}
        self.offers_add: dict[str, OfferRecord] = {}
        self.offers_remove: set[str] = set()
        self.inflight_add: dict[str, tuple[str, str, str]] = {}
        self.inflight_remove: set[str] = set()
        # Limits the commit must keep ((kind, key) -> at most that many running; Changes.inflight_caps).
        self.inflight_caps: dict[tuple[str, str], int] = {}
        # New attempts offered by this transition, in order: the candidates for an eager hand-off.
        self.offered: list[AttemptRecord] = []
        self.spans: list[SpanRecord] = []
        # Events this transition publishes (a contract's ``emits:``), stored in its commit.
        self.events: list[EventRecord] = []
        self.finished = False  # the run became terminal

    # ---------- records ----------

    def touch(self, run: RunRecord) -> None:
        """The run's record changed: it is written (compare-and-swap on its version)."""
        self.run = run
        self.run_changed = True

    def lock(self, run: RunRecord) -> None:
        """Something of the run changed (a step, an attempt, a timer): only its version is
        checked and moved on, its record is not written again."""
        self.run = run

    def step(self, step: StepRecord) -> None:
        self.steps[step.step_id] = step

    def attempt(self, attempt: AttemptRecord) -> None:
        self.attempts[attempt.attempt_id] = attempt

    # ---------- timers and offers ----------

    def arm(self, kind: str, key: str, run_id: str, due_ms: int) -> None:
        self.timers_clear.discard((kind, key))
        self.timers_set[(kind, key)] = TimerRecord(kind, key, run_id, due_ms)

    def disarm(self, kind: str, key: str) -> None:
        if self.timers_set.pop((kind, key), None) is None:
            self.timers_clear.add((kind, key))

    def fired(self, timer: TimerRecord) -> None:
        """``timer`` is consumed by this transition (deleted only if still due as it was read)."""
        self.timers_fired[(timer.kind, timer.key)] = timer

    def offer(self, attempt: AttemptRecord, caller_team: str = "") -> None:
        self.offers_add[attempt.attempt_id] = OfferRecord(
            attempt.attempt_id,
            attempt.run_id,
            attempt.contract,
            attempt.major,
            attempt.scheduled_ms,
            caller_team,
        )
        self.offered.append(attempt)

    def running(self, attempt: AttemptRecord, caller_team: str) -> None:
        """An agent runs ``attempt`` now: it counts against its run's caller team's limit."""
        self.inflight_remove.discard(attempt.attempt_id)
        self.inflight_add[attempt.attempt_id] = (attempt.attempt_id, caller_team, attempt.contract)

    def cap(self, kind: str, key: str, limit: int) -> None:
        """Commit only if no more than ``limit`` attempts run for ``key`` afterwards (a team's or
        a contract's concurrency limit, checked by the store: ``LimitReached``)."""
        self.inflight_caps[(kind, key)] = limit

    def stopped(self, attempt_id: str) -> None:
        if self.inflight_add.pop(attempt_id, None) is None:
            self.inflight_remove.add(attempt_id)

    def withdraw(self, attempt_id: str) -> None:
        if self.offers_add.pop(attempt_id, None) is None:
            self.offers_remove.add(attempt_id)

    # ---------- commit ----------

    def __bool__(self) -> bool:
        return bool(
            self.run is not None
            or self.steps
            or self.attempts
            or self.audit
            or self.requests
            or self.timers_set
            or self.timers_clear
            or self.timers_fired
            or self.offers_add
            or self.offers_remove
            or self.inflight_add
            or self.inflight_remove
        )

    def changes(self) -> Changes:
        """The store's view of this transition: the run (compare-and-swap on the version it was
        read at, unless it is new) and everything else in the same transaction."""
        fired = set(self.timers_fired)
        changes = Changes(
            steps=list(self.steps.values()),
            attempts=list(self.attempts.values()),
            audit=list(self.audit),
            events=list(self.events),
            requests=dict(self.requests),
            timers_set=[t for k, t in self.timers_set.items() if k not in fired],
            timers_clear=[k for k in self.timers_clear if k not in fired],
            timers_fired=list(self.timers_fired.values()),
            offers_add=list(self.offers_add.values()),
            offers_remove=sorted(self.offers_remove),
            inflight_add=list(self.inflight_add.values()),
            inflight_remove=sorted(self.inflight_remove),
            inflight_caps=[(kind, key, limit) for (kind, key), limit in sorted(self.inflight_caps.items())],
        )
        if self.run is not None:
            if self.run_changed or self.new_run:
                changes.runs = [self.run]
            if not self.new_run:
                changes.expect_versions = {self.run.run_id: self.run.version}
        return changes
