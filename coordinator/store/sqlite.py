"""SQLite Store: WAL, one writer thread with group commit, readers on their own connections.

Every write goes through one dedicated thread: it drains whatever jobs are queued and commits
them in one transaction (each job in its own savepoint, so one failing job is rolled back whole
and fails in its caller only, without undoing the others). Callers await a future that resolves
after the commit, so "durable before acknowledged" holds while concurrent writes share one fsync.
Reads run on a small thread pool, never on the event loop.

One process per database file: ``open`` takes an exclusive ``flock`` on ``<db>.lock`` and a
second coordinator on the same file is refused (``DatabaseInUseError``). Several coordinators
share one database through the PostgreSQL store, whose row locks SQLite cannot offer across
processes without blocking every writer on the file.
"""

from __future__ import annotations

import asyncio
import fcntl
import heapq
import itertools
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from contracts.errors import FailedPreconditionError
from contracts.model import Deprecation, RetryPolicy, Timeouts
from coordinator.store import codec, run_days
from coordinator.store.base import StoreHint
from coordinator.store.records import (
    ATTEMPT_RUNNING,
    INFLIGHT_TEAM,
    OVERRIDE_ACTIONS,
    TIMER_LEASE,
    AgentRecord,
    AttemptRecord,
    AuditRecord,
    CallerCount,
    Changes,
    ContractRecord,
    EventRecord,
    IdempotencyConflict,
    LimitReached,
    OfferRecord,
    PolicyRecord,
    RequestConflict,
    RunFilter,
    RunPin,
    RunRecord,
    RunSnapshot,
    ScheduleRecord,
    SpanRecord,
    StepRecord,
    TeamRecord,
    TimerRecord,
    TokenRecord,
    UiSessionRecord,
    VersionConflict,
    WorkflowRecord,
    replaced_tokens,
    wait_for_token,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()
# The writer thread's cue to checkpoint the WAL (SqliteStore._commit_here's commits do not).
_CHECKPOINT = object()
# Transactions committed on the event loop between two checkpoints (5-10 pages each: about
# SQLite's own automatic checkpoint, every 1,000 pages).
_CHECKPOINT_EVERY = 100
# A write job: what to run on the writer's connection, the future of its result, its loop.
_Job = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


# A file up to this size is switched to incremental vacuum at start-up (``_incremental_vacuum``).
VACUUM_AT_START_BYTES = 256 * 1024 * 1024
_AUTO_VACUUM_INCREMENTAL = 2

_RUN_INVOLVED = codec.RUN_COLUMNS.index("involved")
_RUN_INSERT = (
    f"INSERT INTO runs ({', '.join(codec.RUN_COLUMNS)}, version)"
    f" VALUES ({', '.join('?' for _ in codec.RUN_COLUMNS)}, 1)"
)
# Parameters: the row's ``codec.RUN_MUTABLE_COLUMNS``, the new version, the run id, the expected
# version.
_RUN_UPDATE = (
    f"UPDATE runs SET {', '.join(f'{name} = ?' for name in codec.RUN_MUTABLE_COLUMNS)}, version = ?"
    " WHERE run_id = ? AND version = ?"
)
_RUN_SELECT = "SELECT version, data_json, input_json, output_json FROM runs"
# A run without its payloads (``get_run(payloads=False)``; see codec, "Payloads").
_RUN_HEAD_SELECT = "SELECT version, data_json FROM runs"
# Rows a lookup (SqliteStore._lookup) decodes on the event loop, at most: past that, JSON
# decoding takes over a millisecond.
_LOOKUP_DECODE_BYTES = 64 * 1024
# Where (workflow, caller_team, idempotency_key), the unique key of a run start, are in a row.
_RUN_IDEMPOTENCY = tuple(
    codec.RUN_COLUMNS.index(name) for name in ("workflow", "caller_team", "idempotency_key")
)


def _run_to_row(run: RunRecord) -> tuple[Any, ...]:
    """``codec.run_to_row`` with the involved teams as ",team1,team2," (for LIKE filtering)."""
    row = codec.run_to_row(run)
    involved = "," + ",".join(row[_RUN_INVOLVED]) + ","
    return (*row[:_RUN_INVOLVED], involved, *row[_RUN_INVOLVED + 1 :])


def _run_from_row(row: sqlite3.Row | tuple[Any, ...]) -> RunRecord:
    """A run from ``_RUN_SELECT``'s (version, data_json, input_json, output_json), or
    ``_RUN_HEAD_SELECT``'s first two."""
    return codec.run_from_json(*row)


def _first_run(rows: list[Any]) -> RunRecord | None:
    return _run_from_row(rows[0]) if rows else None


def _insert(table: str, columns: tuple[str, ...], verb: str = "INSERT") -> str:
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"


_AUDIT_INSERT = _insert("audit", codec.AUDIT_COLUMNS)
# A team's start bucket (``take_start_token``): one statement, in the one writer's transaction.
# The SET expressions read the row as it was; ``level`` is what the bucket holds now, refilled.
_START_LEVEL = "MIN(:burst, start_buckets.tokens + MAX(0, :now - start_buckets.at_ms) * :rate / 1000.0)"
_START_TAKE = (
    "INSERT INTO start_buckets (team, tokens, at_ms, taken) VALUES (:team, :burst - 1, :now, 1)"
    " ON CONFLICT (team) DO UPDATE SET"
    f" tokens = CASE WHEN {_START_LEVEL} >= 1 THEN {_START_LEVEL} - 1 ELSE {_START_LEVEL} END,"
    f" taken = {_START_LEVEL} >= 1,"
    " at_ms = MAX(start_buckets.at_ms, :now)"
    " RETURNING taken, tokens"
)
# A deleted run folded into its daily aggregate (coordinator/store/run_days.py).
_RUN_DAY_UPSERT = (
    _insert("run_days", run_days.COLUMNS) + f" ON CONFLICT ({', '.join(run_days.KEY)}) DO UPDATE SET"
    " runs = runs + excluded.runs,"
    " min_created_ms = min(min_created_ms, excluded.min_created_ms),"
    " max_created_ms = max(max_created_ms, excluded.max_created_ms),"
    " min_finished_ms = min(min_finished_ms, excluded.min_finished_ms),"
    " max_finished_ms = max(max_finished_ms, excluded.max_finished_ms)"
)
_SEGMENT_CHANGES = (
    "SELECT at_ms, action, object, details_json FROM audit"
    f" WHERE action IN ({', '.join(repr(a) for a in run_days.SEGMENT_ACTIONS)}) AND at_ms BETWEEN ? AND ?"
)
# A run's start in the audit log goes with the run (the admin's stays: a platform intervention).
# Written at the run's creation time, so found by the (action, at_ms) index.
_RUN_START_DELETE = (
    "DELETE FROM audit WHERE action IN ('run.start', 'run.retry') AND at_ms = ? AND object = ?"
    " AND platform_intervention = 0"
)
_TOKEN_INSERT = _insert("tokens", codec.TOKEN_COLUMNS)
_TOKEN_SELECT = f"SELECT {', '.join(codec.TOKEN_COLUMNS)} FROM tokens"
_STEP_UPSERT = (
    f"INSERT INTO steps ({', '.join(codec.STEP_COLUMNS)}) VALUES ({', '.join('?' for _ in codec.STEP_COLUMNS)})"
    " ON CONFLICT (run_id, step_id) DO UPDATE SET data_json = excluded.data_json,"
    " policy_ref = excluded.policy_ref, input_json = excluded.input_json, output_json = excluded.output_json"
)
_STEPS_SELECT = (
    "SELECT s.run_id, s.step_id, s.data_json, p.policy_json, s.input_json, s.output_json FROM steps AS s"
    " LEFT JOIN policies AS p ON p.key = s.policy_ref WHERE s.run_id = ? ORDER BY s.step_id"
)
_ATTEMPT_SELECT = f"SELECT {', '.join(codec.ATTEMPT_COLUMNS)} FROM attempts"
_POLICY_INSERT = "INSERT OR IGNORE INTO policies (key, policy_json) VALUES (?, ?)"
_ATTEMPT_UPSERT = (
    "INSERT INTO attempts (attempt_id, run_id, step_id, data_json) VALUES (?, ?, ?, ?)"
    # An attempt's run and step never change: naming run_id would rewrite attempts_run's entry.
    " ON CONFLICT (attempt_id) DO UPDATE SET data_json = excluded.data_json"
)
_EVENT_INSERT = _insert("events", codec.EVENT_COLUMNS, "INSERT OR REPLACE")
_REQUEST_INSERT = (
    "INSERT OR REPLACE INTO requests (scope, request_id, answer_json, created_ms) VALUES (?, ?, ?, ?)"
)
_MARK_INSERT = (
    "INSERT OR IGNORE INTO requests (scope, request_id, answer_json, created_ms) VALUES (?, ?, ?, ?)"
)


def _mark_requests(c: sqlite3.Connection, audit: Iterable[AuditRecord | None]) -> None:
    """Record the requests these audit entries apply (``AuditRecord.request``) in the current
    transaction; ``RequestConflict`` when another call applied one of them first (a record of
    that request id made by another ``by``)."""
    seen: set[tuple[str, str]] = set()
    for entry in audit:
        mark = entry.request if entry is not None else None
        if mark is None or (mark.scope, mark.request_id) in seen:
            continue
        seen.add((mark.scope, mark.request_id))
        row = (mark.scope, mark.request_id, codec.dumps(mark.value), int(time.time() * 1000))
        if c.execute(_MARK_INSERT, row).rowcount == 1:
            continue
        stored = c.execute(
            "SELECT answer_json FROM requests WHERE scope = ? AND request_id = ?", row[:2]
        ).fetchone()
        if stored is None or _by(json.loads(stored[0])) != mark.by:
            raise RequestConflict(mark)


def _by(answer: Any) -> str:
    return str(answer.get("by", "")) if isinstance(answer, dict) else ""


def _write_audit(c: sqlite3.Connection, audit: AuditRecord) -> None:
    """One audit entry, and the request it applies (``_mark_requests``)."""
    _mark_requests(c, (audit,))
    c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))


