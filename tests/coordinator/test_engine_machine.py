"""The run state machine's transitions, without processes or a store: each test builds a run's
state, applies one event, and checks the records and what the transition writes (timers armed
and disarmed, offers, the run's compare-and-swap)."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.loader import parse_contract_text, parse_workflow_text
from contracts.model import Contract
from coordinator.engine import machine
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
    RUN_RUNNING,
    RUN_SUCCEEDED,
    STEP_FAILED,
    STEP_PENDING,
    STEP_RUNNING,
    STEP_SCHEDULED,
    STEP_SKIPPED,
    STEP_SUCCEEDED,
    TIMER_CHECK_INPUT,
    TIMER_LEASE,
    TIMER_RETRY,
    TIMER_SCHEDULE_TO_START,
    TIMER_START_TO_CLOSE,
    RunRecord,
    TaskFailure,
    TimerRecord,
)
from tests.support.scenario import contract

LIMITS = machine.Limits()
T0 = 1_000_000


def _contract(name: str, extra: str = "") -> Contract:
    return parse_contract_text(contract(name, extra=extra), f"{name}.yaml")


CHARGE = _contract(
    "payments/charge",
    "timeout: 30s\nretry: {max_attempts: 3, initial_backoff: 2s, backoff_coefficient: 2.0, non_retryable: [Declined]}\n",
)
SHIP = _contract("shipping/ship")

CHAIN = """\
workflow: shipping/flow
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  charge:
    contract: payments/charge@^1
    input: {order_id: "${input.order_id}"}
  ship:
    contract: shipping/ship@^1
    input: {order_id: "${steps.charge.output.ref}"}
