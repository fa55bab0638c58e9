"""Retention (coordinator/store/retention.py) on a real coordinator in this process, on both
stores: a pass deletes exactly the runs that finished before its cutoff, with every row of
theirs, while other runs start, go on and finish; and which retention applies when --retention
is not given (a database in use before retention keeps everything).

The pass is given its ``now_ms``: the cutoff falls between runs' real finish times, read from
the store, so nothing depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest

from coordinator.config import CoordinatorConfig
from coordinator.server import Coordinator
from coordinator.store import codec
from coordinator.store.base import Store
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import RUN_SUCCEEDED, Changes, RunFilter, RunRecord
from coordinator.store.retention import RETENTION_SETTING, Retention, purge_once, resolve
from coordinator.store.sqlite import SqliteStore
from tests.coordinator.store_conformance import run_record
from tests.support.inprocess import CHARGE_ONCE, PAYMENTS, seed_payments
from tests.support.postgres import TestDatabase
from tests.support.scenario import contract
from tests.support.soak import sized

DAY_MS = 86_400_000
REFUND_ONCE = CHARGE_ONCE.replace("charge-once", "refund-once").replace(
    "payments/charge@", "payments/refund@"
)


def _migrations_before_retention(package: str, what: str = "retention") -> list[tuple[int, str, str]]:
    """(number, name, SQL) of the store's migrations older than the one that brought retention
    (or ``what``: the name's end)."""
    files = sorted(
        (int(f.name.split("_", 1)[0]), f.name, f.read_text())
        for f in resources.files(package).iterdir()
        if f.name.endswith(".sql")
    )
    [retention] = [number for number, name, _ in files if name.endswith(f"_{what}.sql")]
    return [m for m in files if m[0] < retention]


def _store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Store, str]:
    if kind == "sqlite":
        return SqliteStore(tmp_path / "coordinator.db"), ""
    database: TestDatabase = request.getfixturevalue("pg_database")
    url = database.schema_url()
    return PostgresStore(url, pool_size=4), url


STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=STORES)
async def coordinator(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Coordinator]:
    store, url = _store(request.param, tmp_path, request)
    # The spans the engine makes go to the store (the default sink), so they can be seen deleted.
    coordinator = Coordinator(
        CoordinatorConfig(home=tmp_path, listen="127.0.0.1:0", store_url=url, retention_interval_s=3600),
        store=store,
    )
    await coordinator.start()
    try:
        await seed_payments(coordinator, concurrency=64)
        yield coordinator
    finally:
        await coordinator.stop(grace=0)


async def _run_once(coordinator: Coordinator, order: str) -> str:
    """Start a run, take its task and complete it; returns the run id."""
    engine = coordinator.engine
    view, _ = await engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": order})
    assignment = await engine.poll(PAYMENTS, "payments-1", [], wait_s=30)
    assert assignment is not None and assignment.run.run_id == view.run.run_id
    assert await engine.complete(
        PAYMENTS, "payments-1", assignment.attempt.attempt_id, {"ref": order}, f"req-{order}"
    )
    return view.run.run_id


async def _rows(coordinator: Coordinator, run_id: str) -> dict[str, int]:
    """What the store holds of a run."""
    store = coordinator.store
    assert store is not None
    snapshot = await store.load_run(run_id)
    if snapshot is None:
        return {}
    spans = await store.spans_for_trace(snapshot.run.trace_id)
    return {"run": 1, "steps": len(snapshot.steps), "attempts": len(snapshot.attempts), "spans": len(spans)}


async def _finished_ms(coordinator: Coordinator, run_id: str) -> int:
    run = await coordinator.store.get_run(run_id)  # type: ignore[union-attr]
    assert run is not None and run.status == RUN_SUCCEEDED
    return run.finished_ms


async def _after(ms: int) -> None:
    """Wait for the clock to pass ``ms`` (runs finished after this finish later, not at once)."""
    # The clock is what is waited for here; no event says it moved.
    while time.time() * 1000 <= ms + 1:  # noqa: ASYNC110
        await asyncio.sleep(0.002)


