"""SqliteStore beyond the conformance suite: schema migrations and the backfill of databases the
old engine wrote, group commit, spans, and the one-process lock on the database file.

What every Store must do is in ``store_conformance.py`` (run by test_store_conformance_sqlite).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import stat
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from contracts.errors import FailedPreconditionError
from coordinator.store import codec
from coordinator.store.records import (
    INFLIGHT_TEAM,
    TIMER_LEASE,
    TIMER_RETRY,
    TIMER_SCHEDULE_TO_START,
    TIMER_START_TO_CLOSE,
    AttemptRecord,
    AuditRecord,
    Changes,
    LimitReached,
    OfferRecord,
    RunFilter,
    RunRecord,
    SpanRecord,
    StepRecord,
    TeamRecord,
    TimerRecord,
    TokenRecord,
    VersionConflict,
)
from coordinator.store.sqlite import DatabaseInUseError, SqliteStore, lock_path
from tests.coordinator.store_conformance import (
    FAR,
    assert_payloads_moved_out,
    attempt_record,
    read_and_move_old_payloads,
    rows_before_payload_columns,
    run_record,
    step_record,
)

# The schema version a database has once every migration this tree holds is applied.
NEWEST_SCHEMA = max(
    int(f.name.split("_", 1)[0])
    for f in resources.files("coordinator.store.migrations").iterdir()
    if f.name.endswith(".sql")
)
ONE_PROCESS = (
    "SQLite serves one coordinator process; stop the other, use another --db, "
    "or use PostgreSQL for several coordinators"
)


def _migrations(db: Path, *names: str) -> None:
    """A database at the schema the named migrations make, as an older Accord left it."""
    with sqlite3.connect(db) as connection:
        for name in names:
            connection.executescript(
                resources.files("coordinator.store.migrations").joinpath(name).read_text()
            )
        connection.execute(f"PRAGMA user_version = {len(names)}")


def _migrations_up_to(version: int) -> list[str]:
    """The names of the migrations up to schema ``version``, in order."""
    return sorted(
        f.name
        for f in resources.files("coordinator.store.migrations").iterdir()
        if f.name.endswith(".sql") and int(f.name.split("_", 1)[0]) <= version
    )


def _old_run_row(run: RunRecord) -> tuple[Any, ...]:
    """A runs row as the engine before schema 3 wrote it: positional, no version anywhere."""
    data = dataclasses.asdict(run)
    del data["version"]
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
        "," + ",".join(run.involved_teams) + ",",
        int(run.sampled),
        json.dumps(data),
    )


def _insert_old(
    db: Path,
    runs: list[RunRecord],
    steps: list[StepRecord] | None = None,
    attempts: list[AttemptRecord] | None = None,
) -> None:
    steps, attempts = steps or [], attempts or []
    with sqlite3.connect(db) as connection:
        connection.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", map(_old_run_row, runs))
        connection.executemany(
            "INSERT INTO steps VALUES (?,?,?)",
            [(s.run_id, s.step_id, json.dumps(dataclasses.asdict(s))) for s in steps],
        )
        connection.executemany(
            "INSERT INTO attempts VALUES (?,?,?,?)",
            [(a.attempt_id, a.run_id, a.step_id, json.dumps(dataclasses.asdict(a))) for a in attempts],
        )


def _schema(db: Path) -> tuple[int, set[str], set[str]]:
    with sqlite3.connect(db) as connection:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    return version, tables, indexes


# ---------- migrations ----------


async def test_a_new_database_gets_every_migration_once(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    for _ in range(2):  # opened again: nothing is applied twice
        store = SqliteStore(db)
        await store.open()
        await store.apply(Changes(timers_set=[TimerRecord(TIMER_RETRY, "r/s", "r", 5)]))
        await store.close()
    version, tables, indexes = _schema(db)
    assert version == NEWEST_SCHEMA
    assert {"runs", "steps", "attempts", "timers", "offers", "ui_sessions"} <= tables
    assert {"runs_idempotency", "timers_due", "offers_queue"} <= indexes
    assert "runs_idem" not in indexes
    with sqlite3.connect(db) as connection:
        unique = {r[1]: r[2] for r in connection.execute("PRAGMA index_list(runs)")}
        columns = [r[1] for r in connection.execute("PRAGMA table_info(runs)")]
    assert unique["runs_idempotency"] == 1
    assert columns[-4:] == ["version", "data_json", "input_json", "output_json"]


async def test_a_version_1_database_keeps_its_runs_and_gains_their_sampling_decision(tmp_path: Path) -> None:
    """0002 adds runs.sampled: runs stored before were all sampled; new ones keep their decision."""
    db = tmp_path / "db.sqlite"
    _migrations(db, "0001_init.sql")
    with sqlite3.connect(db) as connection:
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
        assert before is not None and before.sampled and before.version == 1
        unsampled = run_record("r-new", sampled=False, created_ms=5)
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
    version, _, indexes = _schema(db)
    assert version == NEWEST_SCHEMA
    assert {"runs_active", "runs_created", "runs_idempotency"} <= indexes


async def test_a_version_2_database_gets_the_timers_and_offers_the_old_engine_kept_in_memory(
    tmp_path: Path,
) -> None:
    """The engine before schema 3 rebuilt its timers and task queues from the records when it
    started; 0003 writes them once, the same way, for the runs that are still going."""
    db = tmp_path / "db.sqlite"
    _migrations(db, "0001_init.sql", "0002_run_sampled.sql")
    heartbeat = {"retry": {}, "timeouts": {"schedule_to_start": 60, "start_to_close": 300, "heartbeat": 10}}
    no_heartbeat = {
        "retry": {},
        "timeouts": {"schedule_to_start": None, "start_to_close": None, "heartbeat": None},
    }
    live, pending, ended = "r-live", "r-pending", "r-ended"
    runs = [
        run_record(live, status="running"),
        run_record(pending, status="pending"),
        run_record(ended, status="failed", finished_ms=9_000),
    ]
    steps = [
        step_record(live, "wait", status="scheduled", policy=heartbeat),
        step_record(live, "queue", status="scheduled", contract="warehouse/ship"),
        step_record(live, "work", status="running", policy=heartbeat),
        step_record(live, "plain", status="running", policy=no_heartbeat),
        step_record(live, "backoff", status="scheduled", next_attempt_ms=7_000, attempt_count=1),
        # next_attempt_ms of an earlier backoff, but its next attempt is already scheduled
        step_record(live, "retried", status="scheduled", next_attempt_ms=6_000, attempt_count=2),
        step_record(live, "done", status="succeeded"),
        step_record(pending, "first", status="scheduled"),
        step_record(ended, "left", status="scheduled", next_attempt_ms=8_000),
        step_record(ended, "stuck", status="running", policy=heartbeat),
    ]
    attempts = [
        attempt_record(live, "wait", scheduled_ms=1_000, schedule_deadline_ms=61_000),
        attempt_record(live, "queue", contract="warehouse/ship", major=2, scheduled_ms=1_500),
        attempt_record(
            live, "work", status="running", started_ms=2_000, close_deadline_ms=302_000, agent_id="a1"
        ),
        attempt_record(live, "plain", status="running", started_ms=2_100, agent_id="a1"),
        attempt_record(live, "backoff", status="failed", finished_ms=2_500),
        attempt_record(live, "retried", 1, status="failed"),
        attempt_record(live, "retried", 2, scheduled_ms=6_000),
        attempt_record(live, "done", status="succeeded"),
        attempt_record(pending, "first", scheduled_ms=500),
        attempt_record(ended, "left", status="scheduled", schedule_deadline_ms=70_000),
        attempt_record(ended, "stuck", status="running", started_ms=2_000, close_deadline_ms=9_000),
    ]
    _insert_old(db, runs, steps, attempts)

    store = SqliteStore(db)
    await store.open()
    try:
        assert await store.offers([("payments/charge", 1), ("warehouse/ship", 2)], 100) == [
            OfferRecord(f"{pending}:first:1", pending, "payments/charge", 1, 500),
            OfferRecord(f"{live}:wait:1", live, "payments/charge", 1, 1_000),
            OfferRecord(f"{live}:queue:1", live, "warehouse/ship", 2, 1_500),
            OfferRecord(f"{live}:retried:2", live, "payments/charge", 1, 6_000),
        ]
        assert await store.next_timer_due() == 2_000
        expected = [
            TimerRecord(TIMER_LEASE, f"{live}:work:1", live, 2_000),  # past: a fresh period on firing
            TimerRecord(TIMER_RETRY, f"{live}/backoff", live, 7_000),
            TimerRecord(TIMER_SCHEDULE_TO_START, f"{live}:wait:1", live, 61_000),
            TimerRecord(TIMER_START_TO_CLOSE, f"{live}:work:1", live, 302_000),
        ]
        assert await store.claim_timers(FAR, 100, 1_000) == expected
        await store.apply(Changes(timers_fired=[expected[1]]))
        snapshot = await store.load_run(live)
        assert snapshot is not None and snapshot.run.version == 1
        assert snapshot.steps == sorted(steps[:7], key=lambda s: s.step_id)
    finally:
        await store.close()
    # Opened again: the backfill is not run twice (the fired timer stays fired).
    again = SqliteStore(db)
    await again.open()
    try:
        # (claimed after the first claims ran out)
        assert [t.kind for t in await again.claim_timers(FAR + 1_000, 100, 1_000)] == [
            TIMER_LEASE,
            TIMER_SCHEDULE_TO_START,
            TIMER_START_TO_CLOSE,
        ]
    finally:
        await again.close()


async def test_an_idempotency_key_the_old_engine_gave_twice_stays_with_the_oldest_run(tmp_path: Path) -> None:
    """The key becomes a unique constraint; a duplicate (the old engine checked it under a lock
    in memory) must not stop the migration."""
    db = tmp_path / "db.sqlite"
    _migrations(db, "0001_init.sql", "0002_run_sampled.sql")
    _insert_old(
        db,
        [
            run_record("r-b", idempotency_key="k", created_ms=100),
            run_record("r-a", idempotency_key="k", created_ms=100),
            run_record("r-c", idempotency_key="k", created_ms=50),
            run_record("r-other", idempotency_key="k", caller_team="crm", created_ms=100),
        ],
    )
    store = SqliteStore(db)
    await store.open()
    try:
        found = await store.find_run("payments/checkout", "payments", "k")
        assert found is not None and found.run_id == "r-c"
        for run_id, key in [("r-a", ""), ("r-b", ""), ("r-c", "k"), ("r-other", "k")]:
            run = await store.get_run(run_id)
            assert run is not None and run.idempotency_key == key
    finally:
        await store.close()


async def test_a_version_3_database_keeps_each_teams_token_as_its_default_token(tmp_path: Path) -> None:
    """0006 moves teams.token_hash into the tokens table, named "default": the token a team had
    keeps working, and the team keeps its defaults."""
    db = tmp_path / "db.sqlite"
    _migrations(db, "0001_init.sql", "0002_run_sampled.sql", "0003_durable_state.sql")
    with sqlite3.connect(db) as connection:
        connection.executemany(
            "INSERT INTO teams (name, token_hash, created_ms, retry_json) VALUES (?, ?, ?, ?)",
            [("payments", "hash-p", 10, '{"max_attempts": 4}'), ("crm", "hash-c", 20, "{}")],
        )
    store = SqliteStore(db)
    await store.open()
    try:
        assert await store.list_tokens() == [
            TokenRecord("crm", "default", "hash-c", 20),
            TokenRecord("payments", "default", "hash-p", 10),
        ]
        team = await store.get_team("payments")
        assert team is not None and team.created_ms == 10 and team.retry.max_attempts == 4
    finally:
        await store.close()
    with sqlite3.connect(db) as connection:
        columns = [r[1] for r in connection.execute("PRAGMA table_info(teams)")]
    assert columns == ["name", "created_ms", "retry_json", "timeouts_json"]
    assert _schema(db)[0] == NEWEST_SCHEMA


async def test_a_version_16_database_keeps_its_timers_offers_inflight_and_requests(tmp_path: Path) -> None:
    """0017 rebuilds the small tables every transition writes WITHOUT ROWID: what they held is
    still there and still works (claimed, offered, counted, answered, purged)."""
    db = tmp_path / "db.sqlite"
    _migrations(db, *_migrations_up_to(16))
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA user_version = 16")
        connection.execute("INSERT INTO timers VALUES ('retry', 'r1/s', 'r1', 5, 0)")
        connection.execute("INSERT INTO timers VALUES ('lease', 'r1:s:1', 'r1', 7, 0)")
        connection.execute("INSERT INTO offers VALUES ('r2:s:1', 'r2', 'acme/c', 1, 3, 'acme')")
        connection.execute("INSERT INTO inflight VALUES ('r3:s:1', 'acme', 'acme/c')")
        connection.execute("INSERT INTO requests VALUES ('complete', 'q1', '{\"by\":\"a\"}', 10)")
        connection.execute("INSERT INTO requests VALUES ('complete', 'q2', '{\"by\":\"a\"}', 99)")
    store = SqliteStore(db)
    await store.open()
    try:
        claimed = await store.claim_timers(now_ms=10, limit=10, claim_ms=1000)
        assert [(t.kind, t.key, t.run_id, t.due_ms) for t in claimed] == [
            ("retry", "r1/s", "r1", 5),
            ("lease", "r1:s:1", "r1", 7),
        ]
        assert await store.claim_timers(now_ms=10, limit=10, claim_ms=1000) == []  # claimed once
        (offer,) = await store.offers([("acme/c", 1)], 10)
        assert (offer.attempt_id, offer.run_id, offer.offered_ms, offer.caller_team) == (
            "r2:s:1",
            "r2",
            3,
            "acme",
        )
        assert await store.inflight_counts() == {"acme": 1}
        assert await store.get_request("complete", "q1") == {"by": "a"}
        assert await store.purge_requests(created_before_ms=50, limit=10) == 1
        assert await store.get_request("complete", "q1") is None
        assert await store.get_request("complete", "q2") == {"by": "a"}
    finally:
        await store.close()
    assert _schema(db)[0] == NEWEST_SCHEMA
    with sqlite3.connect(db) as connection:
        for table in ("timers", "offers", "inflight", "requests"):
            (sql,) = connection.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
            assert sql.endswith("WITHOUT ROWID"), sql


async def test_a_version_17_database_keeps_the_payloads_in_its_rows_and_moves_them_out_when_written(
    tmp_path: Path,
) -> None:
    """0018 gives payloads columns of their own without touching the rows: a run and a step
    written before hold theirs in data_json, are read with them, and the first write of each
    moves them out."""
    db = tmp_path / "db.sqlite"
    _migrations(db, *_migrations_up_to(17))
    columns, run_row, step_data = rows_before_payload_columns()
    involved = columns.index("involved")  # ",team1,team2," in SQLite
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA user_version = 17")
        connection.execute(
            f"INSERT INTO runs ({', '.join(columns)}, version) VALUES ({', '.join('?' for _ in columns)}, 4)",
            (*run_row[:involved], ",payments,", *run_row[involved + 1 :]),
        )
        connection.execute(
            "INSERT INTO steps (run_id, step_id, data_json, policy_ref) VALUES ('r1', 'charge', ?, '')",
            (step_data,),
        )
    store = SqliteStore(db)
    await store.open()
    try:
        await read_and_move_old_payloads(store)
    finally:
        await store.close()
    assert _schema(db)[0] == NEWEST_SCHEMA
    with sqlite3.connect(db) as connection:
        assert_payloads_moved_out(
            connection.execute("SELECT data_json, input_json FROM runs").fetchone(),
            connection.execute("SELECT data_json, output_json FROM steps").fetchone(),
        )


# ---------- the writer ----------
# ---------- the writer ----------


async def test_concurrent_writes_are_all_durable_and_a_failing_job_does_not_undo_others(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    audit = AuditRecord(1, "admin", "team.create", "x", "x")
    await store.create_team(TeamRecord("dup", 1), TokenRecord("dup", "default", "h", 1), audit)
    results = await asyncio.gather(
        *(store.apply(Changes(runs=[run_record(f"r{i}")])) for i in range(200)),
        store.create_team(TeamRecord("dup", 1), TokenRecord("dup", "default", "h2", 1), audit),  # exists
        return_exceptions=True,
    )
    assert isinstance(results[-1], KeyError)
    assert len(await store.list_runs(RunFilter(limit=1_000))) == 200
    await store.close()
    # durable: another store on the file sees them
    again = SqliteStore(tmp_path / "db.sqlite")
    await again.open()
    assert len(await again.list_runs(RunFilter(limit=1_000))) == 200
    await again.close()


async def test_transitions_commit_on_the_loop_in_one_transaction_per_turn_and_a_loser_fails_alone(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    await store.apply(Changes(runs=[run_record("r0")]))
    commits: list[float] = []
    store.on_commit = commits.append
    stale = Changes(runs=[run_record("r0", status="cancelled")], expect_versions={"r0": 7})
    results = await asyncio.gather(
        *(store.apply(Changes(runs=[run_record(f"r{i}")])) for i in range(1, 51)),
        store.apply(stale),
        return_exceptions=True,
    )
    assert isinstance(results[-1], VersionConflict)  # the version check refused it alone
    assert results[:-1] == [None] * 50
    assert len(commits) == 1  # made in one turn of the loop: one transaction
    assert (await store.get_run("r0")).status == "running"  # type: ignore[union-attr]
    await store.close()
    again = SqliteStore(tmp_path / "db.sqlite")
    await again.open()
    assert len(await again.list_runs(RunFilter(limit=1_000))) == 51
    await again.close()


async def test_a_transition_alone_in_its_transaction_that_fails_writes_nothing(tmp_path: Path) -> None:
    """A turn of the loop with one transition commits it without a savepoint: one refused after
    it wrote some rows (here by a concurrency cap, checked last) leaves none of them."""
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    try:
        commits: list[float] = []
        store.on_commit = commits.append
        await store.apply(Changes(inflight_add=[("a0", "acme", "acme/c")]))
        refused = Changes(
            runs=[run_record("r1")],
            inflight_add=[("a1", "acme", "acme/c")],
            inflight_caps=[(INFLIGHT_TEAM, "acme", 1)],
        )
        with pytest.raises(LimitReached):
            await store.apply(refused)
        assert len(commits) == 2  # each alone in its turn of the loop
        assert await store.get_run("r1") is None
        assert await store.inflight_counts() == {"acme": 1}
        await store.apply(Changes(runs=[run_record("r2")]))  # the connection is usable after it
        assert await store.get_run("r2") is not None
    finally:
        await store.close()


async def test_a_transition_while_the_writer_thread_holds_the_database_is_written_by_it(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    holding, release = asyncio.Event(), __import__("threading").Event()
    loop = asyncio.get_running_loop()

    def hold(c: sqlite3.Connection) -> None:  # a long job of the writer thread (retention, say)
        c.execute("INSERT INTO settings (key, value) VALUES ('held', 'yes')")
        loop.call_soon_threadsafe(holding.set)
        release.wait(10)

    held = asyncio.ensure_future(store._write(hold))
    await holding.wait()
    started = loop.time()
    applied = asyncio.ensure_future(store.apply(Changes(runs=[run_record("r1")])))
    await asyncio.sleep(0.05)
    assert loop.time() - started < 1  # the loop did not wait for the lock
    assert not applied.done()  # queued behind the held transaction, not failed
    release.set()
    await asyncio.gather(held, applied)
    assert (await store.get_run("r1")) is not None
    assert await store.get_setting("held") == "yes"
    await store.close()


async def test_the_wal_is_checkpointed_while_transitions_commit_on_the_loop(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    wal = tmp_path / "db.sqlite-wal"
    sizes = []
    for i in range(2_000):  # one commit each: ten checkpoints' worth
        await store.apply(Changes(runs=[run_record(f"r{i}", input={"pad": "x" * 2_000})]))
        if i % 200 == 199:
            sizes.append(wal.stat().st_size)
    await store.close()
    # A WAL that is never checkpointed grows with every commit (by ~35 KB each here: 70 MB in
    # all); checkpointed, it is written over from its start again and stops growing.
    assert sizes[-1] <= 2 * sizes[1], sizes


async def test_transitions_made_just_before_close_are_written(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite")
    await store.open()
    pending = [asyncio.ensure_future(store.apply(Changes(runs=[run_record(f"r{i}")]))) for i in range(5)]
    await asyncio.sleep(0)  # they wait for the end of this turn of the loop
    await store.close()
    await asyncio.gather(*pending)
    again = SqliteStore(tmp_path / "db.sqlite")
    await again.open()
    assert len(await again.list_runs(RunFilter(limit=100))) == 5
    await again.close()


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


# ---------- one process per database file ----------


async def test_a_second_store_on_the_same_file_is_refused_until_the_first_is_closed(tmp_path: Path) -> None:
    db = tmp_path / "coordinator.db"
    first = SqliteStore(db)
    await first.open()
    second = SqliteStore(db)
    with pytest.raises(DatabaseInUseError) as refused:
        await second.open()
    assert isinstance(refused.value, FailedPreconditionError) and refused.value.exit_code == 2
    assert str(refused.value) == (
        f"the database {db} is in use by another coordinator process (pid {os.getpid()}, lock file"
        f" {db}.lock): {ONE_PROCESS}"
    )
    lock = lock_path(db)
    assert lock == tmp_path / "coordinator.db.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert lock.read_text() == f"{os.getpid()}\n"
    await first.close()
    await second.open()  # closing released it
    await second.close()


_HOLD = """
import asyncio, sys
from pathlib import Path
from coordinator.store.sqlite import SqliteStore