output: {ref: "${steps.ship.output.ref}"}
"""


def _state(workflow: str = CHAIN, run_input: Any = None, contracts: list[Contract] | None = None) -> RunState:
    spec = parse_workflow_text(workflow, "flow.yaml")
    by_name = {c.name: c for c in contracts or [CHARGE, SHIP]}
    run = RunRecord(
        run_id="r1",
        workflow=spec.name,
        workflow_version=1,
        team="shipping",
        status=RUN_RUNNING,
        input={"order_id": "o-1"} if run_input is None else run_input,
        created_ms=T0,
        trace_id="t" * 32,
        span_id="s" * 16,
        pinned={name: c.version for name, c in by_name.items()},
        version=0,
    )
    return machine.new_run(run, spec, by_name, {})


def _started(state: RunState | None = None) -> tuple[RunState, Transition]:
    state = state or _state()
    tr = Transition(T0, new_run=True)
    machine.start(state, tr, LIMITS)
    state.record.version = 1
    return state, tr


def _current(state: RunState, step_id: str) -> Any:
    return state.attempts[state.current[step_id]]


def test_a_start_offers_the_first_step_and_writes_the_run_as_new() -> None:
    state, tr = _started()
    assert state.steps["charge"].status == STEP_SCHEDULED
    assert state.steps["ship"].status == STEP_PENDING
    attempt = _current(state, "charge")
    assert (attempt.status, attempt.number, attempt.attempt_id) == (ATTEMPT_SCHEDULED, 1, "r1:charge:1")
    changes = tr.changes()
    assert [r.run_id for r in changes.runs] == ["r1"] and changes.expect_versions == {}
    assert [o.attempt_id for o in changes.offers_add] == ["r1:charge:1"]
    assert (changes.offers_add[0].contract, changes.offers_add[0].major) == ("payments/charge", 1)
    assert tr.offered == [attempt]
    assert {s.step_id for s in changes.steps} == {"charge", "ship"}


def test_a_claim_arms_the_deadlines_and_takes_the_offer_in_the_same_transition() -> None:
    state, _ = _started()
    attempt = _current(state, "charge")
    tr = Transition(T0 + 100)
    machine.claim(state, attempt, "agent-1", tr)
    assert (attempt.status, attempt.agent_id, attempt.started_ms) == (ATTEMPT_RUNNING, "agent-1", T0 + 100)
    assert state.steps["charge"].status == STEP_RUNNING
    changes = tr.changes()
    assert changes.expect_versions == {"r1": 1}  # compare-and-swap on the version read
    assert changes.runs == []  # the run's record itself did not change: not written again
    timers = {(t.kind, t.key): t.due_ms for t in changes.timers_set}
    assert timers == {
        (TIMER_START_TO_CLOSE, "r1:charge:1"): T0 + 100 + 30_000,
        (TIMER_LEASE, "r1:charge:1"): T0 + 100 + 30_000,  # the platform's heartbeat: 30 s
    }
    assert changes.offers_remove == ["r1:charge:1"]


def test_an_eager_claim_in_the_offering_transition_writes_no_offer() -> None:
    state = _state()
    tr = Transition(T0, new_run=True)
    machine.start(state, tr, LIMITS)
    machine.claim(state, tr.offered[0], "agent-1", tr)
    changes = tr.changes()
    assert changes.offers_add == [] and changes.offers_remove == []
    assert {t.kind for t in changes.timers_set} == {TIMER_START_TO_CLOSE, TIMER_LEASE}


def test_success_starts_the_next_step_with_the_mapped_output_and_ends_the_run() -> None:
    state, _ = _started()
    charge = _current(state, "charge")
    machine.claim(state, charge, "a", Transition(T0))
    tr = Transition(T0 + 200)
    machine.attempt_succeeded(state, charge, {"ref": "p-1"}, tr, LIMITS)
    assert charge.status == ATTEMPT_SUCCEEDED and state.steps["charge"].status == STEP_SUCCEEDED
    assert state.steps["ship"].input == {"order_id": "p-1"}
    changes = tr.changes()
    assert {(k, key) for k, key in changes.timers_clear} == {
        (TIMER_START_TO_CLOSE, "r1:charge:1"),
        (TIMER_LEASE, "r1:charge:1"),
    }
    assert [o.attempt_id for o in changes.offers_add] == ["r1:ship:1"]
    ship = _current(state, "ship")
    machine.claim(state, ship, "b", Transition(T0 + 300))
    tr = Transition(T0 + 400)
    machine.attempt_succeeded(state, ship, {"ref": "s-1"}, tr, LIMITS)
    assert state.record.status == RUN_SUCCEEDED and state.record.output == {"ref": "s-1"}
    assert tr.finished and state.current == {}
    assert [r.status for r in tr.changes().runs] == [RUN_SUCCEEDED]


def test_a_retryable_failure_arms_the_backoff_timer_and_its_firing_starts_attempt_two() -> None:
    state, _ = _started()
    first = _current(state, "charge")
    machine.claim(state, first, "a", Transition(T0))
    tr = Transition(T0 + 1_000)
    machine.attempt_failed(state, first, ATTEMPT_FAILED, TaskFailure("Timeout", "gateway timed out"), tr)
    step = state.steps["charge"]
    assert step.status == STEP_SCHEDULED and step.next_attempt_ms == T0 + 1_000 + 2_000
    assert "charge" not in state.current
    (timer,) = tr.changes().timers_set
    assert (timer.kind, timer.key, timer.due_ms) == (TIMER_RETRY, "r1/charge", T0 + 3_000)

    fire = Transition(T0 + 3_000)
    machine.fire(state, timer, fire, LIMITS)
    second = _current(state, "charge")
    assert (second.number, second.status) == (2, ATTEMPT_SCHEDULED)
    changes = fire.changes()
    assert changes.timers_fired == [timer]
    assert (TIMER_RETRY, "r1/charge") not in changes.timers_clear  # consumed, not cleared twice
    assert [o.attempt_id for o in changes.offers_add] == ["r1:charge:2"]


def test_a_non_retryable_type_fails_the_step_and_the_run_at_once() -> None:
    state, _ = _started()
    attempt = _current(state, "charge")
    machine.claim(state, attempt, "a", Transition(T0))
    tr = Transition(T0 + 10)
    machine.attempt_failed(state, attempt, ATTEMPT_FAILED, TaskFailure("Declined", "card declined"), tr)
    assert state.steps["charge"].status == STEP_FAILED
    assert state.record.status == RUN_FAILED and state.record.error is not None
    assert "not retryable: card declined" in state.record.error.message
    assert state.steps["ship"].status == "cancelled"


def test_giving_up_after_max_attempts() -> None:
    state, _ = _started()
    for number in (1, 2, 3):
        attempt = _current(state, "charge") if "charge" in state.current else None
        if attempt is None:
            timer = TimerRecord(TIMER_RETRY, "r1/charge", "r1", state.steps["charge"].next_attempt_ms)
            machine.fire(state, timer, Transition(timer.due_ms), LIMITS)
            attempt = _current(state, "charge")
        assert attempt.number == number
        machine.claim(state, attempt, "a", Transition(T0))
        machine.attempt_failed(state, attempt, ATTEMPT_FAILED, TaskFailure("Oops", "boom"), Transition(T0))
    assert state.record.status == RUN_FAILED
    assert state.record.error is not None and "gave up after 3 attempts" in state.record.error.message


def test_timers_that_find_their_attempt_moved_on_do_nothing_but_are_consumed() -> None:
    state, _ = _started()
    attempt = _current(state, "charge")
    machine.claim(state, attempt, "a", Transition(T0))
    machine.attempt_succeeded(state, attempt, {"ref": "p"}, Transition(T0 + 5), LIMITS)
    stale = TimerRecord(TIMER_LEASE, attempt.attempt_id, "r1", T0 + 30_000)
    tr = Transition(T0 + 30_000)
    machine.fire(state, stale, tr, LIMITS)
    assert attempt.status == ATTEMPT_SUCCEEDED
    changes = tr.changes()
    assert changes.timers_fired == [stale] and not changes.attempts and not changes.offers_add


@pytest.mark.parametrize(
    ("kind", "error_type", "retried"),
    [
        (TIMER_LEASE, "HeartbeatTimeout", True),
        (TIMER_START_TO_CLOSE, "StartToCloseTimeout", True),
    ],
)
def test_a_running_attempt_times_out_and_is_retried(kind: str, error_type: str, retried: bool) -> None:
    state, _ = _started()
    attempt = _current(state, "charge")
    machine.claim(state, attempt, "a", Transition(T0))
    tr = Transition(T0 + 30_000)
    machine.fire(state, TimerRecord(kind, attempt.attempt_id, "r1", T0 + 30_000), tr, LIMITS)
    assert attempt.status == ATTEMPT_TIMED_OUT and attempt.error is not None
    assert attempt.error.type == error_type
    assert state.steps["charge"].status == STEP_SCHEDULED  # waiting out the backoff
    other = TIMER_START_TO_CLOSE if kind == TIMER_LEASE else TIMER_LEASE
    assert (other, attempt.attempt_id) in tr.changes().timers_clear


def test_schedule_to_start_fails_for_good() -> None:
    charge = _contract("payments/charge", "timeouts: {schedule_to_start: 5s}\n")
    state, tr = _started(_state(contracts=[charge, SHIP]))
    attempt = _current(state, "charge")
    (timer,) = [t for t in tr.changes().timers_set if t.kind == TIMER_SCHEDULE_TO_START]
    assert timer.due_ms == T0 + 5_000
    fire = Transition(T0 + 5_000)
    machine.fire(state, timer, fire, LIMITS)
    assert attempt.status == ATTEMPT_TIMED_OUT and state.record.status == RUN_FAILED
    assert fire.changes().offers_remove == [attempt.attempt_id]


def test_release_offers_a_new_attempt_without_counting_it_as_a_failure() -> None:
    state, _ = _started()
    attempt = _current(state, "charge")
    machine.claim(state, attempt, "a", Transition(T0))
    tr = Transition(T0 + 1)
    machine.release(state, attempt, TaskFailure("Released", "agent stopping"), tr)
    assert attempt.status == ATTEMPT_CANCELLED
    assert _current(state, "charge").number == 2 and state.steps["charge"].status == STEP_SCHEDULED
    assert [o.attempt_id for o in tr.changes().offers_add] == ["r1:charge:2"]


def test_cancel_ends_the_run_its_attempts_and_their_timers() -> None:
    state, _ = _started()
    attempt = _current(state, "charge")
    machine.claim(state, attempt, "a", Transition(T0))
    tr = Transition(T0 + 1)
    machine.cancel(state, "shipping", "customer asked", tr)
    assert state.record.status == RUN_CANCELLED and state.record.cancel_requested
    assert attempt.status == ATTEMPT_CANCELLED
    assert (
        state.record.error is not None
        and state.record.error.message == "cancelled by shipping: customer asked"
    )
    assert {k for k, _ in tr.changes().timers_clear} == {TIMER_START_TO_CLOSE, TIMER_LEASE}


def test_a_mapping_that_does_not_fit_the_callee_fails_the_run_before_any_task() -> None:
    workflow = CHAIN.replace('input: {order_id: "${input.order_id}"}', "input: {order_id: 42}")
    state, tr = _started(_state(workflow=workflow))
    assert state.record.status == RUN_FAILED
    assert state.record.error is not None and state.record.error.type == "ContractViolation"
    assert tr.changes().offers_add == []


# A charge contract whose input schema asks for a format: a large input is never validated in the
# transition against it (a format check does not tick the inline budget; coordinator/checks.py).
CHARGE_FORMATTED = parse_contract_text(
    contract("payments/charge", input_props="{order_id: {type: string, format: hostname}}"), "charge.yaml"
)


def test_a_large_mapped_input_with_a_quick_schema_is_validated_in_the_transition() -> None:
    big = {"order_id": "o" * 20_000}  # over the inline size, but its schema looks at one field
    state, tr = _started(_state(run_input=big))
    assert _current(state, "charge").number == 1 and not tr.timers_set
    assert [o.attempt_id for o in tr.changes().offers_add] == ["r1:charge:1"]
    # and refused there too
    state, tr = _started(_state(run_input={"order_id": 7, "pad": "p" * 20_000}))
    assert state.record.status == RUN_FAILED and not tr.changes().offers_add
    assert state.record.error is not None and "$.order_id" in state.record.error.message


def test_a_large_mapped_input_waits_for_its_check_and_starts_or_fails_on_the_verdict() -> None:
    big = {"order_id": "o" * 20_000}  # over the inline size, and its schema asks for a format
    contracts = [CHARGE_FORMATTED, SHIP]
    state, tr = _started(_state(run_input=big, contracts=contracts))
    step = state.steps["charge"]
    assert (step.status, step.attempt_count, step.input) == (STEP_SCHEDULED, 0, big)
    assert "charge" not in state.current and tr.changes().offers_add == []
    timer = tr.timers_set[(TIMER_CHECK_INPUT, "r1/charge")]
    assert timer.due_ms == T0
    with pytest.raises(ValueError):  # fired only with a verdict
        machine.fire(state, timer, Transition(T0), LIMITS)
    # No verdict (the engine read an older state): nothing changes, the check is asked for.
    unchanged = Transition(T0 + 1)
    assert machine.input_checked(state, timer, None, unchanged) is True
    assert not unchanged
    valid = Transition(T0 + 1)
    assert machine.input_checked(state, timer, (None,), valid) is False
    assert _current(state, "charge").number == 1 and valid.timers_fired
    # Once started, the same timer (fired again after a crash) only goes away.
    again = Transition(T0 + 2)
    assert machine.input_checked(state, timer, None, again) is False
    assert again.timers_fired and not again.changes().offers_add

    state, tr = _started(_state(run_input=big, contracts=contracts))
    refused = TaskFailure("ContractViolation", "the mapped input does not match payments/charge@1.0.0", False)
    machine.input_checked(
        state, tr.timers_set[(TIMER_CHECK_INPUT, "r1/charge")], (refused,), Transition(T0 + 1)
    )
    assert state.steps["charge"].status == STEP_FAILED and state.record.status == RUN_FAILED
    assert state.record.error is not None and "does not match" in state.record.error.message


FAN_OUT = """\
workflow: shipping/fan
input: {type: object, required: [orders], properties: {orders: {type: array, items: {type: string}}}}
steps:
  charge:
    contract: payments/charge@^1
    for_each: "${input.orders}"
    concurrency: 2
    input: {order_id: "${item}"}
  ship:
    contract: shipping/ship@^1
    when: "${input.orders}"
    input: {order_id: "${steps.charge.output[0].ref}"}