@sized("size", short=12, soak=200)
async def test_a_pass_deletes_exactly_the_runs_finished_before_it_while_runs_go_on(
    coordinator: Coordinator, size: int
) -> None:
    engine, store = coordinator.engine, coordinator.store
    assert store is not None
    old = [await _run_once(coordinator, f"old-{i}") for i in range(size)]
    # A request record written as each old run finished (a completion's, as written before
    # attempts recorded their report; today an event's): it goes with its run.
    for i in range(size):
        await store.apply(Changes(requests={("complete", f"req-old-{i}"): {"accepted": True}}))
    # Everything of the old runs was written by now; everything of the others after.
    assert max([await _finished_ms(coordinator, run_id) for run_id in old]) <= time.time() * 1000
    cutoff = int(time.time() * 1000)
    await _after(cutoff)
    kept = [await _run_once(coordinator, f"kept-{i}") for i in range(3)]
    await engine._spans.flush()  # the engine's buffered spans into the store, now
    # Going on through the pass: a run whose task an agent holds, and one waiting for an agent
    # (of a contract no agent here serves, so the traffic below does not take it).
    held, _ = await engine.start_run(PAYMENTS, "payments/charge-once", {"order_id": "held"})
    assignment = await engine.poll(PAYMENTS, "payments-1", [], wait_s=30)
    assert assignment is not None and assignment.run.run_id == held.run.run_id
    await coordinator.registry.register_contract(PAYMENTS, contract("payments/refund"), "c.yaml", False)
    await coordinator.registry.register_workflow(PAYMENTS, REFUND_ONCE, "w.yaml", False)
    waiting, _ = await engine.start_run(PAYMENTS, "payments/refund-once", {"order_id": "waiting"})
    for run_id in old + kept:
        assert await _rows(coordinator, run_id) == {"run": 1, "steps": 1, "attempts": 1, "spans": 3}
    traces = [run.trace_id for run in [await store.get_run(run_id) for run_id in old] if run is not None]
    assert len(traces) == size

    # Runs start and finish all through the pass, which deletes one run per batch.
    more: list[str] = []

    async def traffic() -> None:
        for i in range(size):
            more.append(await _run_once(coordinator, f"during-{i}"))

    async def heartbeats() -> None:
        # The agent holding its task keeps it, however long the pass takes (on a loaded machine,
        # the soak size on PostgreSQL outlasts a heartbeat timeout).
        while True:
            await engine.heartbeat(PAYMENTS, "payments-1", assignment.attempt.attempt_id)
            await asyncio.sleep(1)

    beating = asyncio.create_task(heartbeats())
    keep_ms = DAY_MS
    try:
        result, _ = await asyncio.gather(
            purge_once(store, Retention.of(keep_ms / 1000, None, None), now_ms=cutoff + 1 + keep_ms, batch=1),
            traffic(),
        )
    finally:
        beating.cancel()
    assert result.deleted["runs"] == size
    for i, (run_id, trace_id) in enumerate(zip(old, traces, strict=True)):
        assert await _rows(coordinator, run_id) == {}, run_id
        assert await store.spans_for_trace(trace_id) == []
        assert await store.get_request("complete", f"req-old-{i}") is None
    for run_id in kept + more:
        rows = await _rows(coordinator, run_id)
        assert rows["run"] == 1 and rows["steps"] == 1 and rows["attempts"] == 1, run_id
    for i, run_id in enumerate(kept):
        snapshot = await store.load_run(run_id)
        assert snapshot is not None
        assert [a.report for a in snapshot.attempts] == [f"complete:req-kept-{i}"]
    # The runs still going were not touched, however old, and finish as usual.
    assert await _rows(coordinator, waiting.run.run_id) == {"run": 1, "steps": 1, "attempts": 1, "spans": 0}
    assert await engine.complete(
        PAYMENTS, "payments-1", assignment.attempt.attempt_id, {"ref": "h"}, "req-held"
    )
    await _finished_ms(coordinator, held.run.run_id)
    assert await engine.cancel_run(PAYMENTS, waiting.run.run_id, "done waiting") is not None
    # A pass far in the future deletes what has finished by now, and nothing is left behind.
    later = await purge_once(store, Retention.of(1, None, None), now_ms=int(time.time() * 1000) + DAY_MS)
    assert later.deleted["runs"] == 3 + size + 2
    assert await store.list_runs(RunFilter()) == []