async def main() -> None:
    await SqliteStore(Path(sys.argv[1])).open()
    print("open", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_the_lock_of_a_killed_process_is_free_again(tmp_path: Path) -> None:
    db = tmp_path / "coordinator.db"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLD, str(db), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"open\n"
        with pytest.raises(DatabaseInUseError, match=f"pid {holder.pid},"):
            await SqliteStore(db).open()
    finally:
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    store = SqliteStore(db)  # the OS released the dead process's lock; its stale pid is no obstacle
    await store.open()
    assert lock_path(db).read_text() == f"{os.getpid()}\n"
    await store.close()


def test_a_policy_changed_in_place_gets_the_key_of_what_it_holds_now() -> None:
    """``codec.policy_ref`` remembers a step's policy object's key; changed in place (or a new
    object equal to an earlier one), the key is always that of what it holds."""
    policy = {"retry": {"max_attempts": 3}, "timeouts": {"heartbeat_ms": 5000}}
    first = codec.policy_ref(policy)
    assert codec.policy_ref(policy) == first
    assert codec.policy_ref(dict(policy)) == first
    policy["retry"]["max_attempts"] = 4
    changed = codec.policy_ref(policy)
    assert changed != first and '"max_attempts":4' in changed[1]
    assert codec.policy_ref({"retry": {"max_attempts": 3}, "timeouts": {"heartbeat_ms": 5000}}) == first
