"""SqliteStore: migrations, one-transaction apply, reload of live state, spans, concurrency."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from importlib import resources
from pathlib import Path

from coordinator.store.records import (
    AttemptRecord,
    AuditRecord,
    Changes,
    RunFilter,
    RunRecord,
    SpanRecord,
    StepRecord,
    TaskFailure,
    TeamRecord,
)
from coordinator.store.sqlite import SqliteStore


def _run(run_id: str, status: str = "running", team: str = "payments") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        workflow=f"{team}/w",
        workflow_version=1,
        team=team,
        status=status,
        input={"order_id": run_id},
        created_ms=1000,
        trace_id="a" * 32,
        span_id="b" * 16,
        involved_teams=(team, "warehouse"),
        idempotency_key=f"key-{run_id}",
        caller_team=team,
    )


async def test_migrations_and_reload_of_live_state(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    step = StepRecord(
        "r1", "charge", "charge", "payments/c", "1.0.0", "payments", "running", "r1:charge", "c" * 16
    )
    attempt = AttemptRecord(
        "r1:charge:1",
        "r1",
        "charge",
        1,
        "failed",
        "payments/c",
        1,
        "d" * 16,
        5,
        error=TaskFailure("E", "boom"),
    )
    await store.apply(Changes(runs=[_run("r1"), _run("r2", "succeeded")], steps=[step], attempts=[attempt]))
    await store.close()

    again = SqliteStore(tmp_path / "db.sqlite")
    await again.open()  # migrations are not applied twice
    state = await again.load_active()
    assert [r.run_id for r in state.runs] == ["r1"]
    assert state.steps == [step]
    assert state.attempts[0].error == TaskFailure("E", "boom")
    assert (await again.find_run("payments/w", "payments", "key-r2")).run_id == "r2"  # type: ignore[union-attr]
    assert [r.run_id for r in await again.list_runs(RunFilter(visible_to="warehouse"))] == ["r1", "r2"]
    assert await again.list_runs(RunFilter(visible_to="crm")) == []
    await again.close()
    version = sqlite3.connect(tmp_path / "db.sqlite").execute("PRAGMA user_version").fetchone()[0]
    assert version == 2


async def test_a_version_1_database_keeps_its_runs_and_gains_their_sampling_decision(tmp_path: Path) -> None:
    """0002 adds runs.sampled: runs stored before were all sampled; new ones keep their decision."""
    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as connection:
        connection.executescript(
            resources.files("coordinator.store.migrations").joinpath("0001_init.sql").read_text()
        )
        connection.execute("PRAGMA user_version = 1")
        old = json.dumps(  # the whole record as version 1 wrote it: no "sampled"
            {
                "run_id": "r-old",
                "workflow": "payments/w",
                "workflow_version": 1,
                "team": "payments",
                "status": "succeeded",
                "input": {},
                "created_ms": 1,
                "trace_id": "a" * 32,
                "span_id": "b" * 16,
            }
        )
        connection.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            ("r-old", "payments/w", 1, "payments", "succeeded", 1, 2, "", "payments", ",payments,", old),
        )  # fmt: skip
    store = SqliteStore(db)
    await store.open()
    try:
        before = await store.get_run("r-old")
        assert before is not None and before.sampled
        unsampled = _run("r-new")
        unsampled.sampled = False
        await store.apply(Changes(runs=[unsampled]))
        after = await store.get_run("r-new")
        assert after is not None and not after.sampled
        assert [r.run_id for r in await store.list_runs(RunFilter())] == ["r-new", "r-old"]
    finally:
        await store.close()
    with sqlite3.connect(db) as connection:
        assert dict(connection.execute("SELECT run_id, sampled FROM runs").fetchall()) == {
            "r-old": 1,
            "r-new": 0,
        }
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 2
        indexes = {row[1] for row in connection.execute("PRAGMA index_list(runs)")}
        assert {"runs_active", "runs_created", "runs_idem"} <= indexes


async def test_concurrent_writes_are_all_durable_and_a_failing_job_does_not_undo_others(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    audit = AuditRecord(1, "admin", "team.create", "x", "x")
    await store.create_team(TeamRecord("dup", "h", 1), audit)
    results = await asyncio.gather(
        *(store.apply(Changes(runs=[_run(f"r{i}")])) for i in range(200)),
        store.create_team(TeamRecord("dup", "h", 1), audit),  # fails: exists
        return_exceptions=True,
    )
    assert isinstance(results[-1], KeyError)
    assert len((await store.load_active()).runs) == 200
    await store.close()


async def test_spans_insert_query_prune(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    spans = [
        SpanRecord(
            "t" * 32, f"{i:016x}", "", f"s{i}", start_ns=i, end_ns=i * 10, attributes={"i": i}, run_id="r"
        )
        for i in range(1, 4)
    ]
    await store.insert_spans(spans)
    assert await store.spans_for_trace("t" * 32) == spans
    assert await store.prune_spans(before_ns=25) == 2
    assert [s.name for s in await store.spans_for_trace("t" * 32)] == ["s3"]
    await store.close()