async def test_request_records_go_by_age_no_later_than_their_run(coordinator: Coordinator) -> None:
    store = coordinator.store
    assert store is not None
    run_id = await _run_once(coordinator, "o-1")
    # Written as the run finished (a completion's record, as written before attempts recorded
    # their report; today an event's).
    await store.apply(Changes(requests={("complete", "req-o-1"): {"accepted": True}}))
    finished = await _finished_ms(coordinator, run_id)
    # Not yet past: both stay.
    result = await purge_once(store, Retention.of(10, None, None), now_ms=finished + 5_000)
    assert result.deleted == {"runs": 0, "events": 0, "requests": 0, "spans": 0}
    assert await store.get_request("complete", "req-o-1") == {"accepted": True}
    # Past the retention (the record was written as the run finished): both go.
    result = await purge_once(store, Retention.of(10, None, None), now_ms=int(time.time() * 1000) + 10_001)
    assert result.deleted["runs"] == 1 and result.deleted["requests"] == 1
    assert await store.get_request("complete", "req-o-1") is None
    assert await _rows(coordinator, run_id) == {}


# ---------- which retention applies ----------


def _sqlite_before_retention(path: Path) -> None:
    """A database as the coordinator before retention left it: its migrations, an admin token."""
    conn = sqlite3.connect(path, isolation_level=None)
    for number, _, sql in _migrations_before_retention("coordinator.store.migrations"):
        conn.executescript("BEGIN;\n" + sql + f"\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute("INSERT INTO settings (key, value) VALUES ('admin_token_hash', 'x')")
    conn.execute("INSERT INTO requests (scope, request_id, answer_json) VALUES ('complete', 'q', '{}')")
    conn.close()


async def _postgres_before_retention(url: str) -> None:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, applied_ms bigint NOT NULL)"
        )
        for number, name, sql in _migrations_before_retention("coordinator.store.pg_migrations"):
            await conn.execute(sql)  # type: ignore[arg-type]
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_ms) VALUES (%s, %s, 0)", (number, name)
            )
        await conn.execute("INSERT INTO settings (key, value) VALUES ('admin_token_hash', 'x')")
        await conn.execute(
            "INSERT INTO requests (scope, request_id, answer_json) VALUES ('complete', 'q', '{}')"
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", STORES)
async def test_a_database_in_use_before_retention_keeps_everything_until_told(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store, url = _store(kind, tmp_path, request)
    if kind == "sqlite":
        _sqlite_before_retention(tmp_path / "coordinator.db")
    else:
        await _postgres_before_retention(url)
    await store.open()
    try:
        assert await store.get_setting(RETENTION_SETTING) == "off"
        retention, notes = await resolve(store, None, "7d", "400d")
        assert retention == Retention(None, 7 * 86400, 400 * 86400)
        assert any("retention is off" in note and "--retention" in note for note in notes)
        # Told: the flag applies (and spans are kept no longer than runs).
        retention, notes = await resolve(store, "3d", "7d", "off")
        assert retention == Retention(3 * 86400, 3 * 86400, None)
        assert notes and "spans go with their runs" in notes[0]
        # The request record written before counts from the migration, not from 1970.
        assert await store.purge_requests(int(time.time() * 1000) - DAY_MS, 10) == 0
        assert await store.get_request("complete", "q") == {}
    finally:
        await store.close()


@pytest.mark.parametrize("kind", STORES)
async def test_a_new_database_keeps_30_days(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store, _ = _store(kind, tmp_path, request)
    await store.open()
    try:
        assert await store.get_setting(RETENTION_SETTING) == "30d"
        retention, notes = await resolve(store, None, "7d", "400d")
        assert retention == Retention(30 * 86400, 7 * 86400, 400 * 86400)
        assert notes == []
    finally:
        await store.close()


def test_a_sqlite_file_made_before_gets_incremental_vacuum_at_start(tmp_path: Path) -> None:
    path = tmp_path / "coordinator.db"
    _sqlite_before_retention(path)
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 0

    async def open_and_close() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(open_and_close())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
    assert conn.execute("SELECT value FROM settings WHERE key = 'admin_token_hash'").fetchone() == ("x",)


def test_a_large_sqlite_file_made_before_is_left_as_it_is_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "coordinator.db"
    _sqlite_before_retention(path)
    # Any file is "large" here: the VACUUM that would rewrite it is not done at start.
    monkeypatch.setattr("coordinator.store.sqlite.VACUUM_AT_START_BYTES", 0)

    async def open_and_close() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    with caplog.at_level("WARNING", logger="coordinator.store.sqlite"):
        asyncio.run(open_and_close())
    assert sqlite3.connect(path).execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    assert (
        "made without incremental vacuum" in caplog.text and "PRAGMA auto_vacuum = INCREMENTAL" in caplog.text
    )


# ---------- a database made when a digest was kept per deleted run ----------


# The columns of runs before payloads had columns of their own (schema 18, 14 in PostgreSQL).
_COLUMNS_BEFORE_PAYLOADS = codec.RUN_COLUMNS[: codec.RUN_COLUMNS.index("input_json")]


def _row_before_payload_columns(run: RunRecord) -> tuple[Any, ...]:
    """A runs row as written before payloads had columns of their own: in data_json."""
    row = codec.run_to_row(run)
    data_at = codec.RUN_COLUMNS.index("data_json")
    data = {**json.loads(row[data_at]), "input": run.input, "output": run.output}
    return (*row[:data_at], json.dumps(data))


async def _before_run_days(kind: str, store: Store, url: str, path: Path) -> None:
    """A database as the coordinator left it when it kept a digest per deleted run: three
    digests (two of one day and key), the starts of two deleted runs (one by the admin), and a
    stored run with its start."""
    live = _row_before_payload_columns(run_record("live", status="running"))
    digests = [
        ("d1", 1_000, 1_100, "succeeded"),
        ("d2", 2_000, 2_500, "succeeded"),
        ("d3", DAY_MS + 5, DAY_MS + 9, "failed"),
    ]
    starts = [
        ("run.start", "d1", 0),
        ("run.start", "d2", 1),
        ("run.start", "live", 0),
        ("run.cancel", "d1", 0),
    ]
    if kind == "sqlite":
        conn = sqlite3.connect(path, isolation_level=None)
        for number, _, sql in _migrations_before_retention("coordinator.store.migrations", "run_days"):
            conn.executescript("BEGIN;\n" + sql + f"\nPRAGMA user_version = {number};\nCOMMIT;")
        involved = codec.RUN_COLUMNS.index("involved")  # ",team1,team2," in SQLite
        row = (*live[:involved], ",payments,", *live[involved + 1 :])
        conn.execute(
            f"INSERT INTO runs ({', '.join(_COLUMNS_BEFORE_PAYLOADS)}, version) VALUES ({', '.join('?' for _ in row)}, 1)",
            row,
        )
        conn.executemany(
            "INSERT INTO run_digests VALUES (?, 'payments/checkout', 1, 'payments', ?, ?, ?, '{}')",
            [(r, status, created, ended) for r, created, ended, status in digests],
        )
        conn.executemany(
            "INSERT INTO audit (at_ms, actor, action, object, owner_team, platform_intervention, details_json)"
            " VALUES (1, 'payments', ?, ?, 'payments', ?, '{}')",
            starts,
        )
        conn.close()
        return
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL, applied_ms bigint NOT NULL)"
        )
        for number, name, sql in _migrations_before_retention("coordinator.store.pg_migrations", "run_days"):
            await conn.execute(sql)  # type: ignore[arg-type]
            await conn.execute(
                "INSERT INTO schema_version (version, name, applied_ms) VALUES (%s, %s, 0)", (number, name)
            )
        await conn.execute(
            f"INSERT INTO runs ({', '.join(_COLUMNS_BEFORE_PAYLOADS)}, version)"
            f" VALUES ({', '.join('%s' for _ in live)}, 1)",
            live,
        )
        await conn.cursor().executemany(
            "INSERT INTO run_digests VALUES (%s, 'payments/checkout', 1, 'payments', %s, %s, %s, '{}')",
            [(r, status, created, ended) for r, created, ended, status in digests],
        )
        await conn.cursor().executemany(
            "INSERT INTO audit (at_ms, actor, action, object, owner_team, platform_intervention, details_json)"
            " VALUES (1, 'payments', %s, %s, 'payments', %s, '{}')",
            [(a, o, bool(admin)) for a, o, admin in starts],
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("kind", STORES)
async def test_digests_made_before_are_folded_into_daily_aggregates_and_deleted_runs_starts_go(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    store, url = _store(kind, tmp_path, request)
    await _before_run_days(kind, store, url, tmp_path / "coordinator.db")
    await store.open()
    try:
        kept = [(r.status, r.created_ms, r.finished_ms) for r in await store.list_run_digests(0, 0, 10)]
        assert kept == [
            ("succeeded", 1_000, 1_100),  # d1 and d2: one day, one key
            ("succeeded", 2_000, 2_500),
            ("failed", DAY_MS + 5, DAY_MS + 9),
        ]
        left = [(e.action, e.object, e.platform_intervention) for e in await store.list_audit("", 0, 10)]
        # The start of a deleted run is gone, unless the admin made it; a stored run's stays,
        # and a cancel is no start.
        assert left == [("run.start", "d2", True), ("run.start", "live", False), ("run.cancel", "d1", False)]
    finally:
        await store.close()
