"""The store conformance suite: what every ``Store`` must do, written against the Protocol only.

A store's test module subclasses ``StoreConformance`` and gives it a ``store_factory`` fixture
(see ``StoreFactory``); pytest then runs every test below against that store:

    class TestSqliteStore(StoreConformance):
        @pytest.fixture
        def store_factory(self, tmp_path: Path) -> StoreFactory:
            return SqliteFactory(tmp_path / "db.sqlite")

Times are plain numbers handed to the store (``now_ms``), never the clock, so nothing here
depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import pytest

from contracts.model import Contract, Deprecation, RetryPolicy, Timeouts
from coordinator.store import codec
from coordinator.store.base import Store
from coordinator.store.records import (
    INFLIGHT_CONTRACT,
    INFLIGHT_TEAM,
    TIMER_LEASE,
    TIMER_RETRY,
    TIMER_SCHEDULE_TO_START,
    TIMER_START_TO_CLOSE,
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    Binding,
    Changes,
    ContractRecord,
    EventRecord,
    IdempotencyConflict,
    LimitReached,
    OfferRecord,
    PolicyRecord,
    RequestConflict,
    RequestMark,
    RunFilter,
    RunRecord,
    ScheduleRecord,
    SpanRecord,
    StepRecord,
    TaskFailure,
    TeamRecord,
    TimerRecord,
    TokenRecord,
    UiSessionRecord,
    VersionConflict,
    WorkflowRecord,
)
from coordinator.store.retention import Retention, purge_once

FAR = 10**12  # a now_ms after every due time used here


class StoreFactory(Protocol):
    """Stores on one fresh database per test."""

    # Whether a second Store object may have the same database open at the same time (several
    # coordinator processes on one database). SQLite: no, its lock refuses it.
    second_store_allowed: bool

    def new(self) -> Store:
        """A Store, not opened yet, on this test's database (every call: the same database)."""


def run_record(run_id: str, **fields: Any) -> RunRecord:
    values: dict[str, Any] = {
        "workflow": "payments/checkout",
        "workflow_version": 1,
        "team": "payments",
        "status": "running",
        "input": {"order_id": run_id},
        "created_ms": 1_000,
        "trace_id": "a" * 32,
        "span_id": "b" * 16,
        "caller_team": "payments",
        "involved_teams": ("payments",),
    }
    values.update(fields)
    return RunRecord(run_id=run_id, **values)


def step_record(run_id: str, step_id: str, **fields: Any) -> StepRecord:
    values: dict[str, Any] = {
        "spec_id": step_id,
        "contract": "payments/charge",
        "contract_version": "1.0.0",
        "team": "payments",
        "status": "scheduled",
        "idempotency_key": f"{run_id}:{step_id}",
        "span_id": "c" * 16,
    }
    values.update(fields)
    return StepRecord(run_id=run_id, step_id=step_id, **values)


def attempt_record(run_id: str, step_id: str, number: int = 1, **fields: Any) -> AttemptRecord:
    values: dict[str, Any] = {
        "status": "scheduled",
        "contract": "payments/charge",
        "major": 1,
        "span_id": "d" * 16,
        "scheduled_ms": 1_000,
    }
    values.update(fields)
    return AttemptRecord(
        attempt_id=f"{run_id}:{step_id}:{number}", run_id=run_id, step_id=step_id, number=number, **values
    )


def timer(kind: str, key: str, due_ms: int, run_id: str = "r1") -> TimerRecord:
    return TimerRecord(kind=kind, key=key, run_id=run_id, due_ms=due_ms)


def offer(attempt_id: str, offered_ms: int, contract: str = "payments/charge", major: int = 1) -> OfferRecord:
    return OfferRecord(
        attempt_id=attempt_id, run_id="r1", contract=contract, major=major, offered_ms=offered_ms
    )


def audit(action: str, owner_team: str = "payments", actor: str = "payments", at_ms: int = 1) -> AuditRecord:
    return AuditRecord(at_ms=at_ms, actor=actor, action=action, object=action, owner_team=owner_team)


def token(
    team: str, token_hash: str, created_ms: int, *, name: str = "default", **fields: int
) -> TokenRecord:
    return TokenRecord(team=team, name=name, token_hash=token_hash, created_ms=created_ms, **fields)


def event(event_id: str, published_ms: int, contract: str = "payments/paid") -> EventRecord:
    return EventRecord(
        event_id=event_id,
        contract=contract,
        contract_version="1.0.0",
        team="payments",
        payload={"id": event_id},
        published_ms=published_ms,
    )


def contract_record(name: str, version: str, **fields: Any) -> ContractRecord:
    values: dict[str, Any] = {
        "input_schema": {"type": "object", "properties": {"id": {"type": "string"}}},
        "output_schema": {"type": "object"},
        "source_text": f"contract: {name}@{version}\n",
        "source_name": "contract.yaml",
    }
    values.update(fields)
    return ContractRecord(Contract(name=name, version=version, **values), 1_000, name.split("/")[0])


def workflow_record(
    name: str, version: int, contracts: tuple[str, ...] = (), **fields: Any
) -> WorkflowRecord:
    values: dict[str, Any] = {
        "team": name.split("/")[0],
        "description": "",
        "source_text": f"workflow: {name}\n",
        "source_name": "workflow.yaml",
        "definition_json": '{"steps":{}}',
        "registered_ms": 1_000,
        "registered_by": name.split("/")[0],
    }
    values.update(fields)
    return WorkflowRecord(name=name, version=version, contracts=contracts, **values)


def ui_session(key: str, seen_ms: int, created_ms: int = 0, **fields: Any) -> UiSessionRecord:
    values: dict[str, Any] = {
        "team": "payments",
        "admin": False,
        "sealed_token": b"sealed-" + key.encode(),
        "csrf": f"csrf-{key}",
        "created_ms": created_ms or seen_ms,
        "last_seen_ms": seen_ms,
    }
    values.update(fields)
    return UiSessionRecord(key=key, **values)


async def ui_sessions_kept(store: Store, keys: list[str]) -> list[str]:
    """Which of ``keys`` are still stored."""
    return [key for key in keys if await store.get_ui_session(key) is not None]


async def all_timers(store: Store) -> list[TimerRecord]:
    """Every timer, by claiming them all (claims that run out at once, so nothing stays hidden)."""
    return await store.claim_timers(FAR, 10_000, 0)


# ---------- rows written before payloads had columns of their own ----------

# A run and a step as a store before payload columns (SQLite schema 18, PostgreSQL 14) held them.
OLD_PAYLOAD_RUN = run_record("r1", input={"order": [1, 2.5, None]}, output={"ok": True}, status="running")
OLD_PAYLOAD_STEP = step_record("r1", "charge", input={"amount": 3}, output="paid", status="succeeded")


def rows_before_payload_columns() -> tuple[tuple[str, ...], tuple[Any, ...], str]:
    """(the runs columns then, OLD_PAYLOAD_RUN's values for them, OLD_PAYLOAD_STEP's data_json):
    the payloads in data_json, as the codec wrote them then (involved as the list of teams)."""
    run, step = OLD_PAYLOAD_RUN, OLD_PAYLOAD_STEP
    data_at = codec.RUN_COLUMNS.index("data_json")
    row = codec.run_to_row(run)
    run_data = {**json.loads(row[data_at]), "input": run.input, "output": run.output}
    step_row, _ = codec.step_to_row(step)
    step_data = {**json.loads(step_row[2]), "input": step.input, "output": step.output}
    return codec.RUN_COLUMNS[: data_at + 1], (*row[:data_at], json.dumps(run_data)), json.dumps(step_data)


async def read_and_move_old_payloads(store: Store) -> None:
    """A store holding ``rows_before_payload_columns`` (at run version 4) reads them with their
    payloads, also without the payload columns, and its next write of each moves them out."""
    run, step = OLD_PAYLOAD_RUN, OLD_PAYLOAD_STEP
    assert await store.get_run("r1") == dataclasses.replace(run, version=4)
    assert await store.get_run("r1", payloads=False) == dataclasses.replace(run, version=4)
    assert await store.run_steps("r1") == ([step], [])
    ended = dataclasses.replace(run, version=4, status="succeeded")
    await store.apply(Changes(runs=[ended], steps=[step], expect_versions={"r1": 4}))
    assert await store.get_run("r1") == dataclasses.replace(ended, version=5)
    assert await store.run_steps("r1") == ([step], [])


def assert_payloads_moved_out(run_row: tuple[str, str], step_row: tuple[str, str]) -> None:
    """(data_json, input_json) of the run and (data_json, output_json) of the step, as stored."""
    assert "input" not in json.loads(run_row[0]) and json.loads(run_row[1]) == OLD_PAYLOAD_RUN.input
    assert "output" not in json.loads(step_row[0]) and json.loads(step_row[1]) == OLD_PAYLOAD_STEP.output