# Setting a timer again moves it and drops any claim on it: it is a new deadline.
_TIMER_SET = (
    "INSERT INTO timers (kind, key, run_id, due_ms, claimed_until_ms) VALUES (?, ?, ?, ?, 0)"
    " ON CONFLICT (kind, key) DO UPDATE SET"
    " run_id = excluded.run_id, due_ms = excluded.due_ms, claimed_until_ms = 0"
)
_OFFER_ADD = (
    "INSERT INTO offers (attempt_id, run_id, contract, major, offered_ms, caller_team) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (attempt_id) DO UPDATE SET run_id = excluded.run_id, contract = excluded.contract,"
    " major = excluded.major, offered_ms = excluded.offered_ms, caller_team = excluded.caller_team"
)
_OFFER_COLUMNS = ", ".join(codec.OFFER_COLUMNS)

_UI_SESSION_INSERT = _insert("ui_sessions", codec.UI_SESSION_COLUMNS)
# Parameters: the new session's key (never evicted), how many others to keep.
_UI_SESSION_EVICT = (
    "DELETE FROM ui_sessions WHERE key IN (SELECT key FROM ui_sessions WHERE key != ?"
    " ORDER BY last_seen_ms DESC, created_ms DESC, key DESC LIMIT -1 OFFSET ?)"
)


def _write_runs(c: sqlite3.Connection, rows: list[tuple[Any, ...]], expected: dict[str, int]) -> None:
    """Insert new runs and compare-and-swap updated ones (see ``Changes``)."""
    written: set[str] = set()
    for row in rows:
        run_id = row[0]
        written.add(run_id)
        if run_id in expected:
            version = expected[run_id]
            changed = tuple(row[i] for i in codec.RUN_MUTABLE_AT)
            if c.execute(_RUN_UPDATE, (*changed, version + 1, run_id, version)).rowcount == 0:
                raise _stale(c, run_id, version)
            continue
        try:
            c.execute(_RUN_INSERT, row)
        except sqlite3.IntegrityError:
            if c.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                raise VersionConflict.run_exists(run_id) from None
            taken = c.execute(
                "SELECT run_id FROM runs WHERE workflow = ? AND caller_team = ? AND idempotency_key = ?"
                " AND idempotency_key != ''",
                tuple(row[i] for i in _RUN_IDEMPOTENCY),
            ).fetchone()
            if taken is not None:
                raise IdempotencyConflict(taken[0]) from None
            raise
    # A run whose version was read but whose record is not rewritten (the transition changed
    # only its steps, attempts, timers or offers) is still checked and moved on, so that two
    # transitions of one run never both succeed from the same read.
    for run_id, version in expected.items():
        if run_id in written:
            continue
        bumped = c.execute(
            "UPDATE runs SET version = ? WHERE run_id = ? AND version = ?", (version + 1, run_id, version)
        )
        if bumped.rowcount == 0:
            raise _stale(c, run_id, version)


def _stale(c: sqlite3.Connection, run_id: str, version: int) -> VersionConflict:
    row = c.execute("SELECT version FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return VersionConflict.stale(run_id, version, None if row is None else row[0])


def _fire_timers(c: sqlite3.Connection, fired: list[tuple[str, str, int]]) -> None:
    for kind, key, due_ms in fired:
        deleted = c.execute(
            "DELETE FROM timers WHERE kind = ? AND key = ? AND due_ms = ?", (kind, key, due_ms)
        ).rowcount
        if deleted == 0:
            raise VersionConflict.timer_moved(kind, key, due_ms)


class DatabaseInUseError(FailedPreconditionError):
    """Another process holds the SQLite database: SQLite serves one coordinator process. Bad
    usage rather than a broken rule, so exit 2 (``accord coordinator start`` prints it)."""

    exit_code = 2


def lock_path(db: Path) -> Path:
    """The lock file beside ``db`` that one process holds while it has ``db`` open."""
    return db.with_name(db.name + ".lock")


def _lock_database(db: Path) -> int:
    """Take the exclusive lock on ``db`` for this process and return its file descriptor (closing
    it releases the lock; so does the OS when the process dies, kill -9 included). Raises
    ``DatabaseInUseError`` naming the file and the other process when it is taken."""
    path = lock_path(db)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DatabaseInUseError(
            f"the database {db} is in use by another coordinator process (pid {holder}, lock file"
            f" {path}): SQLite serves one coordinator process; stop the other, use another --db,"
            " or use PostgreSQL for several coordinators"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    # The pid only informs the message above; the lock itself is the flock, never the file's
    # presence, so a file left by a dead process is simply taken over.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _create_private(path: Path) -> None:
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))