"""


def test_a_fan_out_starts_at_most_its_limit_and_collects_the_outputs_in_order() -> None:
    state, tr = _started(_state(workflow=FAN_OUT, run_input={"orders": ["a", "b", "c"]}))
    parent = state.steps["charge"]
    assert parent.fan_out == 3 and parent.status == STEP_RUNNING
    assert [o.attempt_id for o in tr.changes().offers_add] == ["r1:charge[0]:1", "r1:charge[1]:1"]
    assert state.steps["charge[2]"].status == STEP_PENDING  # limit 2
    for index in (1, 0, 2):
        item = _current(state, f"charge[{index}]")
        machine.claim(state, item, "a", Transition(T0))
        machine.attempt_succeeded(state, item, {"ref": f"p-{index}"}, Transition(T0 + 1), LIMITS)
    assert parent.status == STEP_SUCCEEDED
    assert parent.output == [{"ref": "p-0"}, {"ref": "p-1"}, {"ref": "p-2"}]
    assert state.steps["ship"].input == {"order_id": "p-0"}


def test_an_empty_fan_out_succeeds_and_a_false_condition_skips_the_step() -> None:
    state, _ = _started(_state(workflow=FAN_OUT, run_input={"orders": []}))
    assert state.steps["charge"].status == STEP_SUCCEEDED and state.steps["charge"].output == []
    assert state.steps["ship"].status == STEP_SKIPPED
    assert state.record.status == RUN_SUCCEEDED


@pytest.mark.parametrize(
    "coefficient, initial, cap",
    [
        (float("nan"), 1.0, 60.0),
        (float("inf"), 1.0, None),
        (-3.0, -1.0, float("nan")),
        (1e308, 1e308, None),
        (2.0, float("inf"), float("-inf")),
    ],
)
def test_a_retryable_failure_twice_never_leaves_the_run_running_without_a_live_attempt(
    coefficient: float, initial: float, cap: float | None
) -> None:
    """Issue: a NaN backoff made the second retryable failure raise after the attempt was
    ended, and the run stayed RUNNING with no live attempt. Whatever the stored policy holds,
    each failure either schedules the next attempt (a finite timer) or fails the run."""
    state, _ = _started()
    step = state.steps["charge"]
    step.policy["retry"].update(
        {
            "backoff_coefficient": coefficient,
            "initial_backoff": initial,
            "max_backoff": cap,
            "max_attempts": 3,
        }
    )
    for number in (1, 2, 3):
        if "charge" not in state.current:
            assert step.status == STEP_SCHEDULED and 0 < step.next_attempt_ms < 2**53
            timer = TimerRecord(TIMER_RETRY, "r1/charge", "r1", step.next_attempt_ms)
            machine.fire(state, timer, Transition(timer.due_ms), LIMITS)
        attempt = _current(state, "charge")
        assert attempt.number == number
        machine.claim(state, attempt, "a", Transition(T0))
        machine.attempt_failed(state, attempt, ATTEMPT_FAILED, TaskFailure("Oops", "boom"), Transition(T0))
        assert state.record.status == RUN_FAILED or "charge" in state.current or step.next_attempt_ms
    assert state.record.status == RUN_FAILED


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 1e300])
def test_backoff_and_timeouts_are_finite_milliseconds_whatever_the_numbers(value: float) -> None:
    from contracts.model import MAX_BACKOFF_SECONDS, RetryPolicy, seconds_to_ms

    for policy in (
        RetryPolicy(backoff_coefficient=value),
        RetryPolicy(initial_backoff=value),
        RetryPolicy(max_backoff=value),
        RetryPolicy(initial_backoff=value, backoff_coefficient=value, max_backoff=value),
    ):
        for attempt in (1, 2, 50, 10_000):
            delay = policy.backoff(attempt)
            assert 0 <= delay <= MAX_BACKOFF_SECONDS
            assert 0 <= seconds_to_ms(delay) <= MAX_BACKOFF_SECONDS * 1000
    assert 0 <= seconds_to_ms(value) <= MAX_BACKOFF_SECONDS * 1000