class StoreConformance:
    """Every test a Store implementation must pass. Subclasses provide ``store_factory``."""

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> AsyncIterator[Store]:
        store = store_factory.new()
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    # ---------- runs: compare-and-swap ----------

    async def test_a_new_run_is_stored_at_version_1_and_each_update_moves_it_on(self, store: Store) -> None:
        run = run_record("r1", idempotency_key="k1")
        await store.apply(Changes(runs=[run]))
        stored = await store.get_run("r1")
        assert stored is not None and stored.version == 1
        assert stored == dataclasses.replace(run, version=1)

        update = dataclasses.replace(stored, status="succeeded", output={"ok": True}, finished_ms=2_000)
        await store.apply(Changes(runs=[update], expect_versions={"r1": 1}))
        await store.apply(Changes(runs=[dataclasses.replace(update, version=2)], expect_versions={"r1": 2}))
        stored = await store.get_run("r1")
        assert stored == dataclasses.replace(update, version=3)
        # Every read path carries the version.
        snapshot = await store.load_run("r1")
        assert snapshot is not None and snapshot.run.version == 3
        found = await store.find_run("payments/checkout", "payments", "k1")
        assert found is not None and found.version == 3
        assert [r.version for r in await store.list_runs(RunFilter())] == [3]

    async def test_apply_leaves_the_records_it_is_given_unchanged(self, store: Store) -> None:
        changes = Changes(
            runs=[
                run_record("r1", error=TaskFailure("E", "boom"), links=[{"trace_id": "t", "span_id": "s"}])
            ],
            steps=[step_record("r1", "charge", policy={"timeouts": {"heartbeat": 5}})],
            attempts=[attempt_record("r1", "charge")],
            timers_set=[timer(TIMER_SCHEDULE_TO_START, "r1:charge:1", 5_000)],
            offers_add=[offer("r1:charge:1", 1_000)],
        )
        before = copy.deepcopy(changes)
        await store.apply(changes)
        assert changes == before
        assert changes.runs[0].version == 0  # the engine sets it after a successful apply

    async def test_a_stale_version_is_refused_and_nothing_of_its_transition_is_written(
        self, store: Store
    ) -> None:
        await store.apply(
            Changes(
                runs=[run_record("r1")],
                timers_set=[timer(TIMER_SCHEDULE_TO_START, "kept", 5_000)],
                offers_add=[offer("kept", 1_000)],
            )
        )
        winner = run_record("r1", status="succeeded", version=1)
        await store.apply(Changes(runs=[winner], expect_versions={"r1": 1}))

        loser = Changes(
            runs=[run_record("r1", status="failed", version=1)],
            expect_versions={"r1": 1},  # read before the winner's transition
            steps=[step_record("r1", "charge")],
            attempts=[attempt_record("r1", "charge")],
            audit=[audit("run.fail")],
            events=[event("e1", 10)],
            requests={("payments", "req-1"): {"run_id": "r1"}},
            timers_set=[timer(TIMER_START_TO_CLOSE, "r1:charge:1", 9_000)],
            timers_clear=[(TIMER_SCHEDULE_TO_START, "kept")],
            offers_add=[offer("r1:charge:1", 2_000)],
            offers_remove=["kept"],
        )
        with pytest.raises(VersionConflict) as conflict:
            await store.apply(loser)
        assert "r1" in str(conflict.value)

        stored = await store.get_run("r1")
        assert stored is not None and (stored.status, stored.version) == ("succeeded", 2)
        assert await store.run_steps("r1") == ([], [])
        assert await store.get_attempt("r1:charge:1") is None
        assert [a.action for a in await store.list_audit()] == []
        assert await store.list_events() == []
        assert await store.get_request("payments", "req-1") is None
        assert await all_timers(store) == [timer(TIMER_SCHEDULE_TO_START, "kept", 5_000)]
        assert await store.offers([("payments/charge", 1)], 10) == [offer("kept", 1_000)]

    async def test_a_transition_of_several_runs_is_refused_whole_when_one_is_stale(
        self, store: Store
    ) -> None:
        await store.apply(Changes(runs=[run_record("r1"), run_record("r2")]))
        await store.apply(Changes(runs=[run_record("r2", status="cancelled")], expect_versions={"r2": 1}))
        with pytest.raises(VersionConflict):
            await store.apply(
                Changes(
                    runs=[run_record("r1", status="succeeded"), run_record("r2", status="succeeded")],
                    expect_versions={"r1": 1, "r2": 1},
                )
            )
        r1, r2 = await store.get_run("r1"), await store.get_run("r2")
        assert r1 is not None and (r1.status, r1.version) == ("running", 1)
        assert r2 is not None and (r2.status, r2.version) == ("cancelled", 2)

    async def test_a_version_read_without_a_record_is_checked_and_moved_on(self, store: Store) -> None:
        """A transition that changes only a run's steps (or attempts, timers, offers) still
        states the version it read: of two such transitions from one read, one wins."""
        await store.apply(Changes(runs=[run_record("r1")]))
        first = Changes(steps=[step_record("r1", "charge", status="running")], expect_versions={"r1": 1})
        second = Changes(steps=[step_record("r1", "charge", status="failed")], expect_versions={"r1": 1})
        await store.apply(first)
        with pytest.raises(VersionConflict):
            await store.apply(second)
        stored = await store.get_run("r1")
        assert stored is not None and stored.version == 2
        steps, _ = await store.run_steps("r1")
        assert [s.status for s in steps] == ["running"]

    async def test_an_update_of_a_run_that_is_not_stored_is_refused(self, store: Store) -> None:
        with pytest.raises(VersionConflict):
            await store.apply(
                Changes(
                    runs=[run_record("ghost")],
                    expect_versions={"ghost": 1},
                    steps=[step_record("ghost", "s")],
                )
            )
        assert await store.get_run("ghost") is None
        assert await store.run_steps("ghost") == ([], [])

    async def test_a_new_run_with_the_id_of_a_stored_one_is_refused(self, store: Store) -> None:
        await store.apply(Changes(runs=[run_record("r1")]))
        with pytest.raises(VersionConflict) as conflict:
            await store.apply(
                Changes(runs=[run_record("r1", status="failed")], attempts=[attempt_record("r1", "charge")])
            )
        assert "r1" in str(conflict.value)
        stored = await store.get_run("r1")
        assert stored is not None and (stored.status, stored.version) == ("running", 1)
        assert await store.get_attempt("r1:charge:1") is None

    async def test_a_taken_idempotency_key_names_the_run_that_has_it_and_nothing_is_written(
        self, store: Store
    ) -> None:
        await store.apply(Changes(runs=[run_record("r1", idempotency_key="order-7")]))
        with pytest.raises(IdempotencyConflict) as conflict:
            await store.apply(
                Changes(
                    runs=[run_record("r2", idempotency_key="order-7")],
                    steps=[step_record("r2", "charge")],
                    attempts=[attempt_record("r2", "charge")],
                    timers_set=[timer(TIMER_SCHEDULE_TO_START, "r2:charge:1", 5_000, run_id="r2")],
                    offers_add=[offer("r2:charge:1", 1_000)],
                    requests={("payments", "start-2"): {"run_id": "r2"}},
                )
            )
        assert conflict.value.run_id == "r1"
        assert await store.get_run("r2") is None
        assert await store.run_steps("r2") == ([], [])
        assert await store.get_attempt("r2:charge:1") is None
        assert await store.next_timer_due() is None
        assert await store.offers([("payments/charge", 1)], 10) == []
        assert await store.get_request("payments", "start-2") is None
        found = await store.find_run("payments/checkout", "payments", "order-7")
        assert found is not None and found.run_id == "r1"

    async def test_an_idempotency_key_is_per_workflow_and_caller_and_an_empty_one_is_none(
        self, store: Store
    ) -> None:
        await store.apply(Changes(runs=[run_record("r1", idempotency_key="k")]))
        await store.apply(Changes(runs=[run_record("r2", idempotency_key="k", workflow="payments/refund")]))
        await store.apply(Changes(runs=[run_record("r3", idempotency_key="k", caller_team="crm")]))
        await store.apply(Changes(runs=[run_record("r4"), run_record("r5")]))  # no key: never a conflict
        for workflow, caller, expected in [
            ("payments/checkout", "payments", "r1"),
            ("payments/refund", "payments", "r2"),
            ("payments/checkout", "crm", "r3"),
        ]:
            found = await store.find_run(workflow, caller, "k")
            assert found is not None and found.run_id == expected
        assert await store.find_run("payments/checkout", "payments", "") is None
        assert await store.find_run("payments/checkout", "payments", "other") is None
        # An update keeps the key (the run does not conflict with itself).
        await store.apply(
            Changes(
                runs=[run_record("r1", idempotency_key="k", status="succeeded")], expect_versions={"r1": 1}
            )
        )
        found = await store.find_run("payments/checkout", "payments", "k")
        assert found is not None and (found.run_id, found.status) == ("r1", "succeeded")

    async def test_a_refused_transition_fails_alone_among_concurrent_ones(self, store: Store) -> None:
        await store.apply(Changes(runs=[run_record("r0")]))
        results = await asyncio.gather(
            *(
                store.apply(Changes(runs=[run_record(f"r{i}")], steps=[step_record(f"r{i}", "s")]))
                for i in range(1, 51)
            ),
            store.apply(Changes(runs=[run_record("r0")], steps=[step_record("r0", "s")])),  # r0 exists
            return_exceptions=True,
        )
        assert [type(r) for r in results] == [type(None)] * 50 + [VersionConflict]
        assert len(await store.list_runs(RunFilter(limit=1_000))) == 51
        assert await store.run_steps("r0") == ([], [])
        for i in range(1, 51):
            steps, _ = await store.run_steps(f"r{i}")
            assert [s.step_id for s in steps] == ["s"]

    # ---------- steps and attempts ----------

    async def test_steps_and_attempts_are_written_again_in_place(self, store: Store) -> None:
        await store.apply(
            Changes(
                runs=[run_record("r1")],
                steps=[step_record("r1", "charge")],
                attempts=[attempt_record("r1", "charge")],
            )
        )
        step = step_record("r1", "charge", status="running", attempt_count=1, started_ms=1_500)
        attempt = attempt_record(
            "r1", "charge", status="failed", agent_id="agent-1", error=TaskFailure("E", "boom", False, "{}")
        )
        await store.apply(Changes(steps=[step], attempts=[attempt], expect_versions={"r1": 1}))
        assert await store.run_steps("r1") == ([step], [attempt])
        assert await store.get_attempt("r1:charge:1") == attempt
        assert await store.get_attempt("r1:charge:9") is None

    async def test_payloads_are_read_back_whole_and_a_read_without_them_leaves_them_out(
        self, store: Store
    ) -> None:
        """A run's and a step's input and output have columns of their own (codec, "Payloads"):
        each transition writes them, falsy ones and one set back to None included."""
        lines = [{"sku": f"A-{i}", "qty": i, "note": None, "price": 1.5} for i in range(200)]
        big = {"lines": lines, "n": 2**70, "text": 'é\u2028\U0001f600 \\"', "nested": [[[{}]]]}
        run = run_record("r1", input=big, idempotency_key="k1")
        charge = step_record("r1", "charge", input=big, output=[1, None, {"x": "y"}])
        falsy = [
            step_record("r1", f"f{i}", input=value, output=value)
            for i, value in enumerate(("", 0, False, []))
        ]
        await store.apply(Changes(runs=[run], steps=[charge, *falsy]))

        # Later transitions: the run ends with an output; the step's output is set back to None
        # (a retry), then to a new value equal to the old one.
        done = dataclasses.replace(run, version=1, status="succeeded", output={"total": 3.25}, finished_ms=9)
        charge.status, charge.output = "scheduled", None
        await store.apply(Changes(runs=[done], steps=[charge], expect_versions={"r1": 1}))
        assert (await store.run_steps("r1"))[0][0].output is None
        charge.status, charge.output = "succeeded", [1, None, {"x": "y"}]
        await store.apply(Changes(steps=[charge], expect_versions={"r1": 2}))

        stored = await store.get_run("r1")
        assert stored == dataclasses.replace(done, version=3)
        head = await store.get_run("r1", payloads=False)
        assert head == dataclasses.replace(done, version=3, input=None, output=None)
        assert await store.get_run("unknown", payloads=False) is None
        snapshot = await store.load_run("r1")
        assert snapshot is not None and snapshot.run == stored
        assert snapshot.steps == sorted([charge, *falsy], key=lambda s: s.step_id)
        assert [type(s.input) for s in snapshot.steps[1:]] == [str, int, bool, list]
        assert await store.list_runs(RunFilter()) == [stored]
        assert await store.find_run("payments/checkout", "payments", "k1") == stored

    async def test_load_run_reads_the_run_with_its_steps_and_attempts_in_order(self, store: Store) -> None:
        steps = [
            step_record("r1", "ship"),
            step_record("r1", "charge"),
            step_record("r1", "notify[0]", item_index=0),
        ]
        attempts = [
            attempt_record("r1", "ship", 1),
            attempt_record("r1", "charge", 2),
            attempt_record("r1", "charge", 1, status="failed"),
        ]
        await store.apply(Changes(runs=[run_record("r1"), run_record("r2")], steps=steps, attempts=attempts))
        await store.apply(Changes(steps=[step_record("r2", "other")], expect_versions={"r2": 1}))
        snapshot = await store.load_run("r1")
        assert snapshot is not None
        assert snapshot.run == run_record("r1", version=1)
        assert [s.step_id for s in snapshot.steps] == ["charge", "notify[0]", "ship"]
        assert [(a.step_id, a.number) for a in snapshot.attempts] == [
            ("charge", 1),
            ("charge", 2),
            ("ship", 1),
        ]
        assert snapshot.steps[1] == steps[2]
        assert await store.run_steps("r1") == (snapshot.steps, snapshot.attempts)
        assert await store.load_run("unknown") is None
        assert await store.run_steps("unknown") == ([], [])

    async def test_load_run_sees_each_transition_whole_or_not_at_all(self, store: Store) -> None:
        """Each transition writes the same number into the run, its step and its attempt; a read
        that mixed two transitions would see different numbers."""
        await store.apply(
            Changes(
                runs=[run_record("r1", output=0)],
                steps=[step_record("r1", "s", output=0)],
                attempts=[attempt_record("r1", "s", finished_ms=0)],
            )
        )
        done = asyncio.Event()

        async def write() -> None:
            try:
                for n in range(1, 151):
                    await store.apply(
                        Changes(
                            runs=[run_record("r1", output=n)],
                            steps=[step_record("r1", "s", output=n)],
                            attempts=[attempt_record("r1", "s", finished_ms=n)],
                            expect_versions={"r1": n},
                        )
                    )
            finally:
                done.set()

        async def read() -> int:
            reads = 0
            while not done.is_set():
                snapshot = await store.load_run("r1")
                assert snapshot is not None
                n = snapshot.run.output
                assert (snapshot.run.version, snapshot.steps[0].output, snapshot.attempts[0].finished_ms) == (
                    n + 1,
                    n,
                    n,
                )
                reads += 1
            return reads

        results = await asyncio.gather(write(), read(), read(), read())
        assert sum(r for r in results if r is not None) > 0

    # ---------- timers ----------

    # ---------- schedules ----------

    async def test_sync_schedules_adds_changes_keeps_and_deletes(self, store: Store) -> None:
        nightly = ScheduleRecord("ops/report", "nightly", {"cron": "0 2 * * *"}, next_due_ms=1_000)
        hourly = ScheduleRecord("ops/report", "hourly", {"cron": "0 * * * *"}, next_due_ms=500)
        other = ScheduleRecord("ops/other", "nightly", {"cron": "0 3 * * *"}, next_due_ms=2_000)
        await store.sync_schedules("ops/report", [nightly, hourly])
        await store.sync_schedules("ops/other", [other])
        assert [(r.workflow, r.schedule_id) for r in await store.list_schedules()] == [
            ("ops/other", "nightly"),
            ("ops/report", "hourly"),
            ("ops/report", "nightly"),
        ]
        paused = await store.set_schedule_paused("ops/report", "nightly", True)
        assert paused is not None and paused.paused
        assert await store.set_schedule_paused("ops/report", "absent", True) is None
        # The same spec again: left alone (its next due time too); a changed spec: taken, pause kept.
        claimed = await store.claim_schedules(600, 10, 1_000)  # hourly fires: its state moves on
        assert [r.schedule_id for r in claimed] == ["hourly"]
        claimed[0].last_due_ms, claimed[0].queued = 500, [550]
        assert await store.finish_schedule(claimed[0], claimed[0].claimed_until_ms)
        await store.sync_schedules(
            "ops/report",
            [
                dataclasses.replace(
                    nightly, spec={"cron": "0 4 * * *"}, next_due_ms=9_000, last_due_ms=8_000
                ),
                dataclasses.replace(hourly, next_due_ms=7_777),
            ],
        )
        by_id = {r.schedule_id: r for r in await store.list_schedules("ops/report")}
        assert by_id["nightly"].spec == {"cron": "0 4 * * *"} and by_id["nightly"].next_due_ms == 9_000
        assert by_id["nightly"].paused and by_id["nightly"].last_due_ms == 8_000  # a new spec: its state too
        assert (by_id["hourly"].next_due_ms, by_id["hourly"].last_due_ms, by_id["hourly"].queued) == (
            500,
            500,
            [550],
        )
        await store.sync_schedules("ops/report", [hourly])
        assert [r.schedule_id for r in await store.list_schedules("ops/report")] == ["hourly"]
        await store.sync_schedules("ops/report", [])
        assert await store.list_schedules("ops/report") == []
        assert len(await store.list_schedules()) == 1

    async def test_claim_schedules_gives_each_due_schedule_to_one_claimer(self, store: Store) -> None:
        records = [ScheduleRecord("ops/report", f"s{n}", {"n": n}, next_due_ms=n * 100) for n in (3, 1, 2, 9)]
        await store.sync_schedules("ops/report", records)
        await store.set_schedule_paused("ops/report", "s2", True)
        claimed = await store.claim_schedules(500, 10, 1_000)
        assert [r.schedule_id for r in claimed] == ["s1", "s3"]  # s2 paused, s9 not due
        assert all(r.claimed_until_ms == 1_500 for r in claimed)
        assert await store.claim_schedules(500, 10, 1_000) == []  # claimed already
        assert await store.claim_schedules(600, 0, 1_000) == []
        # A fired schedule moves on and is free again; a stale claimer writes nothing.
        first = claimed[0]
        first.next_due_ms, first.last_due_ms, first.last_run_id, first.queued = 5_000, 100, "run-1", [200]
        assert await store.finish_schedule(first, 999) is False
        assert await store.finish_schedule(first, 1_500) is True
        stored = {r.schedule_id: r for r in await store.list_schedules()}["s1"]
        assert (stored.next_due_ms, stored.last_due_ms, stored.last_run_id, stored.queued) == (
            5_000,
            100,
            "run-1",
            [200],
        )
        assert stored.claimed_until_ms == 0
        # A claim that ran out is free again.
        again = await store.claim_schedules(1_600, 10, 1_000)
        assert [r.schedule_id for r in again] == ["s3", "s9"], again  # s9 fell due meanwhile

    async def test_timers_are_set_moved_and_cleared(self, store: Store) -> None:
        await store.apply(
            Changes(
                timers_set=[
                    timer(TIMER_SCHEDULE_TO_START, "a1", 100),
                    timer(TIMER_START_TO_CLOSE, "a1", 200),  # same key, another kind: another timer
                    timer(TIMER_RETRY, "r1/charge", 300),
                ]
            )
        )
        assert await store.next_timer_due() == 100
        await store.apply(
            Changes(
                timers_set=[timer(TIMER_SCHEDULE_TO_START, "a1", 400)],  # moved
                timers_clear=[(TIMER_RETRY, "r1/charge"), (TIMER_LEASE, "absent")],  # absent: ignored
            )
        )
        assert await store.next_timer_due() == 200
        assert await all_timers(store) == [
            timer(TIMER_START_TO_CLOSE, "a1", 200),
            timer(TIMER_SCHEDULE_TO_START, "a1", 400),
        ]

    async def test_claim_timers_gives_due_unclaimed_ones_earliest_first_up_to_the_limit(
        self, store: Store
    ) -> None:
        due = [timer(TIMER_RETRY, f"r1/s{n}", n * 10) for n in (5, 1, 4, 2, 3)]
        await store.apply(Changes(timers_set=[*due, timer(TIMER_RETRY, "r1/later", 1_000)]))
        first = await store.claim_timers(35, 2, 100)
        assert first == [timer(TIMER_RETRY, "r1/s1", 10), timer(TIMER_RETRY, "r1/s2", 20)]
        assert await store.claim_timers(35, 10, 100) == [timer(TIMER_RETRY, "r1/s3", 30)]  # 10, 20: claimed
        assert await store.claim_timers(35, 10, 100) == []
        assert await store.claim_timers(60, 0, 100) == []
        assert await store.claim_timers(60, 10, 100) == [
            timer(TIMER_RETRY, "r1/s4", 40),
            timer(TIMER_RETRY, "r1/s5", 50),
        ]
        # Same due time: by kind, then key.
        await store.apply(
            Changes(
                timers_set=[
                    timer(TIMER_START_TO_CLOSE, "b", 70),
                    timer(TIMER_LEASE, "z", 70),
                    timer(TIMER_LEASE, "a", 70),
                ]
            )
        )
        assert [(t.kind, t.key) for t in await store.claim_timers(70, 10, 100)] == [
            (TIMER_LEASE, "a"),
            (TIMER_LEASE, "z"),
            (TIMER_START_TO_CLOSE, "b"),
        ]

    async def test_a_claim_hides_a_timer_until_it_runs_out(self, store: Store) -> None:
        await store.apply(Changes(timers_set=[timer(TIMER_RETRY, "r1/s", 10)]))
        assert await store.claim_timers(20, 10, 100) == [timer(TIMER_RETRY, "r1/s", 10)]
        assert await store.claim_timers(119, 10, 100) == []
        assert await store.next_timer_due() == 120  # when the claim runs out, not its past due time
        assert await store.claim_timers(120, 10, 100) == [timer(TIMER_RETRY, "r1/s", 10)]

    async def test_setting_a_claimed_timer_again_drops_the_claim(self, store: Store) -> None:
        await store.apply(Changes(timers_set=[timer(TIMER_RETRY, "r1/s", 10)]))
        assert len(await store.claim_timers(20, 10, 1_000)) == 1
        await store.apply(Changes(timers_set=[timer(TIMER_RETRY, "r1/s", 30)]))
        assert await store.next_timer_due() == 30
        assert await store.claim_timers(30, 10, 1_000) == [timer(TIMER_RETRY, "r1/s", 30)]

    async def test_concurrent_claimers_never_get_the_same_timer(self, store: Store) -> None:
        await store.apply(Changes(timers_set=[timer(TIMER_RETRY, f"r1/s{n}", n) for n in range(200)]))

        async def claimer() -> list[TimerRecord]:
            mine: list[TimerRecord] = []
            for _ in range(200 // 7 + 1):  # bounded: a store that never hides a claim fails, not hangs
                batch = await store.claim_timers(1_000, 7, 60_000)
                if not batch:
                    break
                mine += batch
                await asyncio.sleep(0)
            return mine

        claimed = await asyncio.gather(*(claimer() for _ in range(8)))
        keys = [t.key for batch in claimed for t in batch]
        assert len(keys) == len(set(keys)) == 200
        assert sum(1 for batch in claimed if batch) > 1  # they did run side by side

    async def test_claimers_on_two_store_objects_never_get_the_same_timer(
        self, store_factory: StoreFactory
    ) -> None:
        if not store_factory.second_store_allowed:
            pytest.skip("this store serves one process: a second store on its database is refused")
        first, second = store_factory.new(), store_factory.new()
        await first.open()
        await second.open()
        try:
            await first.apply(Changes(timers_set=[timer(TIMER_RETRY, f"r1/s{n}", n) for n in range(200)]))

            async def claimer(store: Store) -> list[str]:
                mine: list[str] = []
                for _ in range(200 // 7 + 1):
                    batch = await store.claim_timers(1_000, 7, 60_000)
                    if not batch:
                        break
                    mine += [t.key for t in batch]
                return mine

            claimed = await asyncio.gather(*(claimer(s) for s in (first, second) for _ in range(4)))
            keys = [key for batch in claimed for key in batch]
            assert len(keys) == len(set(keys)) == 200
        finally:
            await second.close()
            await first.close()

    async def test_firing_a_timer_deletes_it_and_a_moved_or_fired_one_is_a_conflict(
        self, store: Store
    ) -> None:
        lease = timer(TIMER_LEASE, "r1:charge:1", 100)
        await store.apply(
            Changes(
                runs=[run_record("r1")],
                attempts=[attempt_record("r1", "charge", status="running")],
                timers_set=[lease],
            )
        )
        assert await store.claim_timers(150, 10, 1_000) == [lease]
        assert await store.extend_lease("r1:charge:1", 500)  # a heartbeat while the lease is being fired

        timed_out = Changes(
            runs=[run_record("r1", status="failed")],
            attempts=[attempt_record("r1", "charge", status="timed_out")],
            expect_versions={"r1": 1},
            timers_fired=[lease],
        )
        with pytest.raises(VersionConflict) as conflict:
            await store.apply(timed_out)
        assert "r1:charge:1" in str(conflict.value)
        stored = await store.get_run("r1")
        assert stored is not None and (stored.status, stored.version) == ("running", 1)
        attempt = await store.get_attempt("r1:charge:1")
        assert attempt is not None and attempt.status == "running"
        moved = timer(TIMER_LEASE, "r1:charge:1", 500)
        assert await all_timers(store) == [moved]

        timed_out.timers_fired = [moved]
        await store.apply(timed_out)
        assert await store.next_timer_due() is None
        stored = await store.get_run("r1")
        assert stored is not None and stored.version == 2
        with pytest.raises(VersionConflict):  # fired already
            await store.apply(Changes(timers_fired=[moved]))

    async def test_extend_lease_moves_only_a_lease_that_exists(self, store: Store) -> None:
        await store.apply(
            Changes(timers_set=[timer(TIMER_LEASE, "a1", 100), timer(TIMER_START_TO_CLOSE, "a2", 100)])
        )
        assert len(await store.claim_timers(100, 10, 1_000)) == 2
        assert await store.extend_lease("a1", 300)
        assert not await store.extend_lease("a2", 300)  # no lease: another kind of timer
        assert not await store.extend_lease("a3", 300)  # none at all
        # The heartbeat dropped the claim: the lease is claimable again when it falls due.
        assert await store.claim_timers(300, 10, 1_000) == [timer(TIMER_LEASE, "a1", 300)]

    async def test_a_timer_fired_and_set_again_in_one_transition_is_armed_again(self, store: Store) -> None:
        await store.apply(Changes(timers_set=[timer(TIMER_LEASE, "a1", 100)]))
        await store.apply(
            Changes(timers_fired=[timer(TIMER_LEASE, "a1", 100)], timers_set=[timer(TIMER_LEASE, "a1", 600)])
        )
        assert await all_timers(store) == [timer(TIMER_LEASE, "a1", 600)]

    async def test_next_timer_due_is_the_earliest_time_a_claim_could_succeed(self, store: Store) -> None:
        assert await store.next_timer_due() is None
        await store.apply(
            Changes(timers_set=[timer(TIMER_RETRY, "r1/a", 300), timer(TIMER_RETRY, "r1/b", 200)])
        )
        assert await store.next_timer_due() == 200
        assert [t.key for t in await store.claim_timers(250, 10, 500)] == ["r1/b"]  # claimed until 750
        assert await store.next_timer_due() == 300
        await store.apply(Changes(timers_clear=[(TIMER_RETRY, "r1/a")]))
        assert await store.next_timer_due() == 750
        await store.apply(Changes(timers_fired=[timer(TIMER_RETRY, "r1/b", 200)]))
        assert await store.next_timer_due() is None

    # ---------- task offers ----------

    async def test_offers_of_held_teams_are_passed_by_and_inflight_is_counted(self, store: Store) -> None:
        flood = [dataclasses.replace(offer(f"a{n}", n), caller_team="flooder") for n in range(20)]
        mine = dataclasses.replace(offer("b1", 100), caller_team="quiet")
        await store.apply(Changes(offers_add=[*flood, mine]))
        charge = ("payments/charge", 1)
        assert [o.attempt_id for o in await store.offers([charge], 3)] == ["a0", "a1", "a2"]
        # The quiet team's offer is found however many of the held team's are older.
        found = await store.offers([charge], 3, frozenset({"flooder"}))
        assert found == [mine] and found[0].caller_team == "quiet"
        # Offers being claimed here are passed by too, with held teams or without.
        passing = frozenset({"a0", "a2"})
        assert [o.attempt_id for o in await store.offers([charge], 3, passing=passing)] == ["a1", "a3", "a4"]
        assert await store.offers([charge], 3, frozenset({"flooder"}), frozenset({"b1"})) == []
        assert await store.inflight_counts() == {}
        await store.apply(
            Changes(inflight_add=[("a0", "flooder", "payments/charge"), ("a1", "flooder", "payments/charge")])
        )
        await store.apply(
            Changes(inflight_add=[("b1", "quiet", "payments/charge")], inflight_remove=["a0", "absent"])
        )
        assert await store.inflight_counts() == {"flooder": 1, "quiet": 1}

    async def test_inflight_caps_refuse_a_transition_past_a_limit_and_write_none_of_it(
        self, store: Store
    ) -> None:
        team_cap, contract_cap = (INFLIGHT_TEAM, "flooder", 2), (INFLIGHT_CONTRACT, "payments/charge", 3)
        await store.apply(Changes(offers_add=[offer(f"a{n}", n) for n in range(5)]))

        async def claim(attempt_id: str, team: str = "flooder", *caps: tuple[str, str, int]) -> None:
            await store.apply(
                Changes(
                    offers_remove=[attempt_id],
                    inflight_add=[(attempt_id, team, "payments/charge")],
                    inflight_caps=list(caps),
                )
            )

        await claim("a0", "flooder", team_cap, contract_cap)
        await claim("a1", "flooder", team_cap, contract_cap)
        with pytest.raises(LimitReached) as refused:
            await claim("a2", "flooder", team_cap, contract_cap)
        assert (refused.value.kind, refused.value.key, refused.value.limit) == team_cap
        assert await store.inflight_counts() == {"flooder": 2}
        assert "a2" in [o.attempt_id for o in await store.offers([("payments/charge", 1)], 10)]
        await claim("a2", "quiet", contract_cap)  # another team: only the contract's limit holds it
        with pytest.raises(LimitReached) as refused:
            await claim("a3", "quiet", contract_cap)
        assert refused.value.kind == INFLIGHT_CONTRACT
        # A slot freed in the same transition counts.
        await store.apply(
            Changes(
                inflight_remove=["a0"],
                inflight_add=[("a3", "flooder", "payments/charge")],
                inflight_caps=[team_cap],
            )
        )
        assert await store.inflight_counts() == {"flooder": 2, "quiet": 1}
        assert await store.inflight_of_contracts() == {"payments/charge": 3}

    async def test_concurrent_claims_on_two_store_objects_never_pass_a_cap(
        self, store_factory: StoreFactory
    ) -> None:
        stores = [store_factory.new()]
        if store_factory.second_store_allowed:
            stores.append(store_factory.new())
        await asyncio.gather(*(s.open() for s in stores))
        try:

            async def claim(n: int) -> bool:
                try:
                    await stores[n % len(stores)].apply(
                        Changes(
                            inflight_add=[(f"a{n}", "flooder", "payments/charge")],
                            inflight_caps=[
                                (INFLIGHT_TEAM, "flooder", 3),
                                (INFLIGHT_CONTRACT, "payments/charge", 3),
                            ],
                        )
                    )
                except LimitReached:
                    return False
                return True

            claimed = await asyncio.gather(*(claim(n) for n in range(16)))
            assert claimed.count(True) == 3, claimed
            assert await stores[-1].inflight_counts() == {"flooder": 3}
        finally:
            for s in reversed(stores):
                await s.close()

    async def test_a_start_bucket_starts_full_refills_at_its_rate_and_is_per_team(self, store: Store) -> None:
        # 2 a second, a burst of 3: three starts at once, then one every 500 ms.
        assert [await store.take_start_token("flood", 2.0, 3.0, 10_000) for _ in range(3)] == [0, 0, 0]
        assert 500 <= await store.take_start_token("flood", 2.0, 3.0, 10_000) <= 501
        assert 250 <= await store.take_start_token("flood", 2.0, 3.0, 10_250) <= 251  # half filled
        assert await store.take_start_token("flood", 2.0, 3.0, 10_500) == 0
        assert await store.take_start_token("quiet", 2.0, 3.0, 10_500) == 0  # its own bucket
        # A time before the last one (another coordinator's clock) adds nothing.
        assert await store.take_start_token("flood", 2.0, 3.0, 9_000) > 0
        assert await store.take_start_token("flood", 2.0, 3.0, 11_000) == 0
        # Long idle: full again, but never more than the burst (a lower rate's smaller one, too).
        assert [await store.take_start_token("flood", 2.0, 3.0, 100_000) for _ in range(4)][3] > 0
        assert [await store.take_start_token("flood", 1.0, 1.0, 200_000) for _ in range(2)] == [0, 1001]

    async def test_concurrent_takers_never_share_a_start_token(self, store: Store) -> None:
        # 1 an hour with a burst of 10: exactly ten of 40 concurrent takes get one.
        answers = await asyncio.gather(
            *(store.take_start_token("flood", 1 / 3600, 10.0, 5_000) for _ in range(40))
        )
        assert answers.count(0) == 10, answers
        assert all(wait > 3_000_000 for wait in answers if wait), answers  # ~an hour for the next

    async def test_takers_on_two_store_objects_never_share_a_start_token(
        self, store_factory: StoreFactory
    ) -> None:
        if not store_factory.second_store_allowed:
            pytest.skip("this store serves one process: a second store on its database is refused")
        first, second = store_factory.new(), store_factory.new()
        await asyncio.gather(first.open(), second.open())
        try:
            answers = await asyncio.gather(
                *(
                    s.take_start_token("flood", 1 / 3600, 10.0, 5_000)
                    for _ in range(20)
                    for s in (first, second)
                )
            )
            assert answers.count(0) == 10, answers
        finally:
            await second.close()
            await first.close()

    async def test_offers_are_listed_by_key_oldest_first_up_to_the_limit_and_removed(
        self, store: Store
    ) -> None:
        await store.apply(
            Changes(
                offers_add=[
                    offer("a30", 30),
                    offer("a10", 10),
                    offer("v2", 20, major=2),
                    offer("ship", 5, contract="warehouse/ship"),
                    offer("a10b", 10),  # same time as a10: by attempt id
                ]
            )
        )
        charge, charge2, ship = ("payments/charge", 1), ("payments/charge", 2), ("warehouse/ship", 1)
        assert [o.attempt_id for o in await store.offers([charge], 10)] == ["a10", "a10b", "a30"]
        assert [o.attempt_id for o in await store.offers([charge, ship], 2)] == ["ship", "a10"]
        assert [o.attempt_id for o in await store.offers([charge, charge2, ship, charge], 10)] == [
            "ship",
            "a10",
            "a10b",
            "v2",
            "a30",
        ]
        assert await store.offers([charge2], 10) == [offer("v2", 20, major=2)]
        assert await store.offers([], 10) == []
        assert await store.offers([("crm/notify", 1)], 10) == []
        assert await store.offers([charge], 0) == []

        await store.apply(Changes(offers_remove=["a10", "absent"]))
        assert [o.attempt_id for o in await store.offers([charge], 10)] == ["a10b", "a30"]
        # Offered again (an attempt back in the queue): its new time counts.
        await store.apply(Changes(offers_remove=["a10b"], offers_add=[offer("a10b", 40)]))
        assert [o.attempt_id for o in await store.offers([charge], 10)] == ["a30", "a10b"]

    # ---------- reads ----------

    async def test_list_runs_pages_newest_first_and_filters(self, store: Store) -> None:
        runs = [
            run_record("r1", created_ms=100, status="succeeded", involved_teams=("payments", "warehouse")),
            run_record("r2", created_ms=200, workflow="payments/refund"),
            run_record("r3", created_ms=300, involved_teams=("payments", "crm"), idempotency_key="order-42"),
            run_record("r4", created_ms=400, status="failed"),
            run_record("r5", created_ms=400),  # same time as r4: by run id
            run_record("r6", created_ms=500, team="crm", workflow="crm/flow", involved_teams=("crm",)),
        ]
        await store.apply(Changes(runs=runs))

        async def ids(**query: Any) -> list[str]:
            return [r.run_id for r in await store.list_runs(RunFilter(**query))]

        assert await ids() == ["r6", "r4", "r5", "r3", "r2", "r1"]
        assert await ids(limit=2) == ["r6", "r4"]
        assert await ids(limit=2, offset=2) == ["r5", "r3"]
        assert await ids(limit=2, offset=6) == []
        assert await ids(workflow="payments/refund") == ["r2"]
        assert await ids(status="running") == ["r6", "r5", "r3", "r2"]
        assert await ids(team="warehouse") == ["r1"]
        assert await ids(visible_to="crm") == ["r6", "r3"]
        assert await ids(visible_to="payments", team="crm") == ["r3"]
        assert await ids(created_after_ms=300, created_before_ms=500) == ["r4", "r5", "r3"]
        assert await ids(query="order-4") == ["r3"]
        assert await ids(query="r2") == ["r2"]

    async def test_list_audit_pages_oldest_first_and_filters_by_team(self, store: Store) -> None:
        await store.add_audit(audit("one", owner_team="payments", actor="payments"))
        await store.apply(
            Changes(
                audit=[
                    audit("two", owner_team="crm", actor="admin"),
                    audit("three", owner_team="crm", actor="payments"),
                ]
            )
        )
        await store.add_audit(audit("four", owner_team="warehouse", actor="admin"))
        entries = await store.list_audit()
        assert [a.action for a in entries] == ["one", "two", "three", "four"]
        assert len({a.id for a in entries}) == 4 and all(a.id for a in entries)
        assert [a.action for a in await store.list_audit(offset=1, limit=2)] == ["two", "three"]
        assert [a.action for a in await store.list_audit(team="payments")] == [
            "one",
            "three",
        ]  # owner or actor
        assert [a.action for a in await store.list_audit(team="crm", offset=1)] == ["three"]
        assert await store.list_audit(team="nobody") == []

    async def test_list_audit_since_a_time_and_newest_first(self, store: Store) -> None:
        # Written in this order (ids ascending); at_ms need not follow ids (clocks of several
        # coordinators differ), and the order stays the order of writing.
        for action, at_ms, owner, actor in [
            ("old", 100, "payments", "payments"),
            ("late-clock", 250, "crm", "admin"),
            ("mid", 200, "crm", "payments"),
            ("new", 300, "warehouse", "admin"),
        ]:
            await store.add_audit(audit(action, owner_team=owner, actor=actor, at_ms=at_ms))

        async def actions(**query: Any) -> list[str]:
            return [a.action for a in await store.list_audit(**query)]

        assert await actions(since_ms=200) == ["late-clock", "mid", "new"]
        assert await actions(since_ms=301) == []
        assert await actions(newest_first=True) == ["new", "mid", "late-clock", "old"]
        assert await actions(newest_first=True, limit=2) == ["new", "mid"]
        assert await actions(newest_first=True, limit=2, offset=2) == ["late-clock", "old"]
        assert await actions(team="payments", since_ms=150) == ["mid"]  # owner or actor, and since
        assert await actions(team="crm", since_ms=200, newest_first=True) == ["mid", "late-clock"]
        assert await actions(team="admin", since_ms=260) == ["new"]
        ids = [a.id for a in await store.list_audit()]
        assert await actions(before_id=ids[2]) == ["old", "late-clock"]
        assert await actions(before_id=ids[3], newest_first=True, limit=1) == ["mid"]
        assert await actions(before_id=ids[3], team="crm", since_ms=250) == ["late-clock"]
        assert await actions(before_id=ids[0]) == []
        # before a time, of one action (what served each contract before an autonomy report's period)
        assert await actions(until_ms=250) == ["old", "mid"]
        assert await actions(until_ms=251, newest_first=True, limit=1) == ["mid"]
        assert await actions(action="mid") == ["mid"]
        assert await actions(action="late-clock", until_ms=250) == []
        assert await actions(action="new", team="warehouse", since_ms=300) == ["new"]

    async def test_list_events_pages_newest_first_and_filters_by_contract(self, store: Store) -> None:
        await store.apply(
            Changes(events=[event("e1", 10), event("e2", 30, contract="crm/signed-up"), event("e3", 20)])
        )
        await store.apply(
            Changes(
                events=[
                    dataclasses.replace(
                        event("e4", 40),
                        triggered_runs=("r1", "r2"),
                        trace_context={"traceparent": "00-a-b-01"},
                    )
                ]
            )
        )
        assert [e.event_id for e in await store.list_events()] == ["e4", "e2", "e3", "e1"]
        assert [e.event_id for e in await store.list_events(offset=1, limit=2)] == ["e2", "e3"]
        assert [e.event_id for e in await store.list_events("payments/paid")] == ["e4", "e3", "e1"]
        newest = (await store.list_events(limit=1))[0]
        assert newest == dataclasses.replace(
            event("e4", 40), triggered_runs=("r1", "r2"), trace_context={"traceparent": "00-a-b-01"}
        )

    async def test_list_events_filters_by_team(self, store: Store) -> None:
        crm = dataclasses.replace(event("e2", 30, contract="crm/signed-up"), team="crm")
        await store.apply(Changes(events=[event("e1", 10), crm]))
        assert [e.event_id for e in await store.list_events(team="crm")] == ["e2"]
        assert [e.event_id for e in await store.list_events(team="payments")] == ["e1"]
        assert await store.list_events("payments/paid", team="crm") == []

    async def test_an_event_is_delivered_then_handled_and_keeps_its_first_times(self, store: Store) -> None:
        emitted = dataclasses.replace(event("e3", 30), source_run="run-9")
        await store.apply(Changes(events=[event("e1", 10), event("e2", 20), emitted]))
        assert await store.get_event("nope") is None
        assert await store.get_event("e3") == emitted
        # Oldest first, only those published before the time given, up to the limit.
        assert [e.event_id for e in await store.undelivered_events(30, 10)] == ["e1", "e2"]
        assert [e.event_id for e in await store.undelivered_events(31, 1)] == ["e1"]

        await store.mark_event_delivered("e1", 100)
        await store.mark_event_delivered("e1", 200)  # again: the first time stays
        assert [e.event_id for e in await store.undelivered_events(1000, 10)] == ["e2", "e3"]
        first = await store.get_event("e1")
        assert first is not None and first.delivered_ms == 100 and first.handled_ms == 0

        await store.record_event_handled("e1", ["r1", "r2"], 300)
        await store.record_event_handled("e1", ["r1", "r2"], 400)  # a redelivery: same runs, first time
        handled = await store.get_event("e1")
        assert handled == dataclasses.replace(
            event("e1", 10), delivered_ms=100, handled_ms=300, triggered_runs=("r1", "r2")
        )
        # Handled without being marked delivered (the in-process bus): delivered then too.
        await store.record_event_handled("e2", [], 500)
        second = await store.get_event("e2")
        assert second is not None and (second.delivered_ms, second.handled_ms) == (500, 500)
        assert [e.event_id for e in await store.undelivered_events(1000, 10)] == ["e3"]

    async def test_an_event_keeps_its_sensitive_payload_fields(self, store: Store) -> None:
        # Decided when it is published (an emitter's taint): every view of it redacts them.
        tainted = dataclasses.replace(event("e1", 10), sensitive=("input.card", "input.holder.iban"))
        await store.apply(Changes(events=[tainted, event("e2", 20)]))
        assert await store.get_event("e1") == tainted
        assert (await store.get_event("e2")) == event("e2", 20)
        assert [e.sensitive for e in await store.list_events()] == [(), ("input.card", "input.holder.iban")]
        await store.record_event_handled("e1", ["r1"], 30)
        handled = await store.get_event("e1")
        assert handled is not None and handled.sensitive == ("input.card", "input.holder.iban")

    async def test_request_answers_are_kept_by_scope_and_request_id(self, store: Store) -> None:
        await store.apply(Changes(requests={("payments", "req-1"): {"run_id": "r1", "created": True}}))
        assert await store.get_request("payments", "req-1") == {"run_id": "r1", "created": True}
        assert await store.get_request("crm", "req-1") is None
        assert await store.get_request("payments", "req-2") is None

    # ---------- requests applied once (coordinator.api.once) ----------

    async def test_an_audited_change_marks_its_request_in_its_transaction_and_another_call_is_refused(
        self, store: Store
    ) -> None:
        def marked(action: str, by: str, request_id: str = "q1") -> AuditRecord:
            mark = RequestMark("rpc:RegisterContract:payments", request_id, {"digest": "d1", "by": by})
            return dataclasses.replace(audit(action), request=mark)

        await store.add_contract(
            contract_record("payments/charge", "1.0.0"), marked("contract.register", "one")
        )
        stored = await store.get_request("rpc:RegisterContract:payments", "q1")
        assert stored == {"digest": "d1", "by": "one"}
        # The same request applied by another call: refused whole, before anything is written.
        with pytest.raises(RequestConflict):
            await store.add_contract(contract_record("payments/charge", "1.1.0"), marked("again", "two"))
        with pytest.raises(RequestConflict):
            await store.create_team(TeamRecord("crm", 1), token("crm", "h1", 1), marked("team", "two"))
        with pytest.raises(RequestConflict):
            await store.apply(Changes(runs=[run_record("r1")], audit=[marked("run.start", "two")]))
        with pytest.raises(RequestConflict):
            await store.add_audit(marked("alone", "two"))
        assert [c.contract.version for c in await store.contract_versions("payments/charge")] == ["1.0.0"]
        assert await store.get_team("crm") is None
        assert await store.get_run("r1") is None
        assert [a.action for a in await store.list_audit()] == ["contract.register"]
        # A later step of the call that marked it goes through (and leaves the mark as it was).
        await store.set_deprecation(
            "payments/charge",
            ["1.0.0"],
            Deprecation(sunset="2030-01-01"),
            marked("contract.deprecate", "one"),
        )
        await store.apply(Changes(runs=[run_record("r2")], audit=[marked("run.start", "one")]))
        assert await store.get_run("r2") is not None
        assert await store.get_request("rpc:RegisterContract:payments", "q1") == stored
        # Another request id, or no mark at all, is no conflict; the answer replaces the mark.
        await store.add_audit(marked("other", "two", request_id="q2"))
        await store.add_audit(audit("plain"))
        await store.apply(
            Changes(requests={("rpc:RegisterContract:payments", "q1"): {**stored, "answer": "x"}})
        )
        assert (await store.get_request("rpc:RegisterContract:payments", "q1"))["answer"] == "x"
        # Marks are request records like the others: retention deletes them.
        assert await store.purge_requests(10**13, 10) == 2
        assert await store.get_request("rpc:RegisterContract:payments", "q2") is None

    async def test_of_concurrent_calls_applying_one_request_one_wins(
        self, store_factory: StoreFactory
    ) -> None:
        stores = [store_factory.new()]
        if store_factory.second_store_allowed:
            stores.append(store_factory.new())
        for s in stores:
            await s.open()
        try:
            await self._team(stores[0])

            def marked(by: int) -> AuditRecord:
                mark = RequestMark("rpc:CreateTeamToken:admin", "q1", {"digest": "d", "by": str(by)})
                return dataclasses.replace(audit("token.create"), request=mark)

            results = await asyncio.gather(
                *(
                    stores[i % len(stores)].add_token(token("payments", f"h{i}", 10, name=f"t{i}"), marked(i))
                    for i in range(8)
                ),
                return_exceptions=True,
            )
            assert sum(r is None for r in results) == 1, results
            assert all(isinstance(r, RequestConflict) for r in results if r is not None)
            assert len(await stores[-1].list_tokens("payments")) == 2  # default, and the winner's
            winner = next(i for i, r in enumerate(results) if r is None)
            assert await stores[-1].get_request("rpc:CreateTeamToken:admin", "q1") == {
                "digest": "d",
                "by": str(winner),
            }
        finally:
            for s in reversed(stores):
                await s.close()

    async def test_an_answer_replaces_its_own_calls_record_and_never_another_calls(
        self, store: Store
    ) -> None:
        scope = "rpc:CancelRun:payments"
        assert await store.answer_request(scope, "q1", {"by": "one", "answer": "a"}) == {
            "by": "one",
            "answer": "a",
        }
        # Another call's answer leaves the record as it is, and is told what is stored.
        assert await store.answer_request(scope, "q1", {"by": "two", "answer": "b"}) == {
            "by": "one",
            "answer": "a",
        }
        assert await store.answer_request(scope, "q1", {"by": "one", "error": "e"}) == {
            "by": "one",
            "error": "e",
        }
        assert await store.get_request(scope, "q1") == {"by": "one", "error": "e"}
        # Of concurrent first answers, one is stored and every caller is told which.
        answers = await asyncio.gather(*(store.answer_request(scope, "q2", {"by": str(i)}) for i in range(6)))
        assert len({a["by"] for a in answers}) == 1
        assert await store.get_request(scope, "q2") == answers[0]

    async def test_everything_is_still_there_when_the_store_is_opened_again(
        self, store_factory: StoreFactory
    ) -> None:
        store = store_factory.new()
        await store.open()
        try:
            await store.apply(
                Changes(
                    runs=[run_record("r1")],
                    steps=[step_record("r1", "charge")],
                    attempts=[attempt_record("r1", "charge")],
                    timers_set=[timer(TIMER_SCHEDULE_TO_START, "r1:charge:1", 5_000)],
                    offers_add=[offer("r1:charge:1", 1_000)],
                )
            )
            await store.apply(Changes(runs=[run_record("r1", status="pending")], expect_versions={"r1": 1}))
        finally:
            await store.close()
        again = store_factory.new()
        await again.open()
        try:
            snapshot = await again.load_run("r1")
            assert snapshot is not None
            assert snapshot.run == run_record("r1", status="pending", version=2)
            assert snapshot.steps == [step_record("r1", "charge")]
            assert snapshot.attempts == [attempt_record("r1", "charge")]
            assert await all_timers(again) == [timer(TIMER_SCHEDULE_TO_START, "r1:charge:1", 5_000)]
            assert await again.offers([("payments/charge", 1)], 10) == [offer("r1:charge:1", 1_000)]
        finally:
            await again.close()

    # ---------- settings, teams, contracts, workflows, agents, spans ----------

    async def test_settings_are_set_replaced_and_set_if_absent(self, store: Store) -> None:
        assert await store.get_setting("k") is None
        await store.set_setting("k", "one")
        await store.set_setting("k", "two", audit("admin.rotate_token", "", "admin"))
        assert await store.get_setting("k") == "two"
        assert await store.set_setting_if_absent("k", "three") == "two"
        assert await store.set_setting_if_absent("new", "first") == "first"
        assert await store.get_setting("new") == "first"
        assert [(a.action, a.actor) for a in await store.list_audit()] == [("admin.rotate_token", "admin")]

    async def test_of_concurrent_set_if_absent_one_wins_and_all_see_its_value(self, store: Store) -> None:
        answers = await asyncio.gather(*(store.set_setting_if_absent("admin", f"v{i}") for i in range(20)))
        assert len(set(answers)) == 1
        assert await store.get_setting("admin") == answers[0]

    async def test_set_if_absent_on_two_store_objects_has_one_winner(
        self, store_factory: StoreFactory
    ) -> None:
        if not store_factory.second_store_allowed:
            pytest.skip("this store serves one process: a second store on its database is refused")
        first, second = store_factory.new(), store_factory.new()
        await asyncio.gather(first.open(), second.open())
        try:
            answers = await asyncio.gather(
                *(
                    s.set_setting_if_absent("admin", f"{n}-{i}")
                    for i in range(5)
                    for n, s in enumerate((first, second))
                )
            )
            assert len(set(answers)) == 1
            assert await second.get_setting("admin") == answers[0]
        finally:
            await second.close()
            await first.close()

    async def test_teams_are_created_once_with_their_first_token_listed_by_name_and_changed(
        self, store: Store
    ) -> None:
        await store.create_team(TeamRecord("payments", 10), token("payments", "h1", 10), audit("team.create"))
        await store.create_team(
            TeamRecord("crm", 20), token("crm", "h2", 20), audit("team.create", owner_team="crm")
        )
        with pytest.raises(KeyError):
            await store.create_team(
                TeamRecord("crm", 30), token("crm", "other", 30), audit("team.create.again")
            )
        assert [t.name for t in await store.list_teams()] == ["crm", "payments"]
        assert await store.get_team("crm") == TeamRecord("crm", 20)
        assert await store.get_team("nobody") is None
        # The refused create wrote no token either.
        assert await store.list_tokens() == [token("crm", "h2", 20), token("payments", "h1", 10)]

        retry = RetryPolicy(max_attempts=5, initial_backoff=0.5, non_retryable=("Fatal",))
        timeouts = Timeouts(start_to_close=60.0, heartbeat=10.0)
        assert await store.set_team_defaults("crm", retry, timeouts)
        assert await store.get_team("crm") == TeamRecord("crm", 20, retry, timeouts)
        # The refused create wrote no audit entry.
        assert [a.action for a in await store.list_audit()] == ["team.create", "team.create"]

    # ---------- tokens ----------

    async def _team(self, store: Store, name: str = "payments") -> None:
        await store.create_team(
            TeamRecord(name, 1), token(name, f"{name}-first", 1), audit("team.create", name)
        )

    async def test_a_token_name_is_taken_while_a_live_token_has_it(self, store: Store) -> None:
        await self._team(store)
        await store.add_token(token("payments", "h-ci", 10, name="ci", expires_ms=100), audit("token.create"))
        with pytest.raises(KeyError):
            await store.add_token(token("payments", "h-ci2", 20, name="ci"), audit("token.create"))
        with pytest.raises(KeyError):
            await store.add_token(token("payments", "h-def", 20), audit("token.create"))  # "default"
        # Expired (at the new one's creation): the name is free again; both are kept.
        await store.add_token(token("payments", "h-ci3", 100, name="ci"), audit("token.create"))
        # Revoked: free again too.
        assert await store.revoke_token("payments", "ci", 150, audit("token.revoke")) == [
            token("payments", "h-ci", 10, name="ci", expires_ms=100, revoked_ms=150),
            token("payments", "h-ci3", 100, name="ci", revoked_ms=150),
        ]
        await store.add_token(token("payments", "h-ci4", 200, name="ci"), audit("token.create"))
        # Names are per team.
        await self._team(store, "crm")
        await store.add_token(token("crm", "h-crm-ci", 200, name="ci"), audit("token.create", "crm", "crm"))
        names = [(t.team, t.name, t.token_hash) for t in await store.list_tokens()]
        assert names == [
            ("crm", "default", "crm-first"),
            ("crm", "ci", "h-crm-ci"),
            ("payments", "default", "payments-first"),
            ("payments", "ci", "h-ci4"),
        ]
        # The refused adds wrote no audit entry.
        assert [a.action for a in await store.list_audit(team="payments")].count("token.create") == 3

    async def test_concurrent_adds_of_one_name_have_one_winner(self, store_factory: StoreFactory) -> None:
        stores = [store_factory.new()]
        if store_factory.second_store_allowed:
            stores.append(store_factory.new())
        for s in stores:
            await s.open()
        try:
            await self._team(stores[0])
            results = await asyncio.gather(
                *(
                    stores[i % len(stores)].add_token(token("payments", f"h{i}", 10, name="ci"), audit("t"))
                    for i in range(8)
                ),
                return_exceptions=True,
            )
            assert sum(r is None for r in results) == 1
            assert all(isinstance(r, KeyError) for r in results if r is not None)
            assert [t.name for t in await stores[-1].list_tokens("payments")] == ["default", "ci"]
        finally:
            for s in reversed(stores):
                await s.close()

    async def test_a_replaced_token_lives_out_its_grace_under_another_name(self, store: Store) -> None:
        await self._team(store)
        old = token("payments", "payments-first", 1)
        changed = await store.replace_token(token("payments", "h2", 10), 1_000, audit("team.rotate_token"))
        assert changed == [dataclasses.replace(old, name="default-old", expires_ms=1_000)]
        # A second rotation within the grace: the first old one keeps its name and expiry.
        changed = await store.replace_token(token("payments", "h3", 20), 2_000, audit("team.rotate_token"))
        assert changed == [token("payments", "h2", 10, name="default-old-2", expires_ms=2_000)]
        assert [(t.name, t.token_hash, t.expires_ms) for t in await store.list_tokens("payments")] == [
            ("default-old", "payments-first", 1_000),
            ("default-old-2", "h2", 2_000),
            ("default", "h3", 0),
        ]
        # An old token that expires before the grace ends keeps its own expiry.
        await store.add_token(token("payments", "h-ci", 30, name="ci", expires_ms=500), audit("t"))
        changed = await store.replace_token(token("payments", "h-ci2", 40, name="ci"), 5_000, audit("t"))
        assert changed == [token("payments", "h-ci", 30, name="ci-old", expires_ms=500)]
        assert [a.action for a in await store.list_audit(team="payments")].count("team.rotate_token") == 2

    async def test_a_token_replaced_without_grace_is_revoked_at_once(self, store: Store) -> None:
        await self._team(store)
        changed = await store.replace_token(token("payments", "h2", 10), 10, audit("team.rotate_token"))
        assert changed == [token("payments", "payments-first", 1, revoked_ms=10)]
        assert [t.token_hash for t in await store.list_tokens("payments")] == ["h2"]
        assert [t.token_hash for t in await store.list_tokens("payments", revoked=True)] == [
            "payments-first",
            "h2",
        ]
        # Replacing a name no live token has only adds the new one.
        assert await store.replace_token(token("payments", "h3", 20, name="ci"), 100, audit("t")) == []
        assert [t.name for t in await store.list_tokens("payments")] == ["default", "ci"]

    async def test_revoking_an_unknown_name_changes_nothing(self, store: Store) -> None:
        await self._team(store)
        assert await store.revoke_token("payments", "nope", 5, audit("token.revoke")) == []
        assert await store.revoke_token("crm", "default", 5, audit("token.revoke")) == []
        await store.revoke_token("payments", "default", 5, audit("token.revoke"))
        assert await store.revoke_token("payments", "default", 6, audit("token.revoke")) == []  # already
        assert [a.action for a in await store.list_audit()] == ["team.create", "token.revoke"]
        assert await store.list_tokens() == []
        assert await store.list_tokens(revoked=True) == [token("payments", "payments-first", 1, revoked_ms=5)]

    async def test_the_last_use_of_a_token_only_moves_forward(self, store: Store) -> None:
        await self._team(store)
        await store.record_token_use({"payments-first": 50, "unknown-hash": 60})
        await store.record_token_use({"payments-first": 40})  # an older use, written late
        await store.record_token_use({})
        (stored,) = await store.list_tokens()
        assert stored.last_used_ms == 50

    async def test_team_defaults_are_audited_only_when_they_change(self, store: Store) -> None:
        await store.create_team(
            TeamRecord("crm", 20), token("crm", "h", 20), audit("team.create", owner_team="crm")
        )
        # A team stored without defaults holds the empty ones: setting those is no change.
        assert not await store.set_team_defaults("crm", RetryPolicy(), Timeouts(), audit("team.defaults"))
        retry = RetryPolicy(max_attempts=5, non_retryable=("Fatal",))
        assert await store.set_team_defaults("crm", retry, Timeouts(), audit("team.defaults"))
        assert not await store.set_team_defaults("crm", retry, Timeouts(), audit("team.defaults.same"))
        timeouts = Timeouts(heartbeat=10.0)
        assert await store.set_team_defaults("crm", retry, timeouts, audit("team.defaults.timeouts"))
        assert not await store.set_team_defaults("nobody", retry, timeouts, audit("team.defaults.nobody"))
        assert [a.action for a in await store.list_audit()] == [
            "team.create",
            "team.defaults",
            "team.defaults.timeouts",
        ]
        assert await store.get_team("crm") == TeamRecord("crm", 20, retry, timeouts)

    async def test_contracts_are_kept_with_every_field_and_ordered_by_version(self, store: Store) -> None:
        full = contract_record(
            "payments/charge",
            "1.10.0",
            description="Charge a card",
            timeouts=Timeouts(schedule_to_start=30.0),
            retry=RetryPolicy(max_attempts=3),
            idempotent=True,
            visibility="team",
            sensitive=("input.card",),
        )
        for record in [
            full,
            contract_record("payments/charge", "1.9.0"),
            contract_record("payments/charge", "2.0.0"),
        ]:
            await store.add_contract(record, audit("contract.register"))
        await store.add_contract(contract_record("payments/refund", "1.0.0"), audit("contract.register"))
        await store.add_contract(contract_record("crm/notify", "1.0.0"), audit("contract.register", "crm"))

        versions = await store.contract_versions("payments/charge")
        assert [r.contract.version for r in versions] == ["1.9.0", "1.10.0", "2.0.0"]
        assert versions[1] == full
        assert await store.contract_versions("payments/none") == []
        assert [r.contract.ref for r in await store.list_contracts()] == [
            "crm/notify@1.0.0",
            "payments/charge@1.9.0",
            "payments/charge@1.10.0",
            "payments/charge@2.0.0",
            "payments/refund@1.0.0",
        ]
        assert [r.contract.ref for r in await store.list_contracts(team="crm")] == ["crm/notify@1.0.0"]
        assert [r.contract.ref for r in await store.list_contracts(name_prefix="payments/r")] == [
            "payments/refund@1.0.0"
        ]
        assert await store.list_contracts(team="crm", name_prefix="payments/") == []

        sunset = Deprecation("2027-01-01", "payments/charge@2")
        await store.set_deprecation(
            "payments/charge", ["1.9.0", "1.10.0"], sunset, audit("contract.deprecate")
        )
        assert [r.contract.deprecated for r in await store.contract_versions("payments/charge")] == [
            sunset,
            sunset,
            None,
        ]
        await store.set_deprecation("payments/charge", ["1.9.0"], None, audit("contract.undeprecate"))
        assert [r.contract.deprecated for r in await store.contract_versions("payments/charge")] == [
            None,
            sunset,
            None,
        ]

    async def test_workflows_keep_every_version_and_their_consumers_index(self, store: Store) -> None:
        await store.add_workflow(
            workflow_record("payments/checkout", 1, ("payments/charge", "warehouse/ship")), audit("wf")
        )
        await store.add_workflow(workflow_record("payments/checkout", 2, ("payments/charge",)), audit("wf"))
        await store.add_workflow(workflow_record("crm/welcome", 1, ("warehouse/ship",)), audit("wf", "crm"))
        assert [w.version for w in await store.workflow_versions("payments/checkout")] == [1, 2]
        assert await store.workflow_versions("payments/checkout") == [
            workflow_record("payments/checkout", 1, ("payments/charge", "warehouse/ship")),
            workflow_record("payments/checkout", 2, ("payments/charge",)),
        ]
        assert [(w.name, w.version) for w in await store.list_workflows()] == [
            ("crm/welcome", 1),
            ("payments/checkout", 2),
        ]
        assert [w.name for w in await store.list_workflows(team="payments")] == ["payments/checkout"]
        # Only each workflow's newest version counts: checkout v2 no longer calls ship.
        assert [w.name for w in await store.consumers_of("warehouse/ship")] == ["crm/welcome"]
        assert [(w.name, w.version) for w in await store.consumers_of("payments/charge")] == [
            ("payments/checkout", 2)
        ]
        assert await store.consumers_of("crm/nothing") == []

    async def test_agents_are_registered_again_in_place(self, store: Store) -> None:
        first = AgentRecord("a1", "payments", (Binding("payments/charge", 1, "shell"),), 4, "host", "1.0", 10)
        assert await store.put_agent(first)
        assert await store.put_agent(AgentRecord("a2", "crm", (), 1))
        again = dataclasses.replace(first, concurrency=8, bindings=(Binding("payments/charge", 2),))
        assert await store.put_agent(again)
        assert sorted(await store.list_agents(), key=lambda a: a.agent_id) == [
            again,
            AgentRecord("a2", "crm", (), 1),
        ]

    async def test_in_flight_attempts_are_counted_by_agent(self, store: Store) -> None:
        await store.apply(
            Changes(
                runs=[run_record("r1"), run_record("r2", status="succeeded", finished_ms=2_000)],
                steps=[step_record("r1", "charge"), step_record("r1", "ship"), step_record("r2", "charge")],
                attempts=[
                    attempt_record("r1", "charge", 1, status="failed", agent_id="a1"),
                    attempt_record("r1", "charge", 2, status="running", agent_id="a1"),
                    attempt_record("r1", "ship", 1, status="running", agent_id="a2"),
                    attempt_record("r1", "ship", 2, status="scheduled"),
                    # a finished run's attempt left running (as an old record may be): not counted
                    attempt_record("r2", "charge", 1, status="running", agent_id="a1"),
                ],
            )
        )
        assert await store.in_flight_by_agent() == {"a1": 1, "a2": 1}

    async def test_an_agent_registration_is_audited_when_new_or_changed(self, store: Store) -> None:
        first = AgentRecord("a1", "payments", (Binding("payments/charge", 1, "shell"),), 4, "host", "1.0", 10)
        assert await store.put_agent(first, audit("agent.new"))
        # Again unchanged (a reconnect): stored with its new time, no entry.
        later = dataclasses.replace(first, registered_ms=20)
        assert not await store.put_agent(later, audit("agent.same"))
        assert await store.list_agents() == [later]
        changed = dataclasses.replace(later, bindings=(*first.bindings, Binding("payments/refund", 1)))
        assert await store.put_agent(changed, audit("agent.changed"))
        assert await store.put_agent(dataclasses.replace(changed, hostname="other"), audit("agent.moved"))
        assert [a.action for a in await store.list_audit()] == ["agent.new", "agent.changed", "agent.moved"]

    async def test_concurrent_first_registrations_of_one_agent_make_one_new(self, store: Store) -> None:
        agent = AgentRecord("a1", "payments", (Binding("payments/charge", 1),), 1, "host", "1.0", 10)
        answers = await asyncio.gather(
            *(store.put_agent(dataclasses.replace(agent, registered_ms=i), audit("agent")) for i in range(8))
        )
        assert answers.count(True) == 1
        assert [a.action for a in await store.list_audit()] == ["agent"]

    async def test_spans_are_stored_replaced_read_by_trace_and_pruned(self, store: Store) -> None:
        spans = [
            SpanRecord(
                "t" * 32,
                f"{i:016x}",
                "" if i == 1 else f"{1:016x}",
                f"s{i}",
                start_ns=10 - i,
                end_ns=i * 10,
                team="payments",
                kind="server",
                status="error",
                status_message="boom",
                attributes={"i": i, "nested": {"a": [1, 2]}},
                events=[{"name": "e", "time_ns": 5, "attributes": {}}],
                links=[{"trace_id": "a" * 32, "span_id": "b" * 16}],
                run_id="r1",
            )
            for i in range(1, 4)
        ]
        other = SpanRecord("o" * 32, "1" * 16, "", "other", 1, 100)
        await store.insert_spans([*spans, other])
        await store.insert_spans([])
        assert await store.spans_for_trace("t" * 32) == spans[::-1]  # by start time
        renamed = dataclasses.replace(spans[0], name="renamed")
        await store.insert_spans([renamed])  # the same span exported again: replaced
        assert [s.name for s in await store.spans_for_trace("t" * 32)] == ["s3", "s2", "renamed"]
        assert await store.prune_spans(before_ns=25) == 2
        assert [s.name for s in await store.spans_for_trace("t" * 32)] == ["s3"]
        assert await store.spans_for_trace("o" * 32) == [other]
        assert await store.spans_for_trace("none") == []

    # ---------- web UI sessions ----------

    async def test_a_ui_session_is_stored_whole_touched_forward_only_and_deleted(self, store: Store) -> None:
        every_byte = ui_session("k1", 1_000, created_ms=900, sealed_token=bytes(range(256)))
        admin = ui_session("k2", 1_000, team="", admin=True)
        await store.create_ui_session(every_byte, keep=100)
        await store.create_ui_session(admin, keep=100)
        assert await store.get_ui_session("k1") == every_byte
        assert await store.get_ui_session("k2") == admin
        assert await store.get_ui_session("nope") is None

        assert await store.touch_ui_session("k1", 5_000) is True
        assert await store.touch_ui_session("k1", 4_000) is True  # an older time moves nothing back
        assert await store.get_ui_session("k1") == dataclasses.replace(every_byte, last_seen_ms=5_000)
        assert await store.touch_ui_session("nope", 5_000) is False

        assert await store.delete_ui_session("k1") is True
        assert await store.delete_ui_session("k1") is False
        assert await store.get_ui_session("k1") is None
        assert await store.touch_ui_session("k1", 6_000) is False
        assert await store.get_ui_session("k2") == admin

    async def test_a_new_ui_session_evicts_the_least_recently_seen_beyond_keep(self, store: Store) -> None:
        keys = [f"k{i}" for i in range(6)]
        for i, key in enumerate(keys):
            await store.create_ui_session(ui_session(key, 1_000 + i), keep=100)
        await store.touch_ui_session("k0", 2_000)  # seen last: kept
        # Seen at the same time as k5 but created before it: evicted first.
        await store.create_ui_session(ui_session("tie", 1_005, created_ms=1), keep=100)
        # A new session whose clock is behind the others' (another coordinator's) is kept too.
        await store.create_ui_session(ui_session("new", 10), keep=3)
        assert await ui_sessions_kept(store, [*keys, "tie", "new"]) == ["k0", "k5", "new"]
        await store.create_ui_session(ui_session("alone", 20), keep=1)
        assert await ui_sessions_kept(store, [*keys, "tie", "new", "alone"]) == ["alone"]

    async def test_concurrent_sign_ins_leave_no_more_ui_sessions_than_keep(self, store: Store) -> None:
        keys = [f"k{i:02}" for i in range(20)]
        await asyncio.gather(
            *(store.create_ui_session(ui_session(k, 1_000 + i), keep=5) for i, k in enumerate(keys))
        )
        assert len(await ui_sessions_kept(store, keys)) == 5

    async def test_pruning_deletes_the_ui_sessions_idle_too_long_or_too_old(self, store: Store) -> None:
        await store.create_ui_session(ui_session("idle", 100, created_ms=100), keep=100)
        await store.create_ui_session(ui_session("old", 900, created_ms=50), keep=100)
        await store.create_ui_session(ui_session("fresh", 900, created_ms=100), keep=100)
        await store.create_ui_session(ui_session("edge", 500, created_ms=100), keep=100)
        # Seen before 500 or created before 100: "edge" is exactly at both bounds and stays.
        assert await store.prune_ui_sessions(seen_before_ms=500, created_before_ms=100) == 2
        assert await ui_sessions_kept(store, ["idle", "old", "fresh", "edge"]) == ["fresh", "edge"]
        assert await store.prune_ui_sessions(seen_before_ms=500, created_before_ms=100) == 0

    async def test_ui_sessions_are_still_there_when_the_store_is_opened_again(
        self, store_factory: StoreFactory
    ) -> None:
        session = ui_session("k1", 1_000)
        store = store_factory.new()
        await store.open()
        try:
            await store.create_ui_session(session, keep=100)
            await store.touch_ui_session("k1", 2_000)
        finally:
            await store.close()
        again = store_factory.new()
        await again.open()
        try:
            assert await again.get_ui_session("k1") == dataclasses.replace(session, last_seen_ms=2_000)
        finally:
            await again.close()

    async def test_a_ui_session_made_through_one_store_object_is_served_and_ended_by_another(
        self, store_factory: StoreFactory
    ) -> None:
        if not store_factory.second_store_allowed:
            pytest.skip("this store serves one process: a second store on its database is refused")
        first, second = store_factory.new(), store_factory.new()
        await asyncio.gather(first.open(), second.open())
        try:
            session = ui_session("k1", 1_000)
            await first.create_ui_session(session, keep=100)
            assert await second.get_ui_session("k1") == session
            assert await second.touch_ui_session("k1", 3_000) is True
            assert await first.get_ui_session("k1") == dataclasses.replace(session, last_seen_ms=3_000)
            assert await second.delete_ui_session("k1") is True
            assert await first.get_ui_session("k1") is None
        finally:
            await second.close()
            await first.close()

    # ---------- retention ----------

    async def _run_with_rows(self, store: Store, run_id: str, status: str, finished_ms: int) -> None:
        """A run with a step, an attempt, a request record, a span, a timer and an offer."""
        changes = Changes(
            runs=[run_record(run_id, status=status, finished_ms=finished_ms)],
            steps=[step_record(run_id, "charge")],
            attempts=[attempt_record(run_id, "charge")],
            timers_set=[timer(TIMER_RETRY, f"{run_id}/charge", 5_000, run_id=run_id)],
            offers_add=[dataclasses.replace(offer(f"{run_id}:charge:1", 1_000), run_id=run_id)],
        )
        changes.requests[("complete", f"req-{run_id}")] = {"accepted": True}
        await store.apply(changes)
        # In the run's trace (run_record's), by which its spans are found when it is purged.
        span_id = hashlib.sha256(run_id.encode()).hexdigest()[:16]
        span = SpanRecord(
            "a" * 32, span_id, "", run_id, 1, 2, run_id=run_id, attributes={"accord.run_id": run_id}
        )
        await store.insert_spans([span])

    async def _rows_of(self, store: Store, run_id: str) -> list[str]:
        kinds = []
        if await store.get_run(run_id) is not None:
            kinds.append("run")
        steps, attempts = await store.run_steps(run_id)
        kinds += ["step"] * len(steps) + ["attempt"] * len(attempts)
        if await store.get_request("complete", f"req-{run_id}") is not None:
            kinds.append("request")
        if any(s.run_id == run_id for s in await store.spans_for_trace("a" * 32)):
            kinds.append("span")
        if any(t.run_id == run_id for t in await all_timers(store)):
            kinds.append("timer")
        if any(o.run_id == run_id for o in await store.offers([("payments/charge", 1)], 1000)):
            kinds.append("offer")
        return kinds

    async def test_purging_runs_deletes_finished_runs_before_the_time_with_all_their_rows(
        self, store: Store
    ) -> None:
        await self._run_with_rows(store, "old-ok", "succeeded", 1_000)
        await self._run_with_rows(store, "old-failed", "failed", 2_000)
        await self._run_with_rows(store, "old-cancelled", "cancelled", 2_500)
        await self._run_with_rows(store, "new-ok", "succeeded", 9_000)
        await self._run_with_rows(store, "still-running", "running", 0)  # however old
        await self._run_with_rows(store, "pending", "pending", 0)
        everything = ["run", "step", "attempt", "request", "span", "timer", "offer"]
        gone = ["request"]  # request records go by age (purge_requests), not with their run

        assert await store.purge_runs(5_000, 2) == 2  # the earliest two first
        assert await self._rows_of(store, "old-ok") == gone
        assert await self._rows_of(store, "old-failed") == gone
        assert await self._rows_of(store, "old-cancelled") == everything
        assert await store.purge_runs(5_000, 2) == 1
        assert await store.purge_runs(5_000, 2) == 0
        assert await self._rows_of(store, "old-cancelled") == gone
        for kept in ("new-ok", "still-running", "pending"):
            assert await self._rows_of(store, kept) == everything, kept
        assert await store.purge_runs(10**13, 100) == 1  # new-ok; the unfinished never
        assert await self._rows_of(store, "still-running") == everything
        assert await store.purge_runs(10**13, 0) == 0

    async def test_purged_runs_are_folded_into_daily_aggregates_cut_at_the_changes_they_use(
        self, store: Store
    ) -> None:
        day = 86_400_000
        charge = {"payments/charge": "1.2.0"}

        def finished(run_id: str, status: str, created: int, took: int = 100) -> RunRecord:
            return run_record(
                run_id, status=status, created_ms=created, finished_ms=created + took, pinned=charge
            )

        def change(action: str, obj: str, at_ms: int, **details: Any) -> AuditRecord:
            return AuditRecord(
                at_ms=at_ms,
                actor="payments",
                action=action,
                object=obj,
                owner_team="payments",
                details=details,
            )

        runs = [
            finished("a", "succeeded", 1_000, took=900),  # the first part of the day
            finished("b", "failed", 1_500),
            finished("c", "succeeded", 3_000, took=1_000),  # after a new version of a contract it pins
            finished("d", "succeeded", 3_500),  # ended before c
            finished("e", "succeeded", 5_000),  # after an agent's registration serving it
            finished("f", "succeeded", day + 10),  # the next day
            finished("kept", "succeeded", 9 * day),
        ]
        starts = [change("run.start", r.run_id, r.created_ms, workflow=r.workflow) for r in runs]
        admin = dataclasses.replace(starts[1], actor="admin", platform_intervention=True)
        await store.apply(
            Changes(
                runs=runs,
                audit=[
                    starts[0],
                    admin,  # the admin started b: a platform intervention, kept
                    *starts[2:],
                    change("run.override", "a", 1_000, rule="r", reason="why"),
                    change("contract.register", "payments/charge@1.3.0", 2_000),
                    change("contract.register", "crm/notify@1.0.0", 3_200),  # pinned by none: no cut
                    change("agent.register", "payments-7", 4_000, serves=["payments/charge@1"]),
                    change("agent.register", "payments-8", 4_500, serves=["payments/charge@2"]),  # no cut
                ],
            )
        )
        assert await store.list_run_digests(0, 0, 10) == []
        assert await store.purge_runs(2 * day, 2) == 2
        assert await store.purge_runs(2 * day, 10) == 4

        def seen(records: list[RunRecord]) -> list[tuple[str, int, int]]:
            assert all(r.pinned == charge and r.workflow == "payments/checkout" for r in records)
            assert all(r.workflow_version == 1 and r.team == "payments" for r in records)
            return [(r.status, r.created_ms, r.finished_ms) for r in records]

        # One row per part of a day and status; one with more runs reads as its earliest
        # creation and earliest end, and its latest creation and latest end.
        digests = await store.list_run_digests(0, 0, 10)
        assert seen(digests) == [
            ("succeeded", 1_000, 1_900),
            ("failed", 1_500, 1_600),
            ("succeeded", 3_000, 3_600),  # c and d: the earliest creation (c) and end (d)
            ("succeeded", 3_500, 4_000),  # the latest creation (d) and end (c)
            ("succeeded", 5_000, 5_100),
            ("succeeded", day + 10, day + 110),
        ]
        assert len({d.run_id for d in digests}) == 6
        # From a time (a part that began before it counts from it), paged, newest first.
        assert seen(await store.list_run_digests(3_200, 0, 10)) == [
            ("succeeded", 3_200, 3_600),
            ("succeeded", 3_500, 4_000),
            ("succeeded", 5_000, 5_100),
            ("succeeded", day + 10, day + 110),
        ]
        assert [d.run_id for d in await store.list_run_digests(0, 2, 2)] == [d.run_id for d in digests[2:4]]
        newest = await store.list_run_digests(0, 0, 2, newest_first=True)
        assert [d.run_id for d in newest] == [digests[5].run_id, digests[4].run_id]
        assert [d.run_id for d in await store.list_run_digests(0, 5, 9, newest_first=True)] == [
            digests[0].run_id
        ]

        # A run's start went with it; the admin's start, the override and the changes are kept.
        left = [(e.action, e.object) for e in await store.list_audit("", 0, 100)]
        assert [o for a, o in left if a == "run.start"] == ["b", "kept"]
        assert ("run.override", "a") in left
        assert len(left) == 2 + 1 + 4

        # Kept as long as the audit log: a row goes once every run of it ended before the cutoff.
        assert await store.purge_run_days(5_101, 10) == 4
        assert seen(await store.list_run_digests(0, 0, 10)) == [("succeeded", day + 10, day + 110)]

    async def test_a_retention_pass_deletes_every_expired_daily_aggregate_batch_by_batch_and_counts_them(
        self, store: Store
    ) -> None:
        # More aggregates past the audit retention than one batch (one a day), and no audit
        # entry: the pass goes on with them by themselves until none is left, and says how many.
        day = 86_400_000
        await store.apply(
            Changes(
                runs=[
                    run_record(f"r{i}", status="succeeded", created_ms=i * day, finished_ms=i * day + 1)
                    for i in range(1, 8)
                ]
                + [run_record("kept", status="succeeded", created_ms=20 * day, finished_ms=20 * day + 1)]
            )
        )
        assert await store.purge_runs(10**13, 100) == 8
        assert len(await store.list_run_digests(0, 0, 100)) == 8
        retention = Retention.of(None, None, 1.0)  # the audit log (and what the report keeps): 1 s
        result = await purge_once(store, retention, now_ms=10 * day, batch=2, pause_s=0)
        assert result.deleted["run_days"] == 7
        assert [d.created_ms for d in await store.list_run_digests(0, 0, 100)] == [20 * day]

    async def test_a_purged_run_id_and_idempotency_key_can_be_used_again(self, store: Store) -> None:
        await store.apply(
            Changes(runs=[run_record("r1", status="succeeded", finished_ms=10, idempotency_key="k")])
        )
        assert await store.purge_runs(100, 10) == 1
        assert await store.find_run("payments/checkout", "payments", "k") is None
        await store.apply(Changes(runs=[run_record("r1", idempotency_key="k")]))
        found = await store.find_run("payments/checkout", "payments", "k")
        assert found is not None and found.run_id == "r1"

    async def test_purging_events_audit_and_request_records_goes_by_age_in_batches(
        self, store: Store
    ) -> None:
        for i in range(5):
            handled = dataclasses.replace(
                event(f"e{i}", 1_000 * (i + 1)), delivered_ms=1_000 * (i + 1), handled_ms=1_000 * (i + 1)
            )
            changes = Changes(events=[handled], audit=[audit(f"a{i}", at_ms=1_000 * (i + 1))])
            changes.requests[("event", f"q{i}")] = {"event_id": f"e{i}"}
            await store.apply(changes)
        # One whose triggers have not run yet is kept, however old.
        await store.apply(Changes(events=[event("waiting", 500)]))
        assert await store.purge_events(3_500, 2) == 2
        assert await store.purge_events(3_500, 2) == 1
        assert await store.purge_events(3_500, 2) == 0
        assert sorted(e.event_id for e in await store.list_events()) == ["e3", "e4", "waiting"]
        assert await store.purge_audit(2_500, 10) == 2
        assert [a.action for a in await store.list_audit()] == ["a2", "a3", "a4"]
        # Request records were written now (the store's clock), not at their event's time.
        assert await store.purge_requests(1, 10) == 0
        assert await store.get_request("event", "q0") == {"event_id": "e0"}
        assert await store.purge_requests(10**13, 3) == 3
        assert await store.purge_requests(10**13, 3) == 2
        assert await store.get_request("event", "q4") is None

    async def test_spans_are_pruned_in_batches_the_earliest_first(self, store: Store) -> None:
        spans = [SpanRecord("f" * 32, f"{i:016x}", "", f"s{i}", 0, i * 10) for i in range(1, 6)]
        await store.insert_spans(spans)
        assert await store.prune_spans(45, limit=3) == 3
        assert [s.name for s in await store.spans_for_trace("f" * 32)] == ["s4", "s5"]
        assert await store.prune_spans(45, limit=3) == 1
        assert await store.reclaim_space(100) >= 0

    async def test_queue_stats_count_each_queues_offers_and_their_earliest(self, store: Store) -> None:
        await store.apply(
            Changes(
                runs=[run_record("r1")],
                offers_add=[
                    offer("a1", 5_000),
                    offer("a2", 3_000),
                    offer("a3", 7_000, contract="billing/invoice", major=2),
                ],
            )
        )
        assert await store.queue_stats() == [
            ("billing/invoice", 2, 1, 7_000),
            ("payments/charge", 1, 2, 3_000),
        ]

    # ---------- what is stored per run (coordinator/store/codec.py) ----------

    async def test_steps_and_attempts_read_back_whole_however_compactly_stored(self, store: Store) -> None:
        policy = {
            "retry": {"max_attempts": 3, "initial_backoff": 1.0, "backoff_coefficient": 2.0},
            "timeouts": {"start_to_close": 60.0, "heartbeat": None},
        }
        other = {"retry": {"max_attempts": 1}, "timeouts": {}}
        steps = [
            step_record("r1", "a", policy=policy, input={"x": 1}),
            step_record("r1", "b", policy=other, idempotency_key="custom-key", item_index=0, fan_out=2),
            step_record("r1", "c"),  # no policy at all
            step_record("r2", "a", policy=policy, error=TaskFailure("Boom", "it broke", False, '{"d":1}')),
        ]
        attempts = [
            attempt_record("r1", "a"),
            attempt_record("r1", "b", 2, status="failed", agent_id="agent-1", error=TaskFailure("T", "m")),
            attempt_record("r2", "a", started_ms=5, finished_ms=6, close_deadline_ms=9),
        ]
        await store.apply(Changes(runs=[run_record("r1"), run_record("r2")], steps=steps, attempts=attempts))
        snapshot = await store.load_run("r1")
        assert snapshot is not None
        assert snapshot.steps == steps[:3]
        assert snapshot.attempts == attempts[:2]
        assert await store.run_steps("r2") == ([steps[3]], [attempts[2]])
        assert await store.get_attempt(attempts[1].attempt_id) == attempts[1]
        # A step written again keeps its policy (stored once, named by the row).
        changed = dataclasses.replace(steps[0], status="succeeded", output={"y": 2})
        await store.apply(Changes(steps=[changed], expect_versions={"r1": 1}))
        assert (await store.run_steps("r1"))[0][0] == changed

    async def test_span_attributes_read_back_exactly(self, store: Store) -> None:
        tricky = {
            "accord.run_id": "r1",
            "accord.team": "payments",
            "accord.step_id": "s1",
            "accord.attempt": 2,
            "accord.attempt_id": "r1:s1:2",
            "accord.": "empty name",
            "accord..dots": 1,
            ".leading": [1, 2],
            "..two": True,
            ".": "a dot",
            "": "empty",
            "http.url": "https://example.test",
        }
        spans = [
            SpanRecord("c" * 32, "1" * 16, "", "all", 1, 2, team="payments", attributes=tricky, run_id="r1"),
            # Not what the row says: kept as they are.
            SpanRecord(
                "c" * 32,
                "2" * 16,
                "",
                "differs",
                1,
                2,
                team="other",
                attributes={"accord.run_id": "r9", "accord.team": "payments", "accord.attempt_id": "x:y:1"},
                run_id="r1",
            ),
            SpanRecord("c" * 32, "3" * 16, "", "bare", 1, 2),
            # Names the engine gives its spans, and one that only looks like one.
            SpanRecord("c" * 32, "4" * 16, "1" * 16, "step s1", 1, 2, attributes={"accord.step_id": "s1"}),
            SpanRecord("c" * 32, "5" * 16, "1" * 16, "step s1", 1, 2, attributes={"accord.step_id": "s2"}),
            SpanRecord(
                "c" * 32,
                "6" * 16,
                "4" * 16,
                "attempt 2 t/c@1.0.0",
                1,
                2,
                attributes={
                    "accord.attempt": 2,
                    "accord.contract": "t/c",
                    "accord.contract_version": "1.0.0",
                },
            ),
            SpanRecord("c" * 32, "7" * 16, "", "run t/w", 1, 2, attributes={"accord.workflow": "t/w"}),
            # Ids that are not lower-case hex are kept as they are.
            SpanRecord("c" * 32, "NOT-HEX", "AB" * 8, "odd ids", 1, 2),
        ]
        await store.insert_spans(spans)
        assert sorted(await store.spans_for_trace("c" * 32), key=lambda s: s.span_id) == spans

    async def test_the_event_backlog_counts_each_contracts_events_the_bus_has_not_taken(
        self, store: Store
    ) -> None:
        await store.apply(
            Changes(
                events=[
                    event("e1", 5_000),
                    event("e2", 3_000),
                    event("e3", 7_000, contract="billing/issued"),
                    dataclasses.replace(event("e4", 1_000), delivered_ms=1_500),
                ]
            )
        )
        assert await store.event_backlog() == [("billing/issued", 1, 7_000), ("payments/paid", 2, 3_000)]

    # ---------- lifecycle: retired versions, disabled workflows, deleted versions, overrides ----------

    async def test_a_retired_version_stays_stored_and_says_when_it_was_retired(self, store: Store) -> None:
        for version in ("1.0.0", "1.1.0", "2.0.0"):
            await store.add_contract(contract_record("payments/charge", version), audit("contract.register"))
        await store.retire_contract("payments/charge", ["1.0.0", "1.1.0"], 5_000, audit("contract.retire"))
        assert [
            (r.contract.version, r.retired_ms) for r in await store.contract_versions("payments/charge")
        ] == [
            ("1.0.0", 5_000),
            ("1.1.0", 5_000),
            ("2.0.0", 0),
        ]
        assert [e.action for e in await store.list_audit()][-1] == "contract.retire"

    async def test_runs_are_counted_per_workflow_version_team_and_pinned_version(self, store: Store) -> None:
        runs = [
            run_record("r1", created_ms=1_000, pinned={"payments/charge": "1.0.0"}),
            run_record("r2", created_ms=2_000, pinned={"payments/charge": "1.0.0"}, status="succeeded"),
            run_record("r3", created_ms=3_000, pinned={"payments/charge": "1.1.0"}, workflow_version=2),
            run_record(
                "r4",
                created_ms=4_000,
                pinned={"payments/charge": "1.0.0"},
                workflow="crm/welcome",
                team="crm",
            ),
            run_record("r5", created_ms=5_000, pinned={"warehouse/ship": "1.0.0"}),
            run_record("old", created_ms=10, pinned={"payments/charge": "1.0.0"}),
        ]
        await store.apply(Changes(runs=runs))
        counts = await store.contract_callers("payments/charge", 1_000)
        assert sorted(
            (c.workflow, c.workflow_version, c.caller_team, c.contract_version, c.runs) for c in counts
        ) == [
            ("crm/welcome", 1, "crm", "1.0.0", 1),
            ("payments/checkout", 1, "payments", "1.0.0", 2),
            ("payments/checkout", 2, "payments", "1.1.0", 1),
        ]
        assert counts[0].runs == 2  # most runs first
        assert await store.contract_callers("nobody/calls", 0) == []
        # Only unfinished runs pin it for retirement: r2 succeeded.
        pins = await store.active_runs_pinning("payments/charge")
        assert [(p.run_id, p.workflow, p.workflow_version, p.team, p.contract_version) for p in pins] == [
            ("old", "payments/checkout", 1, "payments", "1.0.0"),
            ("r1", "payments/checkout", 1, "payments", "1.0.0"),
            ("r3", "payments/checkout", 2, "payments", "1.1.0"),
            ("r4", "crm/welcome", 1, "crm", "1.0.0"),
        ]

    async def test_consumers_include_older_versions_that_unfinished_runs_use(self, store: Store) -> None:
        await store.add_workflow(workflow_record("payments/checkout", 1, ("payments/charge",)), audit("wf"))
        await store.add_workflow(workflow_record("payments/checkout", 2, ("warehouse/ship",)), audit("wf"))
        await store.add_workflow(workflow_record("payments/checkout", 3, ("warehouse/ship",)), audit("wf"))
        assert await store.consumers_of("payments/charge") == []
        await store.apply(Changes(runs=[run_record("r1", workflow_version=1)]))
        assert [(w.name, w.version) for w in await store.consumers_of("payments/charge")] == [
            ("payments/checkout", 1)
        ]
        await store.apply(
            Changes(
                runs=[run_record("r1", workflow_version=1, status="succeeded")], expect_versions={"r1": 1}
            )
        )
        assert await store.consumers_of("payments/charge") == []
        assert [(w.name, w.version) for w in await store.consumers_of("warehouse/ship")] == [
            ("payments/checkout", 3)
        ]

    async def test_a_workflow_is_disabled_and_enabled_again(self, store: Store) -> None:
        assert await store.workflow_disabled_ms("payments/checkout") == 0
        await store.set_workflow_disabled("payments/checkout", 7_000, "payments", audit("workflow.disable"))
        assert await store.workflow_disabled_ms("payments/checkout") == 7_000
        assert await store.workflow_disabled_ms("payments/other") == 0
        await store.set_workflow_disabled("payments/checkout", 0, "payments", audit("workflow.enable"))
        assert await store.workflow_disabled_ms("payments/checkout") == 0
        assert [e.action for e in await store.list_audit()] == ["workflow.disable", "workflow.enable"]

    async def test_a_workflow_version_no_run_references_is_deleted_and_others_are_not(
        self, store: Store
    ) -> None:
        await store.add_workflow(workflow_record("payments/checkout", 1, ("payments/charge",)), audit("wf"))
        await store.add_workflow(workflow_record("payments/checkout", 2, ("payments/charge",)), audit("wf"))
        await store.add_workflow(workflow_record("payments/checkout", 3, ("payments/charge",)), audit("wf"))
        await store.apply(Changes(runs=[run_record("r1", workflow_version=1, status="succeeded")]))
        assert await store.delete_workflow_version("payments/checkout", 1, audit("workflow.delete")) == ["r1"]
        assert await store.delete_workflow_version("payments/checkout", 2, audit("workflow.delete")) == []
        assert [w.version for w in await store.workflow_versions("payments/checkout")] == [1, 3]
        assert [e.action for e in await store.list_audit()].count("workflow.delete") == 1
        # Its consumer index rows went with it.
        await store.apply(Changes(runs=[run_record("r2", workflow_version=2)]))
        assert [w.version for w in await store.consumers_of("payments/charge")] == [3]

    async def test_overrides_are_listed_by_team_and_time(self, store: Store) -> None:
        await store.add_audit(audit("run.override", "shipping", "shipping", at_ms=100))
        await store.add_audit(audit("run.start", "shipping", "shipping", at_ms=150))
        await store.add_audit(audit("run.override", "crm", "admin", at_ms=200))
        await store.add_audit(audit("run.override", "shipping", "shipping", at_ms=300))
        assert [(e.owner_team, e.at_ms) for e in await store.list_overrides()] == [
            ("shipping", 100),
            ("crm", 200),
            ("shipping", 300),
        ]
        assert [e.at_ms for e in await store.list_overrides("shipping")] == [100, 300]
        assert [e.at_ms for e in await store.list_overrides(since_ms=150)] == [200, 300]
        assert await store.list_overrides("payments") == []

    async def test_policy_overrides_are_listed_with_run_overrides(self, store: Store) -> None:
        await store.add_audit(audit("run.override", "shipping", "shipping", at_ms=100))
        await store.add_audit(audit("policy.override", "shipping", "shipping", at_ms=200))
        await store.add_audit(audit("policy.apply", "", "admin", at_ms=250))
        assert [e.action for e in await store.list_overrides("shipping")] == [
            "run.override",
            "policy.override",
        ]

    async def test_a_policy_file_per_scope_replaced_when_applied_again(self, store: Store) -> None:
        assert await store.list_policies() == []
        await store.put_policy(
            PolicyRecord("", "rules: []", "platform.yaml", 100, "admin"), audit("policy.apply")
        )
        await store.put_policy(
            PolicyRecord("crm", "rules: [1]", "crm.yaml", 200, "crm"), audit("policy.apply")
        )
        await store.put_policy(PolicyRecord("", "rules: [2]", "p2.yaml", 300, "admin"), audit("policy.apply"))
        assert await store.list_policies() == [
            PolicyRecord("", "rules: [2]", "p2.yaml", 300, "admin"),
            PolicyRecord("crm", "rules: [1]", "crm.yaml", 200, "crm"),
        ]
        assert [e.action for e in await store.list_audit()].count("policy.apply") == 3