class SqliteStore:
    """The embedded default Store."""

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self._path = path
        self._jobs: queue.Queue[Any] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="sqlite-read")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._file_lock: int | None = None  # fd of the held <db>.lock
        # Keys of the step policies known to be in the table ``policies`` (see codec.step_to_row).
        self._policies: set[str] = set()
        # Called (on the writer thread, or the loop) with the seconds each transaction took,
        # commit included.
        self.on_commit: Callable[[float], None] | None = None
        self._since_checkpoint = 0
        self._checkpointing = False  # True while the writer thread checkpoints: the loop writes nothing then

    # ---------- connections ----------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash (kill -9); only power loss may drop the
        # last commits.
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader()))

    def _never_waiting(self, name: str, *pragmas: str) -> sqlite3.Connection:
        """The calling thread's connection ``name`` (made once, closed with the store), which
        never waits for a lock: the event loop's, for ``_lookup`` and ``_write_here``."""
        conn = getattr(self._local, name, None)
        if conn is None:
            conn = self._connect()
            for pragma in ("busy_timeout=0", *pragmas):
                conn.execute(f"PRAGMA {pragma}")
            setattr(self._local, name, conn)
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _lookup(
        self,
        fetch: Callable[[sqlite3.Connection], list[Any]],
        decode: Callable[[list[Any]], T],
    ) -> T:
        """A read of a few rows by key (``fetch``), made on the calling thread, the event loop:
        a hand-off to a reader thread and back costs ~100 us of CPU, ten times such a read. Rows
        holding over ``_LOOKUP_DECODE_BYTES`` of text are decoded in a reader thread; a read
        that finds the database busy (it never waits here) is made again in one."""
        try:
            rows = fetch(self._never_waiting("lookups"))
        except sqlite3.OperationalError:
            return await self._read(lambda c: decode(fetch(c)))
        size = sum(len(value) for row in rows for value in row if isinstance(value, str | bytes))
        if size > _LOOKUP_DECODE_BYTES:
            return await asyncio.get_running_loop().run_in_executor(self._readers, decode, rows)
        return decode(rows)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            # Not opened, or closed: nothing would ever take the job, and the caller would wait
            # for ever (the UI, say, serving a request while the coordinator stops).
            raise RuntimeError(f"the SQLite store {self._path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        return await future

    async def _write_here(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``_write`` for a transition, committed on the event loop: the jobs made in one turn of
        the loop are written in one transaction at its end (a hand-off to the writer thread and
        back cost more CPU than such a transaction). Should the writer thread hold the database
        (a retention batch, say), they go to it instead: the loop never waits for a lock. With
        ``synchronous=NORMAL`` a commit writes the WAL without fsync; checkpoints (the fsyncs)
        are left to the writer thread. See docs/architecture.md, "Durable state"."""
        if self._writer is None:
            raise RuntimeError(f"the SQLite store {self._path} is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        # The jobs waiting for this turn of this thread's loop.
        here: list[_Job] | None = getattr(self._local, "here", None)
        if here is None:
            here = self._local.here = []
        here.append((fn, future, loop))
        if len(here) == 1:
            loop.call_soon(self._commit_here)
        return await future

    def _commit_here(self) -> None:
        batch: list[_Job] = getattr(self._local, "here", None) or []
        self._local.here = []
        if not batch:
            return
        if self._writer is None:  # closed meanwhile
            error = RuntimeError(f"the SQLite store {self._path} is not open")
            _resolve_all([(future, error, False) for _, future, _ in batch])
            return
        # While the writer thread checkpoints, or holds the database, it takes these too.
        conn = None if self._checkpointing else self._begin_here()
        if conn is None:
            for job in batch:
                self._jobs.put(job)
            return
        _resolve_all(
            [(future, value, ok) for value, future, _, ok in self._run_batch(conn, batch, begun=True)]
        )
        self._since_checkpoint += 1
        if self._since_checkpoint >= _CHECKPOINT_EVERY:
            # Until it is done the loop writes nothing itself: a checkpoint racing commits never
            # catches up with the end of the WAL, and the WAL would only grow.
            self._since_checkpoint = 0
            self._checkpointing = True
            self._jobs.put(_CHECKPOINT)

    def _begin_here(self) -> sqlite3.Connection | None:
        """The loop's write connection in a transaction begun now; None when the database is
        busy (it never waits). The writer thread checkpoints, not this connection's commits."""
        try:
            conn = self._never_waiting("writes", "wal_autocheckpoint=0")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:
            return None
        return conn

    def _run_batch(
        self,
        conn: sqlite3.Connection,
        batch: list[_Job],
        *,
        begun: bool = False,
    ) -> list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop, bool]]:
        """Run ``batch``'s jobs in one transaction, each in a savepoint of its own (a job that
        raises is rolled back alone); every job fails when the commit does."""
        results: list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop, bool]] = []
        began = time.monotonic()
        if len(batch) == 1:  # its transaction is its savepoint: two statements fewer
            return self._run_one(conn, batch[0], begun=begun, began=began)
        try:
            if not begun:
                conn.execute("BEGIN IMMEDIATE")
            for fn, future, loop in batch:
                conn.execute("SAVEPOINT job")
                try:
                    value = fn(conn)
                except BaseException as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((exc, future, loop, False))
                else:
                    conn.execute("RELEASE job")
                    results.append((value, future, loop, True))
            conn.execute("COMMIT")
        except BaseException as exc:  # the commit itself failed: every job fails
            logger.exception("sqlite commit failed")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            results = [(exc, future, loop, False) for _, future, loop in batch]
        if self.on_commit is not None:
            self.on_commit(time.monotonic() - began)
        return results

    def _run_one(
        self, conn: sqlite3.Connection, job: _Job, *, begun: bool, began: float
    ) -> list[tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop, bool]]:
        """``_run_batch`` of a single job: its transaction is rolled back, and it fails, when it
        raises or when the commit fails."""
        fn, future, loop = job
        result: tuple[Any, asyncio.Future[Any], asyncio.AbstractEventLoop, bool]
        try:
            if not begun:
                conn.execute("BEGIN IMMEDIATE")
            try:
                value = fn(conn)
            except BaseException as exc:
                result = (exc, future, loop, False)
            else:
                conn.execute("COMMIT")
                result = (value, future, loop, True)
        except BaseException as exc:  # the transaction itself failed
            logger.exception("sqlite commit failed")
            result = (exc, future, loop, False)
        if not result[3]:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        if self.on_commit is not None:
            self.on_commit(time.monotonic() - began)
        return [result]

    def _writer_main(self, conn: sqlite3.Connection) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                break
            if first is _CHECKPOINT:
                # Meanwhile the loop hands its transitions to this thread (``_checkpointing``):
                # no other writer, so every frame is copied, and RESTART waits for the readers
                # so that the next commit writes the WAL from its start again.
                try:
                    conn.execute("PRAGMA wal_checkpoint(RESTART)")
                except sqlite3.Error as exc:  # the next one tries again
                    logger.warning("checkpointing %s failed: %s", self._path, exc)
                finally:
                    self._checkpointing = False
                continue
            batch = [first]
            while len(batch) < 256:
                try:
                    item = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP or item is _CHECKPOINT:
                    self._jobs.put(item)
                    break
                batch.append(item)
            results = self._run_batch(conn, batch)
            # One wake-up of each waiting loop for the whole batch, not one per job.
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, bool]]] = {}
            for value, future, loop, ok in results:
                by_loop.setdefault(loop, []).append((future, value, ok))
            for loop, answers in by_loop.items():
                loop.call_soon_threadsafe(_resolve_all, answers)
        conn.close()

    # ---------- lifecycle ----------

    async def open(self) -> None:
        """Take the database for this process (``DatabaseInUseError`` when another has it),
        connect and apply pending schema migrations."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._file_lock = await asyncio.to_thread(_lock_database, self._path)
        try:
            # SQLite gives the WAL and shm files the database's mode: create it owner-only.
            await asyncio.to_thread(_create_private, self._path)
            conn = await asyncio.to_thread(self._connect)
            try:
                await asyncio.to_thread(self._migrate, conn)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            self._release_file_lock()
            raise
        self._writer = threading.Thread(
            target=self._writer_main, args=(conn,), name="sqlite-writer", daemon=True
        )
        self._writer.start()

    @property
    def shared(self) -> bool:
        return False  # one process per file (the lock taken by ``open``)

    def subscribe(self, on_hint: Callable[[StoreHint], None]) -> None:
        """No other process writes this file: there is never a hint to give."""

    async def hint_presence(self, agents: dict[str, int]) -> None:
        """No other process to tell."""

    def _release_file_lock(self) -> None:
        if self._file_lock is not None:
            os.close(self._file_lock)  # releases the flock
            self._file_lock = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        if current == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            # A new file: pages freed by retention can be given back to the file system
            # (``reclaim_space``). Only settable before the first table.
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        files = sorted(
            (f for f in resources.files("coordinator.store.migrations").iterdir() if f.name.endswith(".sql")),
            key=lambda f: f.name,
        )
        for f in files:
            number = int(f.name.split("_", 1)[0])
            if number <= current:
                continue
            logger.info("applying schema migration %s", f.name)
            conn.executescript("BEGIN;\n" + f.read_text() + f"\nPRAGMA user_version = {number};\nCOMMIT;")
        self._incremental_vacuum(conn)

    def _incremental_vacuum(self, conn: sqlite3.Connection) -> None:
        """A file made before retention existed has no incremental vacuum: switching it on takes
        one VACUUM, which rewrites the whole file (and needs as much free disk space). Done here,
        at start-up, for a file of up to ``VACUUM_AT_START_BYTES``; a larger one is left as it is
        and the log says how to do it (docs/production.md, "Retention")."""
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == _AUTO_VACUUM_INCREMENTAL:
            return
        size = self._path.stat().st_size
        if size > VACUUM_AT_START_BYTES:
            logger.warning(
                "the database %s (%d MB) was made without incremental vacuum: retention deletes old"
                " runs, but the file does not shrink. To let it, stop the coordinator and run once:"
                " sqlite3 %s 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;' (it rewrites the file and"
                ' needs as much free disk space); see docs/production.md, "Retention"',
                self._path,
                size // 1_000_000,
                self._path,
            )
            return
        logger.info("switching %s to incremental vacuum (one VACUUM of %d KB)", self._path, size // 1000)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")

    async def close(self) -> None:
        if self._writer is not None:
            self._commit_here()  # transitions of this turn of the loop: written before stopping
            self._jobs.put(_STOP)
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._readers.shutdown(wait=True)
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
        self._release_file_lock()

    # ---------- settings ----------

    async def get_setting(self, key: str) -> str | None:
        def q(c: sqlite3.Connection) -> str | None:
            row = c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

        return await self._read(q)

    async def set_setting(self, key: str, value: str, audit: AuditRecord | None = None) -> None:
        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            c.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, value))
            if audit is not None:
                c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def set_setting_if_absent(self, key: str, value: str) -> str:
        def w(c: sqlite3.Connection) -> str:
            c.execute("INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)", (key, value))
            return str(c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()[0])

        return await self._write(w)

    # ---------- web UI sessions ----------

    async def create_ui_session(self, session: UiSessionRecord, keep: int) -> None:
        def w(c: sqlite3.Connection) -> None:
            c.execute(_UI_SESSION_INSERT, codec.ui_session_to_row(session))
            c.execute(_UI_SESSION_EVICT, (session.key, max(0, keep - 1)))

        await self._write(w)

    async def get_ui_session(self, key: str) -> UiSessionRecord | None:
        def q(c: sqlite3.Connection) -> UiSessionRecord | None:
            row = c.execute("SELECT * FROM ui_sessions WHERE key = ?", (key,)).fetchone()
            return None if row is None else codec.ui_session_from_row(row)

        return await self._read(q)

    async def touch_ui_session(self, key: str, now_ms: int) -> bool:
        sql = "UPDATE ui_sessions SET last_seen_ms = MAX(last_seen_ms, ?) WHERE key = ?"
        return bool(await self._write(lambda c: c.execute(sql, (now_ms, key)).rowcount))

    async def delete_ui_session(self, key: str) -> bool:
        return bool(
            await self._write(lambda c: c.execute("DELETE FROM ui_sessions WHERE key = ?", (key,)).rowcount)
        )

    async def prune_ui_sessions(self, seen_before_ms: int, created_before_ms: int) -> int:
        sql = "DELETE FROM ui_sessions WHERE last_seen_ms < ? OR created_ms < ?"
        return int(await self._write(lambda c: c.execute(sql, (seen_before_ms, created_before_ms)).rowcount))

    # ---------- teams ----------

    async def create_team(self, team: TeamRecord, token: TokenRecord, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            if c.execute("SELECT 1 FROM teams WHERE name = ?", (team.name,)).fetchone():
                raise KeyError(team.name)
            c.execute(_insert("teams", codec.TEAM_COLUMNS), codec.team_to_row(team))
            c.execute(_TOKEN_INSERT, codec.token_to_row(token))
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def get_team(self, name: str) -> TeamRecord | None:
        def q(c: sqlite3.Connection) -> TeamRecord | None:
            row = c.execute("SELECT * FROM teams WHERE name = ?", (name,)).fetchone()
            return None if row is None else codec.team_from_row(row)

        return await self._read(q)

    async def list_teams(self) -> list[TeamRecord]:
        return await self._read(
            lambda c: [codec.team_from_row(r) for r in c.execute("SELECT * FROM teams ORDER BY name")]
        )

    @staticmethod
    def _live_tokens(c: sqlite3.Connection, team: str, now_ms: int) -> list[TokenRecord]:
        rows = c.execute(_TOKEN_SELECT + " WHERE team = ? AND revoked_ms = 0", (team,))
        return [t for t in map(codec.token_from_row, rows) if t.live_at(now_ms)]

    async def add_token(self, token: TokenRecord, audit: AuditRecord) -> None:
        # One writer thread: the check and the insert are one step for every other writer.
        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            if any(t.name == token.name for t in self._live_tokens(c, token.team, token.created_ms)):
                raise KeyError(token.name)
            c.execute(_TOKEN_INSERT, codec.token_to_row(token))
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def replace_token(
        self, token: TokenRecord, old_expires_ms: int, audit: AuditRecord
    ) -> list[TokenRecord]:
        def w(c: sqlite3.Connection) -> list[TokenRecord]:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            live = self._live_tokens(c, token.team, token.created_ms)
            changed = replaced_tokens(live, token, old_expires_ms)
            for old in changed:
                c.execute(
                    "UPDATE tokens SET name = ?, expires_ms = ?, revoked_ms = ? WHERE token_hash = ?",
                    (old.name, old.expires_ms, old.revoked_ms, old.token_hash),
                )
            c.execute(_TOKEN_INSERT, codec.token_to_row(token))
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return changed

        return await self._write(w)

    async def revoke_token(self, team: str, name: str, at_ms: int, audit: AuditRecord) -> list[TokenRecord]:
        def w(c: sqlite3.Connection) -> list[TokenRecord]:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            rows = c.execute(
                _TOKEN_SELECT
                + " WHERE team = ? AND name = ? AND revoked_ms = 0 ORDER BY created_ms, token_hash",
                (team, name),
            ).fetchall()
            if not rows:
                return []
            c.execute(
                "UPDATE tokens SET revoked_ms = ? WHERE team = ? AND name = ? AND revoked_ms = 0",
                (at_ms, team, name),
            )
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return [replace(codec.token_from_row(r), revoked_ms=at_ms) for r in rows]

        return await self._write(w)

    async def list_tokens(self, team: str = "", *, revoked: bool = False) -> list[TokenRecord]:
        where = [*(["team = ?"] if team else []), *([] if revoked else ["revoked_ms = 0"])]
        sql = _TOKEN_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY team, created_ms, name"
        args = (team,) if team else ()
        return await self._read(lambda c: [codec.token_from_row(r) for r in c.execute(sql, args)])

    async def record_token_use(self, used: dict[str, int]) -> None:
        if not used:
            return
        await self._write(
            lambda c: c.executemany(
                "UPDATE tokens SET last_used_ms = MAX(last_used_ms, ?) WHERE token_hash = ?",
                [(at_ms, token_hash) for token_hash, at_ms in used.items()],
            )
        )

    async def set_team_defaults(
        self, name: str, retry: RetryPolicy, timeouts: Timeouts, audit: AuditRecord | None = None
    ) -> bool:
        def w(c: sqlite3.Connection) -> bool:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            row = c.execute("SELECT * FROM teams WHERE name = ?", (name,)).fetchone()
            if row is None or codec.team_defaults_equal(codec.team_from_row(row), retry, timeouts):
                return False
            c.execute(
                "UPDATE teams SET retry_json = ?, timeouts_json = ? WHERE name = ?",
                (
                    codec.dumps(codec.retry_to_json(retry)),
                    codec.dumps(codec.timeouts_to_json(timeouts)),
                    name,
                ),
            )
            if audit is not None:
                c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return True

        return await self._write(w)

    # ---------- contracts ----------

    async def add_contract(self, record: ContractRecord, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            c.execute(_insert("contracts", codec.CONTRACT_COLUMNS), codec.contract_to_row(record))
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def contract_versions(self, name: str) -> list[ContractRecord]:
        return await self._read(
            lambda c: [
                codec.contract_from_row(r)
                for r in c.execute("SELECT * FROM contracts WHERE name = ? ORDER BY vkey", (name,))
            ]
        )

    async def list_contracts(self, team: str = "", name_prefix: str = "") -> list[ContractRecord]:
        sql = "SELECT * FROM contracts WHERE 1=1"
        args: list[Any] = []
        if team:
            sql += " AND team = ?"
            args.append(team)
        if name_prefix:
            sql += " AND substr(name, 1, ?) = ?"
            args += [len(name_prefix), name_prefix]
        sql += " ORDER BY name, vkey"
        return await self._read(lambda c: [codec.contract_from_row(r) for r in c.execute(sql, args)])

    async def set_deprecation(
        self, name: str, versions: list[str], deprecation: Deprecation | None, audit: AuditRecord
    ) -> None:
        value = codec.deprecation_text(deprecation)

        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            c.executemany(
                "UPDATE contracts SET deprecated_json = ? WHERE name = ? AND version = ?",
                [(value, name, v) for v in versions],
            )
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def retire_contract(self, name: str, versions: list[str], at_ms: int, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            c.executemany(
                "UPDATE contracts SET retired_ms = ? WHERE name = ? AND version = ?",
                [(at_ms, name, v) for v in versions],
            )
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def contract_callers(self, name: str, since_ms: int) -> list[CallerCount]:
        path = codec.pinned_path(name)
        sql = (
            "SELECT workflow, workflow_version, team, json_extract(data_json, ?) AS v, COUNT(*) AS n"
            # The LIKE (a plain substring scan) spares parsing the JSON of runs that cannot match.
            " FROM runs WHERE created_ms >= ? AND data_json LIKE ? AND json_extract(data_json, ?) IS NOT NULL"
            " GROUP BY workflow, workflow_version, team, v ORDER BY n DESC, workflow, workflow_version, v"
        )
        return await self._read(
            lambda c: [
                CallerCount(r[0], r[1], r[2], r[3], r[4])
                for r in c.execute(sql, (path, since_ms, codec.pinned_like(name), path))
            ]
        )

    async def active_runs_pinning(self, name: str) -> list[RunPin]:
        path = codec.pinned_path(name)
        sql = (
            "SELECT run_id, workflow, workflow_version, team, json_extract(data_json, ?) FROM runs"
            f" WHERE status IN {codec.ACTIVE_STATUSES_SQL} AND json_extract(data_json, ?) IS NOT NULL"
            " ORDER BY created_ms, run_id"
        )
        return await self._read(lambda c: [RunPin(*r) for r in c.execute(sql, (path, path))])

    # ---------- workflows ----------

    async def add_workflow(self, record: WorkflowRecord, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            c.execute(_insert("workflows", codec.WORKFLOW_COLUMNS), codec.workflow_to_row(record))
            c.executemany(
                "INSERT OR IGNORE INTO workflow_contracts (workflow, version, contract) VALUES (?,?,?)",
                [(record.name, record.version, name) for name in record.contracts],
            )
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def workflow_versions(self, name: str) -> list[WorkflowRecord]:
        return await self._read(
            lambda c: [
                codec.workflow_from_row(r)
                for r in c.execute("SELECT * FROM workflows WHERE name = ? ORDER BY version", (name,))
            ]
        )

    _NEWEST = (
        "SELECT w.* FROM workflows w JOIN (SELECT name, MAX(version) AS v FROM workflows GROUP BY name) n"
        " ON w.name = n.name AND w.version = n.v"
    )

    async def list_workflows(self, team: str = "") -> list[WorkflowRecord]:
        sql = self._NEWEST + (" WHERE w.team = ?" if team else "") + " ORDER BY w.name"
        return await self._read(
            lambda c: [codec.workflow_from_row(r) for r in c.execute(sql, (team,) if team else ())]
        )

    async def consumers_of(self, contract_name: str) -> list[WorkflowRecord]:
        return await self._read(
            lambda c: [
                codec.workflow_from_row(r)
                for r in c.execute(codec.CONSUMERS_SQL.replace("%s", "?"), (contract_name,))
            ]
        )

    async def set_workflow_disabled(self, name: str, disabled_ms: int, by: str, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            c.execute(
                "INSERT INTO workflow_states (name, disabled_ms, disabled_by) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET disabled_ms = excluded.disabled_ms,"
                " disabled_by = excluded.disabled_by",
                (name, disabled_ms, by),
            )
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def workflow_disabled_ms(self, name: str) -> int:
        def q(c: sqlite3.Connection) -> int:
            row = c.execute("SELECT disabled_ms FROM workflow_states WHERE name = ?", (name,)).fetchone()
            return int(row[0]) if row else 0

        return await self._read(q)

    async def delete_workflow_version(self, name: str, version: int, audit: AuditRecord) -> list[str]:
        def w(c: sqlite3.Connection) -> list[str]:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            users = [
                r[0]
                for r in c.execute(
                    "SELECT run_id FROM runs WHERE workflow = ? AND workflow_version = ? ORDER BY created_ms LIMIT 10",
                    (name, version),
                )
            ]
            if users:
                return users
            deleted = c.execute(
                "DELETE FROM workflows WHERE name = ? AND version = ?", (name, version)
            ).rowcount
            c.execute("DELETE FROM workflow_contracts WHERE workflow = ? AND version = ?", (name, version))
            if deleted:
                c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return []

        return await self._write(w)

    # ---------- agents ----------

    async def put_agent(self, agent: AgentRecord, audit: AuditRecord | None = None) -> bool:
        def w(c: sqlite3.Connection) -> bool:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            row = c.execute("SELECT * FROM agents WHERE agent_id = ?", (agent.agent_id,)).fetchone()
            changed = row is None or not codec.agent_from_row(row).same_registration(agent)
            c.execute(_insert("agents", codec.AGENT_COLUMNS, "INSERT OR REPLACE"), codec.agent_to_row(agent))
            if changed and audit is not None:
                c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return changed

        return await self._write(w)

    async def list_agents(self) -> list[AgentRecord]:
        return await self._read(
            lambda c: [codec.agent_from_row(r) for r in c.execute("SELECT * FROM agents")]
        )

    async def in_flight_by_agent(self) -> dict[str, int]:
        return await self._read(lambda c: _count_running(c.execute(_IN_FLIGHT)))

    # ---------- runs ----------

    async def apply(self, changes: Changes) -> None:
        # Everything is encoded here, on the caller's side, so the writer thread only runs SQL;
        # the records themselves are only read (the engine sets ``run.version`` after success).
        runs = [_run_to_row(r) for r in changes.runs]
        expected = dict(changes.expect_versions)
        steps, policies = [], {}
        for step in changes.steps:
            row, (key, policy) = codec.step_to_row(step)
            steps.append(row)
            if key and key not in self._policies:
                policies[key] = policy
        attempts = [codec.attempt_to_row(a) for a in changes.attempts]
        audit = [codec.audit_to_row(a) for a in changes.audit]
        marked = [a for a in changes.audit if a.request is not None]
        events = [codec.event_to_row(e) for e in changes.events]
        now_ms = int(time.time() * 1000)
        requests = [
            (scope, rid, codec.dumps(answer), now_ms) for (scope, rid), answer in changes.requests.items()
        ]
        fired = [(t.kind, t.key, t.due_ms) for t in changes.timers_fired]
        cleared = list(changes.timers_clear)
        timers = [(t.kind, t.key, t.run_id, t.due_ms) for t in changes.timers_set]
        offers_removed = [(attempt_id,) for attempt_id in changes.offers_remove]
        offers_added = [codec.offer_to_row(o) for o in changes.offers_add]

        def w(c: sqlite3.Connection) -> None:
            # The checks first (a refused transition fails before it writes much); then the
            # order ``Changes`` documents: a timer fired and set again in one transition is
            # re-armed, an offer removed and added again is open.
            if marked:
                _mark_requests(c, marked)
            if runs or expected:
                _write_runs(c, runs, expected)
            if fired:
                _fire_timers(c, fired)
            if policies:
                c.executemany(_POLICY_INSERT, list(policies.items()))
            if steps:
                c.executemany(_STEP_UPSERT, steps)
            if attempts:
                c.executemany(_ATTEMPT_UPSERT, attempts)
            if audit:
                c.executemany(_AUDIT_INSERT, audit)
            if events:
                c.executemany(_EVENT_INSERT, events)
            if requests:
                c.executemany(_REQUEST_INSERT, requests)
            if cleared:
                c.executemany("DELETE FROM timers WHERE kind = ? AND key = ?", cleared)
            if timers:
                c.executemany(_TIMER_SET, timers)
            if offers_removed:
                c.executemany("DELETE FROM offers WHERE attempt_id = ?", offers_removed)
            if offers_added:
                c.executemany(_OFFER_ADD, offers_added)
            if changes.inflight_remove:
                c.executemany(
                    "DELETE FROM inflight WHERE attempt_id = ?", [(a,) for a in changes.inflight_remove]
                )
            if changes.inflight_add:
                c.executemany(
                    "INSERT OR REPLACE INTO inflight (attempt_id, caller_team, contract) VALUES (?, ?, ?)",
                    changes.inflight_add,
                )
            # The one writer runs one transaction at a time: the count is exact.
            for kind, key, limit in changes.inflight_caps:
                column = "caller_team" if kind == INFLIGHT_TEAM else "contract"
                (running,) = c.execute(f"SELECT count(*) FROM inflight WHERE {column} = ?", (key,)).fetchone()
                if running > limit:
                    raise LimitReached(kind, key, limit)

        await self._write_here(w)
        # Committed: later transitions need not write these policies again (never deleted).
        self._policies.update(policies)

    async def get_run(self, run_id: str, *, payloads: bool = True) -> RunRecord | None:
        select = _RUN_SELECT if payloads else _RUN_HEAD_SELECT
        return await self._lookup(
            lambda c: c.execute(select + " WHERE run_id = ?", (run_id,)).fetchall(), _first_run
        )

    async def run_steps(self, run_id: str) -> tuple[list[StepRecord], list[AttemptRecord]]:
        return await self._read(lambda c: _steps_and_attempts(*_read_run(c, run_id)[1:]))

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        return await self._read(lambda c: _snapshot(c, run_id))

    async def get_attempt(self, attempt_id: str) -> AttemptRecord | None:
        return await self._lookup(
            lambda c: c.execute(_ATTEMPT_SELECT + " WHERE attempt_id = ?", (attempt_id,)).fetchall(),
            lambda rows: codec.attempt_from_row(*rows[0]) if rows else None,
        )

    async def find_run(self, workflow: str, caller_team: str, idempotency_key: str) -> RunRecord | None:
        return await self._lookup(
            lambda c: c.execute(
                _RUN_SELECT + " WHERE workflow = ? AND caller_team = ? AND idempotency_key = ?"
                " AND idempotency_key != ''",
                (workflow, caller_team, idempotency_key),
            ).fetchall(),
            _first_run,
        )

    async def list_runs(self, query: RunFilter) -> list[RunRecord]:
        sql = _RUN_SELECT + " WHERE 1=1"
        args: list[Any] = []
        if query.workflow:
            sql += " AND workflow = ?"
            args.append(query.workflow)
        if query.status:
            sql += " AND status = ?"
            args.append(query.status)
        for team in (query.team, query.visible_to):
            if team:
                sql += " AND involved LIKE ?"
                args.append(f"%,{team},%")
        if query.created_after_ms:
            sql += " AND created_ms >= ?"
            args.append(query.created_after_ms)
        if query.created_before_ms:
            sql += " AND created_ms < ?"
            args.append(query.created_before_ms)
        if query.query:
            sql += " AND (run_id LIKE ? OR idempotency_key LIKE ?)"
            args += [f"%{query.query}%", f"%{query.query}%"]
        sql += " ORDER BY created_ms DESC, run_id LIMIT ? OFFSET ?"
        args += [query.limit, query.offset]
        return await self._read(lambda c: [_run_from_row(r) for r in c.execute(sql, args)])

    async def answer_request(self, scope: str, request_id: str, answer: dict[str, Any]) -> Any:
        def w(c: sqlite3.Connection) -> Any:
            row = c.execute(
                "SELECT answer_json FROM requests WHERE scope = ? AND request_id = ?", (scope, request_id)
            ).fetchone()
            if row is not None:
                stored = json.loads(row[0])
                if _by(stored) != str(answer.get("by", "")):
                    return stored  # another call's: kept
            c.execute(_REQUEST_INSERT, (scope, request_id, codec.dumps(answer), int(time.time() * 1000)))
            return answer

        return await self._write(w)

    async def get_request(self, scope: str, request_id: str) -> Any | None:
        def q(c: sqlite3.Connection) -> Any | None:
            row = c.execute(
                "SELECT answer_json FROM requests WHERE scope = ? AND request_id = ?", (scope, request_id)
            ).fetchone()
            return None if row is None else json.loads(row[0])

        return await self._read(q)

    # ---------- timers ----------

    # ---------- schedules ----------

    async def sync_schedules(self, workflow: str, schedules: list[ScheduleRecord]) -> None:
        def w(c: sqlite3.Connection) -> None:
            for record in schedules:
                row = codec.schedule_to_row(record)
                c.execute(
                    _insert("schedules", codec.SCHEDULE_COLUMNS)
                    + " ON CONFLICT (workflow, schedule_id) DO UPDATE SET spec_json = excluded.spec_json,"
                    " next_due_ms = excluded.next_due_ms, state_json = excluded.state_json, claimed_until_ms = 0"
                    " WHERE schedules.spec_json != excluded.spec_json",
                    row,
                )
            keep = [r.schedule_id for r in schedules]
            marks = ",".join("?" for _ in keep)
            c.execute(
                f"DELETE FROM schedules WHERE workflow = ? AND schedule_id NOT IN ({marks})"
                if keep
                else "DELETE FROM schedules WHERE workflow = ?",
                (workflow, *keep),
            )

        await self._write(w)

    async def list_schedules(self, workflow: str = "") -> list[ScheduleRecord]:
        sql = (
            "SELECT * FROM schedules"
            + (" WHERE workflow = ?" if workflow else "")
            + " ORDER BY workflow, schedule_id"
        )
        args = (workflow,) if workflow else ()
        return await self._read(lambda c: [codec.schedule_from_row(r) for r in c.execute(sql, args)])

    async def claim_schedules(self, now_ms: int, limit: int, claim_ms: int) -> list[ScheduleRecord]:
        def w(c: sqlite3.Connection) -> list[ScheduleRecord]:
            rows = c.execute(
                "UPDATE schedules SET claimed_until_ms = ? WHERE rowid IN ("
                " SELECT rowid FROM schedules WHERE next_due_ms <= ? AND claimed_until_ms <= ? AND paused = 0"
                " ORDER BY next_due_ms LIMIT ?) RETURNING *",
                (now_ms + claim_ms, now_ms, now_ms, limit),
            ).fetchall()
            return sorted(
                (codec.schedule_from_row(r) for r in rows), key=lambda r: (r.next_due_ms, r.workflow)
            )

        if limit <= 0:
            return []
        return await self._write(w)

    async def finish_schedule(self, record: ScheduleRecord, claimed_until_ms: int) -> bool:
        sql = (
            "UPDATE schedules SET next_due_ms = ?, state_json = ?, claimed_until_ms = 0"
            " WHERE workflow = ? AND schedule_id = ? AND claimed_until_ms = ? AND spec_json = ?"
        )
        args = (
            record.next_due_ms,
            codec.schedule_state_json(record),
            record.workflow,
            record.schedule_id,
            claimed_until_ms,
            codec.dumps(record.spec),
        )
        return bool(await self._write(lambda c: c.execute(sql, args).rowcount))

    async def set_schedule_paused(
        self, workflow: str, schedule_id: str, paused: bool
    ) -> ScheduleRecord | None:
        def w(c: sqlite3.Connection) -> ScheduleRecord | None:
            row = c.execute(
                "UPDATE schedules SET paused = ? WHERE workflow = ? AND schedule_id = ? RETURNING *",
                (int(paused), workflow, schedule_id),
            ).fetchone()
            return None if row is None else codec.schedule_from_row(row)

        return await self._write(w)

    async def claim_timers(self, now_ms: int, limit: int, claim_ms: int) -> list[TimerRecord]:
        # A write job: the one writer thread serialises claimers, so no two ever select the
        # same timer (the PostgreSQL store gets the same from FOR UPDATE SKIP LOCKED).
        def w(c: sqlite3.Connection) -> list[TimerRecord]:
            rows = c.execute(
                "UPDATE timers SET claimed_until_ms = ? WHERE (kind, key) IN ("
                " SELECT kind, key FROM timers WHERE due_ms <= ? AND claimed_until_ms <= ?"
                " ORDER BY due_ms, kind, key LIMIT ?)"
                " RETURNING kind, key, run_id, due_ms",
                (now_ms + claim_ms, now_ms, now_ms, limit),
            ).fetchall()
            return sorted((codec.timer_from_row(r) for r in rows), key=codec.timer_order)

        if limit <= 0:
            return []
        return await self._write(w)

    async def next_timer_due(self) -> int | None:
        def q(c: sqlite3.Connection) -> int | None:
            # Two index walks instead of MIN(MAX(due_ms, claimed_until_ms)) over every timer:
            # the earliest timer free when it falls due, and the earliest claim to run out.
            free = c.execute(
                "SELECT due_ms FROM timers WHERE claimed_until_ms <= due_ms ORDER BY due_ms LIMIT 1"
            ).fetchone()
            claimed = c.execute(
                "SELECT claimed_until_ms FROM timers WHERE claimed_until_ms > 0 AND claimed_until_ms > due_ms"
                " ORDER BY claimed_until_ms LIMIT 1"
            ).fetchone()
            candidates = [int(row[0]) for row in (free, claimed) if row is not None]
            return min(candidates) if candidates else None

        return await self._read(q)

    async def extend_lease(self, attempt_id: str, due_ms: int) -> bool:
        return await self._write(
            lambda c: (
                c.execute(
                    "UPDATE timers SET due_ms = ?, claimed_until_ms = 0 WHERE kind = ? AND key = ?",
                    (due_ms, TIMER_LEASE, attempt_id),
                ).rowcount
                > 0
            )
        )

    # ---------- task offers ----------

    async def offers(
        self,
        keys: list[tuple[str, int]],
        limit: int,
        held_teams: frozenset[str] = frozenset(),
        passing: frozenset[str] = frozenset(),
    ) -> list[OfferRecord]:
        unique = list(dict.fromkeys(keys))
        if not unique or limit <= 0:
            return []
        # The oldest ``limit`` of each key from its index (offered_ms, attempt_id), merged here:
        # bounded by keys x limit rows however long a queue has grown. One statement per key:
        # SQLite runs a UNION ALL of them, sorted again, at ten times the cost. Offers of the
        # teams in ``held_teams`` (at their concurrency limit) are passed by.
        held, passed = sorted(held_teams), sorted(passing)
        skip = f" AND caller_team NOT IN ({','.join('?' for _ in held)})" if held else ""
        if passed:
            skip += f" AND attempt_id NOT IN ({','.join('?' for _ in passed)})"
        sql = (
            f"SELECT {_OFFER_COLUMNS} FROM offers WHERE contract = ? AND major = ?{skip}"
            " ORDER BY offered_ms, attempt_id LIMIT ?"
        )

        def read(c: sqlite3.Connection) -> list[Any]:
            queues = [
                c.execute(sql, (contract, major, *held, *passed, limit)).fetchall()
                for contract, major in unique
            ]
            rows = heapq.merge(*queues, key=lambda r: (r[4], r[0]))  # offered_ms, attempt_id
            return list(itertools.islice(rows, limit))

        return await self._lookup(read, lambda rows: [codec.offer_from_row(r) for r in rows])

    async def inflight_of_contracts(self) -> dict[str, int]:
        sql = "SELECT contract, count(*) FROM inflight GROUP BY contract"
        return await self._read(lambda c: {str(name): int(n) for name, n in c.execute(sql)})

    async def inflight_counts(self) -> dict[str, int]:
        sql = "SELECT caller_team, count(*) FROM inflight GROUP BY caller_team"
        return await self._read(lambda c: {str(team): int(n) for team, n in c.execute(sql)})

    async def take_start_token(self, team: str, rate: float, burst: float, now_ms: int) -> int:
        args = {"team": team, "rate": float(rate), "burst": float(burst), "now": now_ms}

        def w(c: sqlite3.Connection) -> int:
            taken, tokens = c.execute(_START_TAKE, args).fetchone()
            return 0 if taken else wait_for_token(float(tokens), rate)

        return await self._write(w)

    async def event_backlog(self) -> list[tuple[str, int, int]]:
        sql = (
            "SELECT contract, count(*), min(published_ms) FROM events WHERE delivered_ms = 0"
            " GROUP BY contract ORDER BY contract"
        )
        return await self._read(lambda c: [(str(r[0]), int(r[1]), int(r[2])) for r in c.execute(sql)])

    async def queue_stats(self) -> list[tuple[str, int, int, int]]:
        sql = (
            "SELECT contract, major, count(*), min(offered_ms) FROM offers"
            " GROUP BY contract, major ORDER BY contract, major"
        )
        return await self._read(
            lambda c: [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in c.execute(sql)]
        )

    # ---------- audit and events ----------

    async def add_audit(self, audit: AuditRecord) -> None:
        await self._write(lambda c: _write_audit(c, audit))

    async def list_audit(
        self,
        team: str = "",
        offset: int = 0,
        limit: int = 100,
        *,
        since_ms: int = 0,
        before_id: int = 0,
        newest_first: bool = False,
        until_ms: int = 0,
        action: str = "",
    ) -> list[AuditRecord]:
        where, args = codec.audit_filter(team, since_ms, before_id, "?", until_ms=until_ms, action=action)
        sql = f"SELECT * FROM audit{where} ORDER BY id{' DESC' if newest_first else ''} LIMIT ? OFFSET ?"
        args += [limit, offset]
        return await self._read(lambda c: [codec.audit_from_row(r) for r in c.execute(sql, args)])

    async def list_overrides(self, team: str = "", since_ms: int = 0, limit: int = 1000) -> list[AuditRecord]:
        where, args = codec.audit_filter(team, since_ms, 0, "?")
        where = (where + " AND" if where else " WHERE") + " action IN (?, ?)"
        sql = f"SELECT * FROM audit{where} ORDER BY id LIMIT ?"
        args += [*OVERRIDE_ACTIONS, limit]
        return await self._read(lambda c: [codec.audit_from_row(r) for r in c.execute(sql, args)])

    async def put_policy(self, policy: PolicyRecord, audit: AuditRecord) -> None:
        def w(c: sqlite3.Connection) -> None:
            _mark_requests(c, (audit,))  # first: a repeat of the request changes nothing
            c.execute(
                "INSERT INTO policy_files (scope, source_text, source_name, applied_ms, applied_by)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope) DO UPDATE SET"
                " source_text = excluded.source_text, source_name = excluded.source_name,"
                " applied_ms = excluded.applied_ms, applied_by = excluded.applied_by",
                (policy.scope, policy.source_text, policy.source_name, policy.applied_ms, policy.applied_by),
            )
            c.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(w)

    async def list_policies(self) -> list[PolicyRecord]:
        sql = (
            "SELECT scope, source_text, source_name, applied_ms, applied_by FROM policy_files ORDER BY scope"
        )
        return await self._read(lambda c: [PolicyRecord(*tuple(r)) for r in c.execute(sql)])

    async def list_events(
        self, contract: str = "", offset: int = 0, limit: int = 100, *, team: str = ""
    ) -> list[EventRecord]:
        where, args = codec.event_filter(contract, team, "?")
        sql = f"SELECT * FROM events{where} ORDER BY published_ms DESC, event_id LIMIT ? OFFSET ?"
        args += [limit, offset]
        return await self._read(lambda c: [codec.event_from_row(r) for r in c.execute(sql, args)])

    async def get_event(self, event_id: str) -> EventRecord | None:
        def q(c: sqlite3.Connection) -> EventRecord | None:
            row = c.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
            return None if row is None else codec.event_from_row(row)

        return await self._read(q)

    async def undelivered_events(self, published_before_ms: int, limit: int) -> list[EventRecord]:
        sql = (
            "SELECT * FROM events WHERE delivered_ms = 0 AND published_ms < ?"
            " ORDER BY published_ms, event_id LIMIT ?"
        )
        return await self._read(
            lambda c: [codec.event_from_row(r) for r in c.execute(sql, (published_before_ms, limit))]
        )

    async def mark_event_delivered(self, event_id: str, at_ms: int) -> None:
        sql = "UPDATE events SET delivered_ms = ? WHERE event_id = ? AND delivered_ms = 0"
        await self._write(lambda c: c.execute(sql, (at_ms, event_id)))

    async def record_event_handled(self, event_id: str, triggered_runs: list[str], at_ms: int) -> None:
        sql = (
            "UPDATE events SET triggered_json = ?,"
            " handled_ms = CASE WHEN handled_ms = 0 THEN ? ELSE handled_ms END,"
            " delivered_ms = CASE WHEN delivered_ms = 0 THEN ? ELSE delivered_ms END"
            " WHERE event_id = ?"
        )
        args = (codec.dumps(list(triggered_runs)), at_ms, at_ms, event_id)
        await self._write(lambda c: c.execute(sql, args))

    # ---------- spans ----------

    async def insert_spans(self, spans: list[SpanRecord]) -> None:
        if not spans:
            return
        rows = await codec.span_rows(spans, binary_ids=True)
        await self._write(
            lambda c: c.executemany(_insert("spans", codec.SPAN_COLUMNS, "INSERT OR REPLACE"), rows)
        )

    async def spans_for_trace(self, trace_id: str) -> list[SpanRecord]:
        # Ids are stored as bytes (codec.span_id_to_db); rows written before, as hex text.
        sql = "SELECT * FROM spans WHERE trace_id IN (?, ?) ORDER BY start_ns"
        rows = await self._read(
            lambda c: c.execute(sql, (codec.span_id_to_db(trace_id), trace_id)).fetchall()
        )
        spans = {span.span_id: span for span in map(codec.span_from_row, rows)}  # one of each id
        return list(spans.values())

    async def prune_spans(self, before_ns: int, limit: int = 0) -> int:
        if limit <= 0:
            return await self._write(
                lambda c: c.execute("DELETE FROM spans WHERE end_ns < ?", (before_ns,)).rowcount
            )
        sql = (
            "DELETE FROM spans WHERE rowid IN"
            " (SELECT rowid FROM spans WHERE end_ns < ? ORDER BY end_ns LIMIT ?)"
        )
        return await self._write(lambda c: c.execute(sql, (before_ns, limit)).rowcount)

    # ---------- retention ----------

    async def purge_runs(self, finished_before_ms: int, limit: int) -> int:
        def w(c: sqlite3.Connection) -> int:
            selected = c.execute(
                "SELECT run_id, json_extract(data_json, '$.trace_id'), workflow, workflow_version, team,"
                " status, created_ms, finished_ms, json_extract(data_json, '$.pinned') FROM runs"
                f" WHERE {codec.RUN_TERMINAL_SQL} AND finished_ms < ? ORDER BY finished_ms LIMIT ?",
                (finished_before_ms, limit),
            ).fetchall()
            if not selected:
                return 0
            runs = [(row[0], row[1]) for row in selected]
            ids = [(run_id,) for run_id, _ in runs]
            # What the autonomy report needs of them outlives them, as daily aggregates
            # (docs/governance.md, "When retention deletes runs").
            finished = [run_days.Finished.of(*row[2:]) for row in selected]
            changes = run_days.Changes(c.execute(_SEGMENT_CHANGES, run_days.changes_window(finished)))
            failures = c.execute(run_days.failures_sql("?"), run_days.failures_window(finished)).fetchall()
            folded = run_days.fold(finished, changes, failures)
            c.executemany(_RUN_DAY_UPSERT, [row.values() for row in folded])
            c.executemany(_RUN_START_DELETE, [(row[6], row[0]) for row in selected])
            for table in ("steps", "attempts"):  # by their run_id index
                c.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)
            # A finished run has none left (these tables hold only what is live and have no index
            # by run), so one pass over each for the whole batch.
            marks = ", ".join("?" for _ in ids)
            for table in ("timers", "offers"):
                c.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", [r for (r,) in ids])
            c.executemany(
                "DELETE FROM spans WHERE trace_id IN (?, ?) AND run_id = ?",
                [(codec.span_id_to_db(t or ""), t or "", r) for r, t in runs],
            )
            c.executemany("DELETE FROM runs WHERE run_id = ?", ids)
            return len(ids)

        return await self._write(w) if limit > 0 else 0

    async def purge_events(self, published_before_ms: int, limit: int) -> int:
        sql = (
            "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events"
            " WHERE published_ms < ? AND handled_ms > 0 ORDER BY published_ms LIMIT ?)"
        )
        return await self._write(lambda c: c.execute(sql, (published_before_ms, limit)).rowcount)

    async def purge_requests(self, created_before_ms: int, limit: int) -> int:
        sql = (
            "DELETE FROM requests WHERE (scope, request_id) IN"
            " (SELECT scope, request_id FROM requests WHERE created_ms < ? ORDER BY created_ms LIMIT ?)"
        )
        return await self._write(lambda c: c.execute(sql, (created_before_ms, limit)).rowcount)

    async def purge_audit(self, before_ms: int, limit: int) -> int:
        sql = "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at_ms < ? ORDER BY at_ms LIMIT ?)"
        return await self._write(lambda c: c.execute(sql, (before_ms, limit)).rowcount)

    async def purge_run_days(self, finished_before_ms: int, limit: int) -> int:
        sql = (
            "DELETE FROM run_days WHERE id IN"
            " (SELECT id FROM run_days WHERE max_finished_ms < ? ORDER BY max_finished_ms LIMIT ?)"
        )
        return await self._write(lambda c: c.execute(sql, (finished_before_ms, limit)).rowcount)

    async def list_run_digests(
        self, created_after_ms: int, offset: int, limit: int, *, newest_first: bool = False
    ) -> list[RunRecord]:
        sql = run_days.representatives_sql("?", "max", newest_first)
        args = (created_after_ms, created_after_ms, created_after_ms, limit, offset)
        return await self._read(lambda c: [codec.digest_to_run(tuple(r)) for r in c.execute(sql, args)])

    async def reclaim_space(self, max_pages: int) -> int:
        """Give up to ``max_pages`` free pages of the file back to the file system (incremental
        vacuum; the file was made with ``auto_vacuum=INCREMENTAL``, see ``_migrate``). Runs on the
        writer thread between its transactions; returns how many pages were free before."""

        def w(c: sqlite3.Connection) -> int:
            free = int(c.execute("PRAGMA freelist_count").fetchone()[0])
            # One page per statement: the pragma frees a page per step, and Python's sqlite3
            # steps a statement that returns no columns only once.
            for _ in range(min(free, max_pages)):
                c.execute("PRAGMA incremental_vacuum(1)")
            return free

        return await self._write(w) if max_pages > 0 else 0


_Rows = list[sqlite3.Row]


def _read_run(c: sqlite3.Connection, run_id: str) -> tuple[sqlite3.Row | None, _Rows, _Rows]:
    """A run's row, steps and attempts in one read transaction: in WAL mode every SELECT in it
    sees the same commit, so a transition committed meanwhile is seen whole or not at all. The
    rows are decoded after it ends, so the snapshot is held no longer than the reads."""
    c.execute("BEGIN")
    try:
        run = c.execute(_RUN_SELECT + " WHERE run_id = ?", (run_id,)).fetchone()
        steps = c.execute(_STEPS_SELECT, (run_id,)).fetchall()
        attempts = c.execute(_ATTEMPT_SELECT + " WHERE run_id = ?", (run_id,)).fetchall()
    finally:
        c.execute("COMMIT")
    return run, steps, attempts


def _steps_and_attempts(steps: _Rows, attempts: _Rows) -> tuple[list[StepRecord], list[AttemptRecord]]:
    """Steps by step id; attempts by step id, then number."""
    return codec.steps_and_attempts(steps, attempts)


def _snapshot(c: sqlite3.Connection, run_id: str) -> RunSnapshot | None:
    run, steps, attempts = _read_run(c, run_id)
    if run is None:
        return None
    return RunSnapshot(_run_from_row(run), *_steps_and_attempts(steps, attempts))


def _resolve_all(answers: list[tuple[asyncio.Future[Any], Any, bool]]) -> None:
    for future, value, ok in answers:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


_IN_FLIGHT = (
    "SELECT a.attempt_id, a.run_id, a.step_id, a.data_json FROM attempts a JOIN runs r ON r.run_id = a.run_id"
    " WHERE r.status IN ('pending', 'running')"
)


def _count_running(rows: Iterable[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        attempt = codec.attempt_from_row(*row)
        if attempt.status == ATTEMPT_RUNNING and attempt.agent_id:
            counts[attempt.agent_id] = counts.get(attempt.agent_id, 0) + 1
    return counts
