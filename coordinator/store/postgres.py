"""PostgreSQL Store: several coordinator processes on one database.

Connections come from a pool (``psycopg_pool.AsyncConnectionPool``) in autocommit mode: a read is
one statement (one snapshot), a write that needs more is an explicit transaction. A transition
(``apply``) is one transaction sent in pipeline mode: every statement of it goes out at once, the
compare-and-swap results come back in one round trip, and a refused transition is rolled back
whole, so nothing of it is written. Claims of timers take ``FOR UPDATE SKIP LOCKED`` row locks in
the statement that marks them claimed, so concurrent claimers (any connection, any process) never
get the same timer.

Other coordinators learn of a transition from a hint: ``apply`` sends a ``NOTIFY`` on the schema's
channel in the same transaction (so it goes out only when the transition commits) naming the runs it
changed, the queues it offered tasks on and its earliest timer; each store listens on its own
connection and hands what other processes committed to ``subscribe``'s callback. A hint may be
late or lost (before the listening connection first listens, or while it is down): each time it
starts listening, the listener hands on ``StoreHint(everything=True)``. See docs/architecture.md, "Several coordinators".

Schema migrations (``coordinator/store/pg_migrations/NNNN_name.sql``, recorded in
``schema_version``) are applied at ``open`` by one process at a time, under an advisory lock; a
database whose schema is newer than this binary knows is refused. There is no process lock:
several coordinators share the database, and the version check of ``apply`` decides between them.

The connection string is libpq's (``postgresql://USER@HOST:PORT/DB?sslmode=...``, or
``key=value`` pairs), passed through as it is: the password and TLS settings come the standard
way (the URL, ``PGPASSWORD``, ``PGPASSFILE``, ``PGSSLMODE``, ...).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import logging
import os
import re
import secrets
import select
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, AsyncCursor
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from contracts.errors import FailedPreconditionError, UnreachableError
from contracts.model import Deprecation, RetryPolicy, Timeouts
from coordinator.store import codec, run_days
from coordinator.store.base import StoreHint
from coordinator.store.pg_retry import (
    RETRY_BUDGET_S,
    STAMP_SQL,
    Reachability,
    Stamp,
    lost_connection,
    transaction_outcome,
)
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

DEFAULT_POOL_SIZE = 10
# Seconds to wait for a connection when the URL (or PGCONNECT_TIMEOUT) does not say: libpq alone
# would wait for the operating system's TCP timeout (minutes) on a host that drops packets.
DEFAULT_CONNECT_TIMEOUT_S = 10
# libpq's TCP settings unless the URL gives them: keepalives find a dead peer of an idle
# connection in about 30 s, tcp_user_timeout (Linux) fails a connection whose sent data stays
# unacknowledged for 15 s, where TCP's own retransmissions would take many minutes.
_TCP_DEFAULTS = {
    "keepalives": 1,
    "keepalives_idle": 15,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,
}
# Seconds the pool keeps trying to make a connection (to replace a lost one, or to grow) before
# it gives up until asked again (see ``open``).
_RECONNECT_TIMEOUT_S = 0.5
# The advisory lock that one process holds while it migrates a schema: (this, hash of the schema).
_MIGRATION_LOCK = 0x41434344  # "ACCD"
# The advisory lock (this, hash of the schema) that deletes of several UI sessions take, for the
# length of their transaction: two of them at once on different coordinators could otherwise lock
# the same rows in different orders and deadlock. Sign-ins are rare, so waiting costs nothing.
_UI_SESSIONS_LOCK = 0x41435553  # "ACUS"
_UI_SESSIONS_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s, hashtext(coalesce(current_schema(), '')))"

# PostgreSQL refuses a NOTIFY payload of 8000 bytes or more: a hint that would not fit says
# "read everything again" instead.
_HINT_PAYLOAD_MAX = 7900
# The listening connection's TCP keepalives, unless the URL sets them: a database gone behind a
# broken network is noticed within about 20 s (idle 10 s, then 5 probes 2 s apart) rather than
# the operating system's two hours, and the listener reconnects.
_LISTENER_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 2,
    "keepalives_count": 5,
}

_Conn = AsyncConnection[TupleRow]


def _values(columns: Sequence[str]) -> str:
    return ", ".join("%s" for _ in columns)


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({_values(columns)})"


def _upsert(table: str, columns: Sequence[str], key: Sequence[str], also: str = "") -> str:
    """Insert, or replace every column but the key's of the row with the same key (SQLite's
    INSERT OR REPLACE, without a delete)."""
    rest = ", ".join(f"{name} = excluded.{name}" for name in columns if name not in key)
    return f"{_insert(table, columns)} ON CONFLICT ({', '.join(key)}) DO UPDATE SET {rest}{also}"


# runs: a new run is inserted unless its id or idempotency key is taken (then the transition is
# refused: ``_explain_refused_insert`` says which); an update is a compare-and-swap on version.
_RUN_INSERT = (
    f"INSERT INTO runs ({', '.join(codec.RUN_COLUMNS)}, version) VALUES ({_values(codec.RUN_COLUMNS)}, 1)"
    " ON CONFLICT DO NOTHING RETURNING run_id"
)
# Parameters: the row's ``codec.RUN_MUTABLE_COLUMNS``, the new version, the run id, the expected
# version.
_RUN_UPDATE = (
    f"UPDATE runs SET {', '.join(f'{name} = %s' for name in codec.RUN_MUTABLE_COLUMNS)}, version = %s"
    " WHERE run_id = %s AND version = %s"
)
_RUN_BUMP = "UPDATE runs SET version = %s WHERE run_id = %s AND version = %s"
_RUN_SELECT = "SELECT version, data_json, input_json, output_json FROM runs"
# A run without its payloads (``get_run(payloads=False)``; see codec, "Payloads").
_RUN_HEAD_SELECT = "SELECT version, data_json FROM runs"

_STEP_UPSERT = _upsert("steps", codec.STEP_COLUMNS, ("run_id", "step_id"))
_ATTEMPT_UPSERT = _upsert("attempts", codec.ATTEMPT_COLUMNS, ("attempt_id",))
_POLICY_INSERT = "INSERT INTO policies (key, policy_json) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING"
_ATTEMPT_SELECT = f"SELECT {', '.join(codec.ATTEMPT_COLUMNS)} FROM attempts"
_AUDIT_INSERT = _insert("audit", codec.AUDIT_COLUMNS)
_TOKEN_INSERT = _insert("tokens", codec.TOKEN_COLUMNS)
_TOKEN_SELECT = f"SELECT {', '.join(codec.TOKEN_COLUMNS)} FROM tokens"
_EVENT_UPSERT = _upsert("events", codec.EVENT_COLUMNS, ("event_id",))
_REQUEST_UPSERT = _upsert(
    "requests", ("scope", "request_id", "answer_json", "created_ms"), ("scope", "request_id")
)
_MARK_INSERT = (
    _insert("requests", ("scope", "request_id", "answer_json", "created_ms"))
    + " ON CONFLICT (scope, request_id) DO NOTHING RETURNING 1"
)
# Setting a timer again moves it and drops any claim on it: it is a new deadline.
_TIMER_SET = _upsert("timers", codec.TIMER_COLUMNS, ("kind", "key"), ", claimed_until_ms = 0")
_TIMER_FIRE = "DELETE FROM timers WHERE kind = %s AND key = %s AND due_ms = %s"
_TIMER_CLEAR = "DELETE FROM timers WHERE kind = %s AND key = %s"
_OFFER_ADD = _upsert("offers", codec.OFFER_COLUMNS, ("attempt_id",))
_OFFER_REMOVE = "DELETE FROM offers WHERE attempt_id = %s"
_INFLIGHT_ADD = (
    "INSERT INTO inflight (attempt_id, caller_team, contract) VALUES (%s, %s, %s)"
    " ON CONFLICT (attempt_id) DO UPDATE SET caller_team = excluded.caller_team, contract = excluded.contract"
)
_INFLIGHT_REMOVE = "DELETE FROM inflight WHERE attempt_id = %s"
# The lock per limit (``Changes.inflight_caps``) that counts of its key are taken under, within
# this schema (several test schemas share a database).
_CAP_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtext(coalesce(current_schema(), '')), hashtext(%s))"


def _cap_count(kind: str) -> str:
    column = "caller_team" if kind == INFLIGHT_TEAM else "contract"
    return f"SELECT count(*) FROM inflight WHERE {column} = %s"


# A team's start bucket (``take_start_token``): one statement, so concurrent takers queue on the
# row (ON CONFLICT DO UPDATE locks it) and each sees the tokens the one before left. The SET
# expressions read the row as it was; ``level`` is what the bucket holds now, refilled.
_START_LEVEL = "LEAST(%(burst)s, b.tokens + GREATEST(0, %(now)s - b.at_ms) * %(rate)s / 1000.0)"
_START_TAKE = (
    "INSERT INTO start_buckets AS b (team, tokens, at_ms, taken)"
    " VALUES (%(team)s, %(burst)s - 1, %(now)s, true)"
    " ON CONFLICT (team) DO UPDATE SET"
    f" tokens = CASE WHEN {_START_LEVEL} >= 1 THEN {_START_LEVEL} - 1 ELSE {_START_LEVEL} END,"
    f" taken = {_START_LEVEL} >= 1,"
    " at_ms = GREATEST(b.at_ms, %(now)s)"
    " RETURNING taken, tokens"
)
_SPAN_UPSERT = _upsert("spans", codec.SPAN_COLUMNS, ("trace_id", "span_id"))
_AGENT_UPSERT = _upsert("agents", codec.AGENT_COLUMNS, ("agent_id",))

_UI_SESSION_INSERT = _insert("ui_sessions", codec.UI_SESSION_COLUMNS)
# Parameters: the new session's key (never evicted), how many others to keep.
_UI_SESSION_EVICT = (
    "DELETE FROM ui_sessions WHERE key IN (SELECT key FROM ui_sessions WHERE key <> %s"
    " ORDER BY last_seen_ms DESC, created_ms DESC, key DESC OFFSET %s)"
)

# A run, its steps (in step id order) and its attempts in ONE statement, so from one snapshot: a
# transition committed meanwhile is in it whole or not at all.
# (extra: a step's policy, an attempt's step id; see codec.steps_and_attempts)
_LOAD_RUN = (
    "SELECT 0 AS part, '' COLLATE \"C\" AS key, version, data_json, NULL::text AS extra,"
    " input_json, output_json FROM runs WHERE run_id = %(run_id)s"
    " UNION ALL SELECT 1, s.step_id, 0, s.data_json, p.policy_json, s.input_json, s.output_json"
    " FROM steps AS s LEFT JOIN policies AS p ON p.key = s.policy_ref WHERE s.run_id = %(run_id)s"
    " UNION ALL SELECT 2, attempt_id, 0, data_json, step_id, NULL, NULL FROM attempts"
    " WHERE run_id = %(run_id)s ORDER BY part, key"
)

# Due, unclaimed timers, earliest first, locked and marked claimed by one statement. SKIP LOCKED
# passes over rows another claimer has locked this instant; a row another claimer claimed and
# committed meanwhile is checked again by PostgreSQL after its lock is taken (READ COMMITTED), so
# its new claimed_until_ms excludes it. So no two claimers ever get the same timer.
_CLAIM_TIMERS = (
    "WITH due AS ("
    " SELECT kind, key FROM timers WHERE due_ms <= %(now)s AND claimed_until_ms <= %(now)s"
    " ORDER BY due_ms, kind, key LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " UPDATE timers SET claimed_until_ms = %(until)s FROM due"
    " WHERE timers.kind = due.kind AND timers.key = due.key"
    " RETURNING timers.kind, timers.key, timers.run_id, timers.due_ms"
)
# The earliest timer free when it falls due, and the earliest claim to run out (index walks).
_NEXT_TIMER_DUE = (
    "SELECT (SELECT min(due_ms) FROM timers WHERE claimed_until_ms <= due_ms),"
    " (SELECT min(claimed_until_ms) FROM timers WHERE claimed_until_ms > due_ms)"
)
# The oldest ``limit`` offers of each (contract, major) from its index, then the oldest of those:
# bounded by keys x limit rows however long a queue has grown.
_OFFERS = (
    f"SELECT o.* FROM unnest(%(contracts)s::text[], %(majors)s::int[]) AS k(contract, major)"
    f" CROSS JOIN LATERAL (SELECT {', '.join(codec.OFFER_COLUMNS)} FROM offers"
    " WHERE offers.contract = k.contract AND offers.major = k.major"
    " AND NOT (offers.caller_team = ANY(%(held)s::text[]))"
    " AND NOT (offers.attempt_id = ANY(%(passing)s::text[]))"
    " ORDER BY offered_ms, attempt_id LIMIT %(limit)s) AS o"
    " ORDER BY o.offered_ms, o.attempt_id LIMIT %(limit)s"
)
_NEWEST_WORKFLOWS = (
    "SELECT w.* FROM workflows w JOIN (SELECT name, MAX(version) AS v FROM workflows GROUP BY name) n"
    " ON w.name = n.name AND w.version = n.v"
)


class SchemaTooNewError(FailedPreconditionError):
    """The database was migrated by a newer Accord than this one: this binary would misread it."""


def describe(conninfo: str) -> str:
    """Where ``conninfo`` points, for messages: ``HOST:PORT/DATABASE``, never the password.

    What the connection string leaves out comes from libpq's environment (PGHOST, PGPORT,
    PGDATABASE), as libpq itself takes it."""
    params = conninfo_to_dict(conninfo)
    host = str(params.get("host") or os.environ.get("PGHOST") or "")
    port = str(params.get("port") or os.environ.get("PGPORT") or "5432")
    database = str(params.get("dbname") or os.environ.get("PGDATABASE") or params.get("user") or "")
    if not host or host.startswith("/"):  # a Unix socket: libpq's default directory, or this one
        where = f"{host or 'the local socket'} (port {port})"
    elif "," in host:  # several hosts, tried in turn
        where = f"{host} (ports {port})"
    else:
        where = f"{host}:{port}"
    return f"{where}/{database}" if database else where


def _reason(exc: BaseException) -> str:
    """The first line of libpq's message without its preamble: "Connection refused",
    'database "x" does not exist', 'password authentication failed for user "u"'."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    first = re.sub(r"^connection failed:\s*", "", first)
    first = re.sub(r"^connection to server (?:at|on) .*? failed:\s*", "", first)
    return re.sub(r"^(?:FATAL|ERROR):\s*", "", first)


def _migrations() -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration this binary knows, in order."""
    files = [
        f for f in resources.files("coordinator.store.pg_migrations").iterdir() if f.name.endswith(".sql")
    ]
    return sorted((int(f.name.split("_", 1)[0]), f.name, f.read_text()) for f in files)


async def _mark_requests(conn: _Conn, audit: Iterable[AuditRecord | None]) -> None:
    """Record the requests these audit entries apply (``AuditRecord.request``) in the current
    transaction; ``RequestConflict`` when another call applied one of them first (a record of
    that request id made by another ``by``). A concurrent transaction inserting the same id is
    waited for (the primary key), so of two replicas applying one request at once one wins."""
    seen: set[tuple[str, str]] = set()
    for entry in audit:
        mark = entry.request if entry is not None else None
        if mark is None or (mark.scope, mark.request_id) in seen:
            continue
        seen.add((mark.scope, mark.request_id))
        row = (mark.scope, mark.request_id, codec.dumps(mark.value), int(time.time() * 1000))
        inserted = await conn.execute(_MARK_INSERT, row)
        if await inserted.fetchone() is not None:
            continue
        cursor = await conn.execute(
            "SELECT answer_json FROM requests WHERE scope = %s AND request_id = %s", row[:2]
        )
        stored = await cursor.fetchone()
        answer = json.loads(stored[0]) if stored is not None else None
        if not isinstance(answer, dict) or str(answer.get("by", "")) != mark.by:
            raise RequestConflict(mark)


async def _write_audit(conn: _Conn, audit: AuditRecord) -> None:
    """One audit entry, and the request it applies (``_mark_requests``)."""
    await _mark_requests(conn, (audit,))
    await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))


class PostgresStore:
    """The Store of coordinators that share one PostgreSQL database."""

    def __init__(
        self,
        conninfo: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
        retry_budget_s: float = RETRY_BUDGET_S,
    ) -> None:
        """``conninfo``: a libpq connection string or URL (it is checked here: a malformed one
        raises ``psycopg.ProgrammingError``); ``pool_size``: connections at the most;
        ``retry_budget_s``: how long an operation keeps trying while PostgreSQL cannot be reached
        (``coordinator.store.pg_retry``)."""
        self._where = describe(conninfo)
        self._conninfo = conninfo
        self._pool_size = max(1, pool_size)
        params = conninfo_to_dict(conninfo)
        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            # Shown in pg_stat_activity, unless the URL names the application itself.
            "fallback_application_name": "accord-coordinator",
        }
        if "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
            self._connect_kwargs["connect_timeout"] = connect_timeout_s
        # A server gone without a word (a broken network) is found out by the OS in seconds,
        # not the many minutes of TCP's own retransmissions, unless the URL says otherwise.
        for key, value in _TCP_DEFAULTS.items():
            # tcp_user_timeout came with libpq 12; an older one would refuse to connect at all.
            if key not in params and (key != "tcp_user_timeout" or psycopg.pq.version() >= 120000):
                self._connect_kwargs[key] = value
        self._pool_or_none: AsyncConnectionPool[_Conn] | None = None
        # Hints: this process's mark on its own NOTIFYs, the schema's channel (set by ``open``),
        # and the listener that hands other processes' hints to ``subscribe``'s callback.
        self._origin = secrets.token_hex(8)
        self._channel = ""
        self._on_hint: Callable[[StoreHint], None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listen_kwargs = dict(self._connect_kwargs)
        for key, value in _LISTENER_KEEPALIVES.items():
            if key not in params:
                self._listen_kwargs[key] = value
        self._reach = Reachability(self._where, self._probe, budget_s=retry_budget_s, on_back=self._reconnect)
        # Keys of the step policies known to be in the table ``policies`` (see codec.step_to_row).
        self._policies: set[str] = set()
        # Called with the seconds each write transaction took (from its first statement to the
        # answer to its COMMIT).
        self.on_commit: Callable[[float], None] | None = None
        # Group commit (``apply``): transitions that arrive while a batch commits wait for the
        # next one, which writes them all in one transaction; ``commits`` counts transactions.
        self._batch: list[tuple[str, _Writes, asyncio.Future[None]]] = []
        self._committing: asyncio.Task[None] | None = None
        self._batch_began, self._batch_warned = 0.0, False
        self.commits = 0

    @property
    def where(self) -> str:
        """``HOST:PORT/DATABASE`` of the database, without credentials."""
        return self._where

    def subscribe_reachability(self, listener: Callable[[bool], None]) -> None:
        """``listener(False)`` when PostgreSQL is found unreachable while the store is open,
        ``listener(True)`` when it answers again (``coordinator.store.pg_retry``)."""
        self._reach.subscribe(listener)

    # ---------- lifecycle ----------

    async def open(self) -> None:
        """Connect, apply pending schema migrations (one process at a time) and open the pool.

        Raises ``UnreachableError`` when PostgreSQL is down or refuses the connection, and
        ``SchemaTooNewError`` when a newer Accord migrated the database."""
        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_kwargs)
        except psycopg.OperationalError as exc:
            raise UnreachableError(f"cannot connect to PostgreSQL at {self._where}: {_reason(exc)}") from exc
        try:
            await self._migrate(conn)
            # One channel per schema: coordinators on another schema of the same database (a
            # staging copy, a test's) do not wake these. Channel names are at most 63 bytes.
            self._channel = str(
                await _scalar(conn, "SELECT 'accord_hints_' || md5(coalesce(current_schema(), ''))")
            )
        except psycopg.OperationalError as exc:
            raise UnreachableError(f"lost PostgreSQL at {self._where}: {_reason(exc)}") from exc
        finally:
            await conn.close()
        pool: AsyncConnectionPool[_Conn] = AsyncConnectionPool(
            self._conninfo,
            min_size=min(2, self._pool_size),
            max_size=self._pool_size,
            kwargs=self._connect_kwargs,
            check=self._still_open,
            # A connection that cannot be made again is given up soon: the pool makes new ones
            # when asked (an operation tried again), instead of after a backoff of its own that
            # grows to minutes while PostgreSQL is away.
            reconnect_timeout=_RECONNECT_TIMEOUT_S,
            reconnect_failed=self._cannot_connect,
            open=False,
            name="accord-store",
        )
        try:
            await pool.open(wait=True, timeout=float(self._connect_kwargs.get("connect_timeout", 30)))
        except PoolTimeout as exc:
            await pool.close()
            raise UnreachableError(
                f"cannot connect to PostgreSQL at {self._where}: the connection pool could not connect"
            ) from exc
        self._pool_or_none = pool

    async def _migrate(self, conn: _Conn) -> None:
        known = _migrations()
        newest = known[-1][0] if known else 0
        lock = "(%s, hashtext(coalesce(current_schema(), '')))"
        try:
            got = await _scalar(conn, f"SELECT pg_try_advisory_lock{lock}", (_MIGRATION_LOCK,))
            if not got:
                logger.info("waiting for another coordinator to migrate the schema of %s", self._where)
                await conn.execute(f"SELECT pg_advisory_lock{lock}", (_MIGRATION_LOCK,))
            try:
                # Created here, not by a migration: it says which migrations ran. Looked up before
                # it is created, so a role without CREATE rights opens an up-to-date database.
                if await _scalar(conn, "SELECT to_regclass('schema_version')") is None:
                    await conn.execute(
                        "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
                        " applied_ms bigint NOT NULL)"
                    )
                current = int(await _scalar(conn, "SELECT coalesce(max(version), 0) FROM schema_version"))
                if current > newest:
                    raise SchemaTooNewError(
                        f"the database at {self._where} has schema version {current}, newer than this"
                        f" coordinator knows (up to {newest}): a newer Accord migrated it; upgrade this"
                        " coordinator (every one that shares the database) to that version"
                    )
                for number, name, sql in known:
                    if number <= current:
                        continue
                    logger.info("applying schema migration %s to %s", name, self._where)
                    async with conn.transaction():
                        await conn.execute(sql)  # no parameters: the whole file, as it is
                        await conn.execute(
                            "INSERT INTO schema_version (version, name, applied_ms) VALUES (%s, %s, %s)",
                            (number, name, int(time.time() * 1000)),
                        )
            finally:
                await conn.execute(f"SELECT pg_advisory_unlock{lock}", (_MIGRATION_LOCK,))
        except psycopg.OperationalError as exc:
            raise UnreachableError(f"lost PostgreSQL at {self._where}: {_reason(exc)}") from exc
        except psycopg.Error as exc:
            raise FailedPreconditionError(
                f"cannot prepare the schema of the database at {self._where}: {_reason(exc)}"
            ) from exc

    async def close(self) -> None:
        if self._committing is not None:
            await asyncio.gather(self._committing, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self._reach.close()
        if self._pool_or_none is not None:
            await self._pool_or_none.close()
            self._pool_or_none = None

    # ---------- hints from other coordinators ----------

    @property
    def shared(self) -> bool:
        return True

    def subscribe(self, on_hint: Callable[[StoreHint], None]) -> None:
        self._on_hint = on_hint
        if self._listener is None:
            self._listener = asyncio.get_running_loop().create_task(self._listen(), name="store-hints")

    async def _listen(self) -> None:
        """LISTEN on the schema's channel and hand on other processes' hints; on a lost
        connection reconnect (backing off up to 2 s). Each time it listens (the first time too)
        it hands on ``everything``: hints sent before are lost."""
        backoff = 0.05
        lost = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._listen_kwargs)
                async with conn:
                    await conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(self._channel)))
                    if lost:
                        logger.info("hints from other coordinators come again from %s", self._where)
                    # Whatever was committed since ``subscribe`` (before this connection listened)
                    # or while it was lost came with no hint: read again.
                    self._deliver(StoreHint(everything=True))
                    lost = False
                    backoff = 0.05
                    async for notify in conn.notifies():
                        hint = self._parse_hint(notify.payload)
                        if hint is not None:
                            self._deliver(hint)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # psycopg.Error, OSError: the connection is gone
                if lost_connection(exc):
                    self._reach.failed(exc)  # is PostgreSQL itself gone? (health, one log line)
                if not lost:
                    logger.warning(
                        "lost the connection that brings hints from other coordinators (%s: %s);"
                        " until it is back, what they commit is seen by reading again",
                        self._where,
                        _reason(exc),
                    )
                    # Waits and caches fall back to reading the store: wake them for that now.
                    self._deliver(StoreHint(everything=True))
                lost = True
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _deliver(self, hint: StoreHint) -> None:
        if self._on_hint is None:
            return
        try:
            self._on_hint(hint)
        except Exception:
            logger.exception("handling a hint from another coordinator failed")

    def _parse_hint(self, payload: str) -> StoreHint | None:
        """A hint NOTIFYed by ``apply`` (at most 8000 bytes: PostgreSQL's limit); None for this
        process's own or one it cannot read."""
        try:
            data = json.loads(payload)
            if data.get("o") == self._origin:
                return None
            if data.get("a"):
                return StoreHint(everything=True)
            due = data.get("t")
            if "g" in data:
                return StoreHint(agents={str(agent): int(polls) for agent, polls in data["g"].items()})
            return StoreHint(
                runs={str(run_id): int(version) for run_id, version in data.get("r", {}).items()},
                queues={(str(q[0]), int(q[1])): int(q[2]) if len(q) > 2 else 1 for q in data.get("q", [])},
                timer_due_ms=None if due is None else int(due),
                freed=bool(data.get("f")),
            )
        except (ValueError, TypeError, AttributeError):
            logger.warning("ignored an unreadable hint on %s: %.200s", self._channel, payload)
            return None

    async def hint_presence(self, agents: dict[str, int]) -> None:
        if not agents or not self._channel:
            return
        # As many NOTIFYs as it takes to stay under PostgreSQL's payload limit (an agent id is
        # at most 128 characters: a few dozen agents per payload at the least).
        payloads: list[str] = []
        chunk: dict[str, int] = {}
        for agent_id, polls in sorted(agents.items()):
            chunk[agent_id] = polls
            if len(json.dumps(chunk)) > _HINT_PAYLOAD_MAX - 100:
                del chunk[agent_id]
                payloads.append(json.dumps({"o": self._origin, "g": chunk}, separators=(",", ":")))
                chunk = {agent_id: polls}
        payloads.append(json.dumps({"o": self._origin, "g": chunk}, separators=(",", ":")))
        await self._execute(
            "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload", (self._channel, payloads)
        )

    def _hint_payload(self, changes: Changes) -> str | None:
        """The NOTIFY payload for ``changes`` (None when it holds nothing to wake anyone for)."""
        runs = {run_id: version + 1 for run_id, version in changes.expect_versions.items()}
        for run in changes.runs:
            runs.setdefault(run.run_id, 1)
        offered = collections.Counter((offer.contract, offer.major) for offer in changes.offers_add)
        queues = sorted([contract, major, count] for (contract, major), count in offered.items())
        due = min((t.due_ms for t in changes.timers_set), default=None)
        if not runs and not queues and due is None and not changes.frees_held:
            return None
        data: dict[str, Any] = {"o": self._origin, "r": runs}
        if queues:
            data["q"] = queues
        if changes.frees_held:
            data["f"] = 1
        if due is not None:
            data["t"] = due
        payload = json.dumps(data, separators=(",", ":"))
        if len(payload.encode()) > _HINT_PAYLOAD_MAX:
            payload = json.dumps({"o": self._origin, "a": 1})
        return payload

    # ---------- connections ----------

    @property
    def _pool(self) -> AsyncConnectionPool[_Conn]:
        if self._pool_or_none is None:
            raise RuntimeError("the PostgreSQL store is not open")
        return self._pool_or_none

    async def _rows(self, sql: str, args: Any = None) -> list[TupleRow]:
        async def rows(wait_s: float) -> list[TupleRow]:
            async with self._pool.connection(wait_s) as conn:
                cursor = await conn.execute(sql, args)
                return await cursor.fetchall()

        return await self._reach.retry(rows)

    async def _dicts(self, sql: str, args: Any = None) -> list[dict[str, Any]]:
        async def dicts(wait_s: float) -> list[dict[str, Any]]:
            async with self._pool.connection(wait_s) as conn:
                cursor = conn.cursor(row_factory=dict_row)
                await cursor.execute(sql, args)
                return await cursor.fetchall()

        return await self._reach.retry(dicts)

    async def _one(self, sql: str, args: Any = None) -> TupleRow | None:
        rows = await self._rows(sql, args)
        return rows[0] if rows else None

    async def _execute(self, sql: str, args: Any = None) -> int:
        """One statement in its own transaction; the number of rows it changed. Tried again after
        a lost connection even if it did commit: only for statements that may run twice."""

        async def execute(wait_s: float) -> int:
            async with self._pool.connection(wait_s) as conn:
                return (await conn.execute(sql, args)).rowcount

        return await self._reach.retry(execute)

    async def _still_open(self, conn: _Conn) -> None:
        try:
            await _still_open(conn)
        except psycopg.OperationalError as exc:
            self._reach.failed(exc)  # the server ended it: is the server itself going away?
            raise

    def _cannot_connect(self, pool: AsyncConnectionPool[_Conn]) -> None:
        self._reach.failed(PoolTimeout(f"the pool could not connect for {_RECONNECT_TIMEOUT_S}s"))

    async def _probe(self) -> None:
        """Is PostgreSQL there? A new connection (not one of the pool's), one trivial statement."""
        conn = await psycopg.AsyncConnection.connect(self._conninfo, **self._connect_kwargs)
        try:
            await conn.execute("SELECT 1")
        finally:
            await conn.close()

    async def _reconnect(self) -> None:
        """PostgreSQL is back: have the pool drop what it holds of before and connect anew now,
        rather than when its own retries come round."""
        if self._pool_or_none is not None:
            await self._pool_or_none.check()

    async def _write(self, body: Callable[[_Conn], Awaitable[T]], committed: T = None) -> T:  # type: ignore[assignment]
        """Run ``body`` in one transaction (the connection in pipeline mode), tried again while
        PostgreSQL cannot be reached; committed when it returns, rolled back if it raises. Returns
        what ``body`` returned, or ``committed`` for a transaction whose COMMIT's answer was lost
        and that did commit (what it returned is gone with the answer).

        A transaction is never run twice: before its COMMIT goes out it learns its id
        (``Stamp``); if the connection is lost after that, the server is asked what became of it
        (``transaction_outcome``), and only one that was rolled back is run again."""
        sent: Stamp | None = None  # a COMMIT that may have gone through

        async def write(wait_s: float) -> T:
            nonlocal sent
            async with self._pool.connection(wait_s) as conn:
                if sent is not None:
                    did_commit = await transaction_outcome(conn, sent, self._reach.budget_s)
                    logger.info(
                        "the connection to %s was lost as transaction %d committed: it %s",
                        self._where,
                        sent.xid,
                        "did commit" if did_commit else "was rolled back, and runs again",
                    )
                    if did_commit:
                        return committed
                    sent = None
                stamp: Stamp | None = None
                began = time.monotonic()
                try:
                    async with conn.pipeline(), conn.transaction():
                        stamped = await conn.execute(STAMP_SQL)
                        result = await body(conn)
                        row = await stamped.fetchone()
                        assert row is not None
                        stamp = Stamp(int(row[0]), int(row[1]))
                except Exception as exc:
                    if stamp is not None and lost_connection(exc):
                        sent = stamp
                    raise
                self.commits += 1
                if self.on_commit is not None:
                    self.on_commit(time.monotonic() - began)
                return result

        return await self._reach.retry(write)

    # ---------- settings ----------

    async def get_setting(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM settings WHERE key = %s", (key,))
        return None if row is None else str(row[0])

    async def set_setting(self, key: str, value: str, audit: AuditRecord | None = None) -> None:
        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            await conn.execute(_upsert("settings", ("key", "value"), ("key",)), (key, value))
            if audit is not None:
                await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def set_setting_if_absent(self, key: str, value: str) -> str:
        # Tried again after a lost connection as it is: a second try finds the first's row.
        async def insert_or_read(wait_s: float) -> str:
            async with self._pool.connection(wait_s) as conn:
                # ON CONFLICT waits for a concurrent insert of the same key to end; the SELECT
                # after it is a new statement, so its snapshot has the winner's row.
                inserted = await conn.execute(
                    "INSERT INTO settings (key, value) VALUES (%s, %s) ON CONFLICT (key) DO NOTHING"
                    " RETURNING value",
                    (key, value),
                )
                row = await inserted.fetchone()
                if row is None:
                    row = await (
                        await conn.execute("SELECT value FROM settings WHERE key = %s", (key,))
                    ).fetchone()
                assert row is not None  # settings are never deleted
                return str(row[0])

        return await self._reach.retry(insert_or_read)

    # ---------- web UI sessions ----------

    async def create_ui_session(self, session: UiSessionRecord, keep: int) -> None:
        async def write(conn: _Conn) -> None:
            await conn.execute(_UI_SESSIONS_LOCK_SQL, (_UI_SESSIONS_LOCK,))
            await conn.execute(_UI_SESSION_INSERT, codec.ui_session_to_row(session))
            await conn.execute(_UI_SESSION_EVICT, (session.key, max(0, keep - 1)))

        await self._write(write)

    async def get_ui_session(self, key: str) -> UiSessionRecord | None:
        rows = await self._dicts("SELECT * FROM ui_sessions WHERE key = %s", (key,))
        return codec.ui_session_from_row(rows[0]) if rows else None

    async def touch_ui_session(self, key: str, now_ms: int) -> bool:
        sql = "UPDATE ui_sessions SET last_seen_ms = GREATEST(last_seen_ms, %s) WHERE key = %s"
        return await self._execute(sql, (now_ms, key)) > 0

    async def delete_ui_session(self, key: str) -> bool:
        return await self._execute("DELETE FROM ui_sessions WHERE key = %s", (key,)) > 0

    async def prune_ui_sessions(self, seen_before_ms: int, created_before_ms: int) -> int:
        async def write(conn: _Conn) -> int:
            await conn.execute(_UI_SESSIONS_LOCK_SQL, (_UI_SESSIONS_LOCK,))
            pruned = await conn.execute(
                "WITH gone AS (DELETE FROM ui_sessions WHERE last_seen_ms < %s OR created_ms < %s"
                " RETURNING 1) SELECT count(*) FROM gone",
                (seen_before_ms, created_before_ms),
            )
            row = await pruned.fetchone()
            return int(row[0]) if row is not None else 0

        return await self._write(write, committed=0)  # how many: gone with a lost answer

    # ---------- teams ----------

    async def create_team(self, team: TeamRecord, token: TokenRecord, audit: AuditRecord) -> None:
        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            created = await conn.execute(
                _insert("teams", codec.TEAM_COLUMNS) + " ON CONFLICT (name) DO NOTHING RETURNING name",
                codec.team_to_row(team),
            )
            if await created.fetchone() is None:
                raise KeyError(team.name)
            await conn.execute(_TOKEN_INSERT, codec.token_to_row(token))
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def get_team(self, name: str) -> TeamRecord | None:
        rows = await self._dicts("SELECT * FROM teams WHERE name = %s", (name,))
        return codec.team_from_row(rows[0]) if rows else None

    async def list_teams(self) -> list[TeamRecord]:
        return [codec.team_from_row(r) for r in await self._dicts("SELECT * FROM teams ORDER BY name")]

    @staticmethod
    async def _lock_live_tokens(conn: _Conn, team: str, now_ms: int) -> list[TokenRecord]:
        """The team's live tokens, read under a lock on the team's row: changes to one team's
        tokens take turns across connections and processes, so a name checked free here stays
        free until this transaction ends."""
        await conn.execute("SELECT 1 FROM teams WHERE name = %s FOR UPDATE", (team,))
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(_TOKEN_SELECT + " WHERE team = %s AND revoked_ms = 0", (team,))
        return [t for t in map(codec.token_from_row, await cursor.fetchall()) if t.live_at(now_ms)]

    async def add_token(self, token: TokenRecord, audit: AuditRecord) -> None:
        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            live = await self._lock_live_tokens(conn, token.team, token.created_ms)
            if any(t.name == token.name for t in live):
                raise KeyError(token.name)
            await conn.execute(_TOKEN_INSERT, codec.token_to_row(token))
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def replace_token(
        self, token: TokenRecord, old_expires_ms: int, audit: AuditRecord
    ) -> list[TokenRecord]:
        changed: list[TokenRecord] = []

        async def write(conn: _Conn) -> list[TokenRecord]:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            live = await self._lock_live_tokens(conn, token.team, token.created_ms)
            changed[:] = replaced_tokens(live, token, old_expires_ms)
            for old in changed:
                await conn.execute(
                    "UPDATE tokens SET name = %s, expires_ms = %s, revoked_ms = %s WHERE token_hash = %s",
                    (old.name, old.expires_ms, old.revoked_ms, old.token_hash),
                )
            await conn.execute(_TOKEN_INSERT, codec.token_to_row(token))
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return list(changed)

        # A COMMIT whose answer was lost but that went through: what it changed was computed.
        return await self._write(write, committed=changed)

    async def revoke_token(self, team: str, name: str, at_ms: int, audit: AuditRecord) -> list[TokenRecord]:
        revoked: list[TokenRecord] = []

        async def write(conn: _Conn) -> list[TokenRecord]:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"UPDATE tokens SET revoked_ms = %s WHERE team = %s AND name = %s AND revoked_ms = 0"
                f" RETURNING {', '.join(codec.TOKEN_COLUMNS)}",
                (at_ms, team, name),
            )
            revoked[:] = sorted(
                (codec.token_from_row(r) for r in await cursor.fetchall()),
                key=lambda t: (t.created_ms, t.token_hash),
            )
            if revoked:
                await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return list(revoked)

        return await self._write(write, committed=revoked)

    async def list_tokens(self, team: str = "", *, revoked: bool = False) -> list[TokenRecord]:
        where = [*(["team = %s"] if team else []), *([] if revoked else ["revoked_ms = 0"])]
        sql = _TOKEN_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY team, created_ms, name"
        return [codec.token_from_row(r) for r in await self._dicts(sql, (team,) if team else None)]

    async def record_token_use(self, used: dict[str, int]) -> None:
        if not used:
            return

        async def write(conn: _Conn) -> None:  # may run twice: GREATEST
            await conn.cursor().executemany(
                "UPDATE tokens SET last_used_ms = GREATEST(last_used_ms, %s) WHERE token_hash = %s",
                [(at_ms, token_hash) for token_hash, at_ms in sorted(used.items())],
            )

        await self._write(write)

    async def set_team_defaults(
        self, name: str, retry: RetryPolicy, timeouts: Timeouts, audit: AuditRecord | None = None
    ) -> bool:
        async def write(conn: _Conn) -> bool:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute("SELECT * FROM teams WHERE name = %s FOR UPDATE", (name,))
            row = await cursor.fetchone()
            if row is None or codec.team_defaults_equal(codec.team_from_row(row), retry, timeouts):
                return False
            await conn.execute(
                "UPDATE teams SET retry_json = %s, timeouts_json = %s WHERE name = %s",
                (
                    codec.dumps(codec.retry_to_json(retry)),
                    codec.dumps(codec.timeouts_to_json(timeouts)),
                    name,
                ),
            )
            if audit is not None:
                await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return True

        return await self._write(write, committed=True)

    # ---------- contracts ----------

    async def add_contract(self, record: ContractRecord, audit: AuditRecord) -> None:
        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            await conn.execute(_insert("contracts", codec.CONTRACT_COLUMNS), codec.contract_to_row(record))
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def contract_versions(self, name: str) -> list[ContractRecord]:
        rows = await self._dicts("SELECT * FROM contracts WHERE name = %s ORDER BY vkey", (name,))
        return [codec.contract_from_row(r) for r in rows]

    async def list_contracts(self, team: str = "", name_prefix: str = "") -> list[ContractRecord]:
        sql = "SELECT * FROM contracts WHERE true"
        args: list[Any] = []
        if team:
            sql += " AND team = %s"
            args.append(team)
        if name_prefix:
            sql += " AND starts_with(name, %s)"
            args.append(name_prefix)
        sql += " ORDER BY name, vkey"
        return [codec.contract_from_row(r) for r in await self._dicts(sql, args)]

    async def set_deprecation(
        self, name: str, versions: list[str], deprecation: Deprecation | None, audit: AuditRecord
    ) -> None:
        value = codec.deprecation_text(deprecation)

        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            await conn.execute(
                "UPDATE contracts SET deprecated_json = %s WHERE name = %s AND version = ANY(%s)",
                (value, name, list(versions)),
            )
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def retire_contract(self, name: str, versions: list[str], at_ms: int, audit: AuditRecord) -> None:
        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            await conn.execute(
                "UPDATE contracts SET retired_ms = %s WHERE name = %s AND version = ANY(%s)",
                (at_ms, name, list(versions)),
            )
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def contract_callers(self, name: str, since_ms: int) -> list[CallerCount]:
        # data_json is text (see 0001_init.sql); json, not jsonb, reads any stored run.
        sql = (
            "SELECT workflow, workflow_version, team, v, COUNT(*) AS n FROM"
            " (SELECT workflow, workflow_version, team, (data_json::json -> 'pinned') ->> %s AS v"
            "  FROM runs WHERE created_ms >= %s AND data_json LIKE %s) AS pins"
            " WHERE v IS NOT NULL GROUP BY workflow, workflow_version, team, v"
            " ORDER BY n DESC, workflow, workflow_version, v"
        )
        rows = await self._rows(sql, (name, since_ms, codec.pinned_like(name)))
        return [CallerCount(r[0], int(r[1]), r[2], r[3], int(r[4])) for r in rows]

    async def active_runs_pinning(self, name: str) -> list[RunPin]:
        sql = (
            "SELECT run_id, workflow, workflow_version, team, v FROM"
            " (SELECT run_id, workflow, workflow_version, team, created_ms,"
            "  (data_json::json -> 'pinned') ->> %s AS v"
            f"  FROM runs WHERE status IN {codec.ACTIVE_STATUSES_SQL}) AS pins"
            " WHERE v IS NOT NULL ORDER BY created_ms, run_id"
        )
        return [RunPin(r[0], r[1], int(r[2]), r[3], r[4]) for r in await self._rows(sql, (name,))]

    # ---------- workflows ----------

    async def add_workflow(self, record: WorkflowRecord, audit: AuditRecord) -> None:
        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            await conn.execute(_insert("workflows", codec.WORKFLOW_COLUMNS), codec.workflow_to_row(record))
            await conn.cursor().executemany(
                "INSERT INTO workflow_contracts (workflow, version, contract) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(record.name, record.version, name) for name in record.contracts],
            )
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def workflow_versions(self, name: str) -> list[WorkflowRecord]:
        rows = await self._dicts("SELECT * FROM workflows WHERE name = %s ORDER BY version", (name,))
        return [codec.workflow_from_row(r) for r in rows]

    async def list_workflows(self, team: str = "") -> list[WorkflowRecord]:
        sql = _NEWEST_WORKFLOWS + (" WHERE w.team = %s" if team else "") + " ORDER BY w.name"
        return [codec.workflow_from_row(r) for r in await self._dicts(sql, (team,) if team else None)]

    async def consumers_of(self, contract_name: str) -> list[WorkflowRecord]:
        return [codec.workflow_from_row(r) for r in await self._dicts(codec.CONSUMERS_SQL, (contract_name,))]

    async def set_workflow_disabled(self, name: str, disabled_ms: int, by: str, audit: AuditRecord) -> None:
        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            await conn.execute(
                "INSERT INTO workflow_states (name, disabled_ms, disabled_by) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET disabled_ms = excluded.disabled_ms,"
                " disabled_by = excluded.disabled_by",
                (name, disabled_ms, by),
            )
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def workflow_disabled_ms(self, name: str) -> int:
        row = await self._one("SELECT disabled_ms FROM workflow_states WHERE name = %s", (name,))
        return int(row[0]) if row else 0

    async def delete_workflow_version(self, name: str, version: int, audit: AuditRecord) -> list[str]:
        async def write(conn: _Conn) -> list[str]:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            # Lock the version's row first: a run starting on it meanwhile reads it after this.
            await conn.execute(
                "SELECT 1 FROM workflows WHERE name = %s AND version = %s FOR UPDATE", (name, version)
            )
            cursor = await conn.execute(
                "SELECT run_id FROM runs WHERE workflow = %s AND workflow_version = %s"
                " ORDER BY created_ms LIMIT 10",
                (name, version),
            )
            users = [str(r[0]) for r in await cursor.fetchall()]
            if users:
                return users
            deleted = await conn.execute(
                "DELETE FROM workflows WHERE name = %s AND version = %s", (name, version)
            )
            await conn.execute(
                "DELETE FROM workflow_contracts WHERE workflow = %s AND version = %s", (name, version)
            )
            if deleted.rowcount:
                await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return []

        return await self._write(write, committed=[])

    # ---------- agents ----------

    async def put_agent(self, agent: AgentRecord, audit: AuditRecord | None = None) -> bool:
        row = codec.agent_to_row(agent)

        async def write(conn: _Conn) -> bool:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            # A new id is inserted here; of concurrent first registrations one inserts, the others
            # wait for it and find its row below (locked, so the comparison holds until commit).
            inserted = await conn.execute(
                _insert("agents", codec.AGENT_COLUMNS) + " ON CONFLICT (agent_id) DO NOTHING RETURNING 1",
                row,
            )
            changed = await inserted.fetchone() is not None  # (a fetch: the pipeline's results are in)
            if not changed:
                cursor = conn.cursor(row_factory=dict_row)
                await cursor.execute("SELECT * FROM agents WHERE agent_id = %s FOR UPDATE", (agent.agent_id,))
                stored = await cursor.fetchone()
                changed = stored is None or not codec.agent_from_row(stored).same_registration(agent)
                await conn.execute(_AGENT_UPSERT, row)
            if changed and audit is not None:
                await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))
            return changed

        return await self._write(write, committed=True)

    async def list_agents(self) -> list[AgentRecord]:
        return [codec.agent_from_row(r) for r in await self._dicts("SELECT * FROM agents")]

    async def in_flight_by_agent(self) -> dict[str, int]:
        return _count_running(await self._rows(_IN_FLIGHT))

    # ---------- runs ----------

    async def apply(self, changes: Changes) -> None:
        # Rows are written in key order within each table, so two transitions that touch the same
        # rows lock them in the same order and do not deadlock (runs: updates, version checks and
        # inserts together, by run id). The order of the tables is the one ``Changes`` documents.
        runs = {run.run_id: run for run in changes.runs}
        expected = changes.expect_versions
        run_ids = sorted(runs.keys() | expected.keys())
        encoded = [codec.step_to_row(s) for s in changes.steps]
        steps = sorted((row for row, _ in encoded), key=lambda r: r[:2])
        policies = sorted(
            {key: text for _, (key, text) in encoded if key and key not in self._policies}.items()
        )
        attempts = sorted((codec.attempt_to_row(a) for a in changes.attempts), key=lambda r: r[0])
        audit = [codec.audit_to_row(a) for a in changes.audit]
        events = sorted((codec.event_to_row(e) for e in changes.events), key=lambda r: r[0])
        now_ms = int(time.time() * 1000)
        requests = sorted(
            (scope, rid, codec.dumps(answer), now_ms) for (scope, rid), answer in changes.requests.items()
        )
        fired = sorted((t.kind, t.key, t.due_ms) for t in changes.timers_fired)
        cleared = sorted(set(changes.timers_clear))
        timers = sorted(
            ((t.kind, t.key, t.run_id, t.due_ms) for t in changes.timers_set), key=lambda r: r[:2]
        )
        offers_removed = [(attempt_id,) for attempt_id in sorted(set(changes.offers_remove))]
        offers_added = sorted((codec.offer_to_row(o) for o in changes.offers_add), key=lambda r: r[0])
        inflight_removed = [(attempt_id,) for attempt_id in sorted(set(changes.inflight_remove))]
        inflight_added = sorted(set(changes.inflight_add))
        caps = sorted(set(changes.inflight_caps))
        rows = {run_id: codec.run_to_row(run) for run_id, run in runs.items()}
        hint = self._hint_payload(changes) if self._channel else None

        writes = _Writes(
            run_ids=run_ids,
            rows=rows,
            expected=dict(expected),
            fired=fired,
            marked=[a for a in changes.audit if a.request is not None],
            tables=(
                policies,
                steps,
                attempts,
                audit,
                events,
                requests,
                cleared,
                timers,
                offers_removed,
                offers_added,
                inflight_removed,
                inflight_added,
            ),
            hint=hint,
        )

        try:
            if caps:
                # Alone: its locks per limit key are held to the end of its transaction, which
                # should not wait for a whole batch.
                await self._write(lambda conn: _write_all(conn, [writes], self._channel, caps))
            else:
                await self._grouped(run_ids[0] if run_ids else "", writes)
            # Committed: later transitions need not write these policies again (never deleted).
            self._policies.update(key for key, _ in policies)
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            # Two transitions waited on each other and PostgreSQL rolled this one back: it
            # wrote nothing, and reading the run again and applying anew is the remedy, as
            # for any lost race.
            raise VersionConflict(f"the transition lost a race in PostgreSQL: {_reason(exc)}") from exc

    async def _grouped(self, order: str, writes: _Writes) -> None:
        """Group commit: ``writes`` (a transition's rows) go into the next batch, which is one
        transaction for every transition that arrived while the one before committed (a
        transition alone waits for nothing more), each table's rows of all of them written by one
        statement (``_write_all``). A batch that fails because one of its
        transitions lost a race (a version check, a deadlock with another coordinator's batch)
        wrote nothing: each of its transitions is then written alone, so only the loser fails.
        ``order``: the transition's first run id; a batch writes them in that order, so that
        batches of several coordinators take their row locks in much the same order."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._batch.append((order, writes, future))
        if self._committing is None or self._committing.done():
            # Its first batch begins now (the task starts a turn of the loop later: a transition
            # queued meanwhile must not measure its wait from the last batch of long ago).
            self._batch_began, self._batch_warned = loop.time(), False
            self._committing = asyncio.ensure_future(self._commit_batches())
        elif loop.time() - self._batch_began > _BATCH_SLOW_S and not self._batch_warned:
            # A batch that waits this long (on a lock another transaction holds) holds up every
            # transition of this coordinator: say so, once per batch.
            self._batch_warned = True
            logger.warning(
                "a write transaction to %s has been waiting for %.0fs; %d transition(s) wait behind it",
                self._where,
                loop.time() - self._batch_began,
                len(self._batch),
            )
        await future

    async def _commit_batches(self) -> None:
        while self._batch:
            batch = sorted(self._batch[:_BATCH_MAX], key=lambda item: item[0])
            del self._batch[:_BATCH_MAX]
            self._batch_began, self._batch_warned = asyncio.get_running_loop().time(), False
            outcomes: list[BaseException | None]
            every = [writes for _, writes, _ in batch]
            together_outcome = await _outcome(
                self._write(functools.partial(_write_all, writes=every, channel=self._channel))
            )
            if together_outcome is None:
                outcomes = [None] * len(batch)
            elif len(batch) == 1 or isinstance(together_outcome, UnreachableError):
                outcomes = [together_outcome] * len(batch)  # each would wait as long again
            else:
                outcomes = [
                    await _outcome(
                        self._write(functools.partial(_write_all, writes=[one], channel=self._channel))
                    )
                    for one in every
                ]
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # its caller was cancelled; the write went on regardless
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)

    async def get_run(self, run_id: str, *, payloads: bool = True) -> RunRecord | None:
        row = await self._one(
            (_RUN_SELECT if payloads else _RUN_HEAD_SELECT) + " WHERE run_id = %s", (run_id,)
        )
        return None if row is None else codec.run_from_json(*row)

    async def run_steps(self, run_id: str) -> tuple[list[StepRecord], list[AttemptRecord]]:
        snapshot = await self._load(run_id)
        return codec.steps_and_attempts(snapshot[1], snapshot[2])

    async def load_run(self, run_id: str) -> RunSnapshot | None:
        run, steps, attempts = await self._load(run_id)
        if run is None:
            return None
        return RunSnapshot(codec.run_from_json(*run), *codec.steps_and_attempts(steps, attempts))

    async def _load(
        self, run_id: str
    ) -> tuple[tuple[int, str, str | None, str | None] | None, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        run: tuple[int, str, str | None, str | None] | None = None
        steps: list[tuple[Any, ...]] = []
        attempts: list[tuple[Any, ...]] = []
        for part, key, version, data, extra, input_json, output_json in await self._rows(
            _LOAD_RUN, {"run_id": run_id}
        ):
            if part == 0:
                run = (version, data, input_json, output_json)
            elif part == 1:
                steps.append((run_id, key, data, extra, input_json, output_json))
            else:
                attempts.append((key, run_id, extra, data))
        return run, steps, attempts

    async def get_attempt(self, attempt_id: str) -> AttemptRecord | None:
        row = await self._one(_ATTEMPT_SELECT + " WHERE attempt_id = %s", (attempt_id,))
        return None if row is None else codec.attempt_from_row(*row)

    async def find_run(self, workflow: str, caller_team: str, idempotency_key: str) -> RunRecord | None:
        row = await self._one(
            _RUN_SELECT + " WHERE workflow = %s AND caller_team = %s AND idempotency_key = %s"
            " AND idempotency_key <> ''",
            (workflow, caller_team, idempotency_key),
        )
        return None if row is None else codec.run_from_json(*row)

    async def list_runs(self, query: RunFilter) -> list[RunRecord]:
        sql = _RUN_SELECT + " WHERE true"
        args: list[Any] = []
        if query.workflow:
            sql += " AND workflow = %s"
            args.append(query.workflow)
        if query.status:
            sql += " AND status = %s"
            args.append(query.status)
        for team in (query.team, query.visible_to):
            if team:
                sql += " AND involved @> %s"
                args.append([team])
        if query.created_after_ms:
            sql += " AND created_ms >= %s"
            args.append(query.created_after_ms)
        if query.created_before_ms:
            sql += " AND created_ms < %s"
            args.append(query.created_before_ms)
        if query.query:
            # ILIKE: SQLite's LIKE ignores the case of ASCII letters, and so does this.
            sql += " AND (run_id ILIKE %s OR idempotency_key ILIKE %s)"
            args += [f"%{query.query}%", f"%{query.query}%"]
        sql += " ORDER BY created_ms DESC, run_id LIMIT %s OFFSET %s"
        args += [query.limit, query.offset]
        return [codec.run_from_json(*row) for row in await self._rows(sql, args)]

    async def answer_request(self, scope: str, request_id: str, answer: dict[str, Any]) -> Any:
        row = (scope, request_id, codec.dumps(answer), int(time.time() * 1000))

        async def write(conn: _Conn) -> Any:
            inserted = await conn.execute(_MARK_INSERT, row)
            if await inserted.fetchone() is not None:
                return answer
            cursor = await conn.execute(
                "SELECT answer_json FROM requests WHERE scope = %s AND request_id = %s FOR UPDATE", row[:2]
            )
            found = await cursor.fetchone()
            stored = json.loads(found[0]) if found is not None else None
            if isinstance(stored, dict) and str(stored.get("by", "")) != str(answer.get("by", "")):
                return stored  # another call's: kept
            await conn.execute(_REQUEST_UPSERT, row)
            return answer

        written = await self._write(write)
        # None: the COMMIT's answer was lost, and it did commit: what it kept is read back.
        return written if written is not None else await self.get_request(scope, request_id)

    async def get_request(self, scope: str, request_id: str) -> Any | None:
        row = await self._one(
            "SELECT answer_json FROM requests WHERE scope = %s AND request_id = %s", (scope, request_id)
        )
        return None if row is None else json.loads(row[0])

    # ---------- timers ----------

    # ---------- schedules ----------

    async def sync_schedules(self, workflow: str, schedules: list[ScheduleRecord]) -> None:
        async def write(conn: _Conn) -> None:
            for record in schedules:
                await conn.execute(
                    _insert("schedules", codec.SCHEDULE_COLUMNS)
                    + " ON CONFLICT (workflow, schedule_id) DO UPDATE SET spec_json = excluded.spec_json,"
                    " next_due_ms = excluded.next_due_ms, state_json = excluded.state_json, claimed_until_ms = 0"
                    " WHERE schedules.spec_json != excluded.spec_json",
                    codec.schedule_to_row(record),
                )
            await conn.execute(
                "DELETE FROM schedules WHERE workflow = %s AND NOT (schedule_id = ANY(%s))",
                (workflow, [r.schedule_id for r in schedules]),
            )

        await self._write(write)

    async def list_schedules(self, workflow: str = "") -> list[ScheduleRecord]:
        sql = (
            "SELECT * FROM schedules"
            + (" WHERE workflow = %s" if workflow else "")
            + " ORDER BY workflow, schedule_id"
        )
        rows = await self._dicts(sql, (workflow,) if workflow else None)
        return [codec.schedule_from_row(r) for r in rows]

    async def claim_schedules(self, now_ms: int, limit: int, claim_ms: int) -> list[ScheduleRecord]:
        if limit <= 0:
            return []

        async def write(conn: _Conn) -> list[ScheduleRecord]:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                "WITH due AS ("
                " SELECT workflow, schedule_id FROM schedules"
                " WHERE next_due_ms <= %(now)s AND claimed_until_ms <= %(now)s AND NOT paused"
                " ORDER BY next_due_ms LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
                " UPDATE schedules SET claimed_until_ms = %(until)s FROM due"
                " WHERE schedules.workflow = due.workflow AND schedules.schedule_id = due.schedule_id"
                " RETURNING schedules.*",
                {"now": now_ms, "limit": limit, "until": now_ms + claim_ms},
            )
            rows = await cursor.fetchall()
            return sorted(
                (codec.schedule_from_row(r) for r in rows), key=lambda r: (r.next_due_ms, r.workflow)
            )

        # A claim whose answer was lost claims nothing: the claim runs out and the schedule fires then.
        return await self._write(write, committed=[])

    async def finish_schedule(self, record: ScheduleRecord, claimed_until_ms: int) -> bool:
        changed = await self._execute(
            "UPDATE schedules SET next_due_ms = %s, state_json = %s, claimed_until_ms = 0"
            " WHERE workflow = %s AND schedule_id = %s AND claimed_until_ms = %s AND spec_json = %s",
            (
                record.next_due_ms,
                codec.schedule_state_json(record),
                record.workflow,
                record.schedule_id,
                claimed_until_ms,
                codec.dumps(record.spec),
            ),
        )
        return changed > 0

    async def set_schedule_paused(
        self, workflow: str, schedule_id: str, paused: bool
    ) -> ScheduleRecord | None:
        rows = await self._dicts(
            "UPDATE schedules SET paused = %s WHERE workflow = %s AND schedule_id = %s RETURNING *",
            (paused, workflow, schedule_id),
        )
        return codec.schedule_from_row(rows[0]) if rows else None

    async def claim_timers(self, now_ms: int, limit: int, claim_ms: int) -> list[TimerRecord]:
        if limit <= 0:
            return []
        rows = await self._rows(_CLAIM_TIMERS, {"now": now_ms, "limit": limit, "until": now_ms + claim_ms})
        return sorted((codec.timer_from_row(r) for r in rows), key=codec.timer_order)

    async def next_timer_due(self) -> int | None:
        row = await self._one(_NEXT_TIMER_DUE)
        candidates = [int(value) for value in (row or ()) if value is not None]
        return min(candidates) if candidates else None

    async def extend_lease(self, attempt_id: str, due_ms: int) -> bool:
        moved = await self._execute(
            "UPDATE timers SET due_ms = %s, claimed_until_ms = 0 WHERE kind = %s AND key = %s",
            (due_ms, TIMER_LEASE, attempt_id),
        )
        return moved > 0

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
        rows = await self._rows(
            _OFFERS,
            {
                "contracts": [contract for contract, _ in unique],
                "majors": [major for _, major in unique],
                "limit": limit,
                "held": sorted(held_teams),
                "passing": sorted(passing),
            },
        )
        return [codec.offer_from_row(r) for r in rows]

    async def inflight_of_contracts(self) -> dict[str, int]:
        rows = await self._rows("SELECT contract, count(*) FROM inflight GROUP BY contract")
        return {str(name): int(n) for name, n in rows}

    async def inflight_counts(self) -> dict[str, int]:
        rows = await self._rows("SELECT caller_team, count(*) FROM inflight GROUP BY caller_team")
        return {str(team): int(n) for team, n in rows}

    async def take_start_token(self, team: str, rate: float, burst: float, now_ms: int) -> int:
        async def write(conn: _Conn) -> int:
            taking = await conn.execute(
                _START_TAKE, {"team": team, "rate": float(rate), "burst": float(burst), "now": now_ms}
            )
            row = await taking.fetchone()
            assert row is not None
            return 0 if row[0] else wait_for_token(float(row[1]), rate)

        # A take whose COMMIT's answer was lost, and that did commit, took a token.
        return await self._write(write, committed=0)

    async def event_backlog(self) -> list[tuple[str, int, int]]:
        rows = await self._rows(
            "SELECT contract, count(*), min(published_ms) FROM events WHERE delivered_ms = 0"
            " GROUP BY contract ORDER BY contract"
        )
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    async def queue_stats(self) -> list[tuple[str, int, int, int]]:
        rows = await self._rows(
            "SELECT contract, major, count(*), min(offered_ms) FROM offers"
            " GROUP BY contract, major ORDER BY contract, major"
        )
        return [(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows]

    # ---------- audit and events ----------

    async def add_audit(self, audit: AuditRecord) -> None:
        async def write(conn: _Conn) -> None:  # a transaction of its own: never two entries
            await _write_audit(conn, audit)

        await self._write(write)

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
        where, args = codec.audit_filter(team, since_ms, before_id, "%s", until_ms=until_ms, action=action)
        sql = f"SELECT * FROM audit{where} ORDER BY id{' DESC' if newest_first else ''} LIMIT %s OFFSET %s"
        args += [limit, offset]
        return [codec.audit_from_row(r) for r in await self._dicts(sql, args)]

    async def list_overrides(self, team: str = "", since_ms: int = 0, limit: int = 1000) -> list[AuditRecord]:
        where, args = codec.audit_filter(team, since_ms, 0, "%s")
        where = (where + " AND" if where else " WHERE") + " action IN (%s, %s)"
        sql = f"SELECT * FROM audit{where} ORDER BY id LIMIT %s"
        args += [*OVERRIDE_ACTIONS, limit]
        return [codec.audit_from_row(r) for r in await self._dicts(sql, args)]

    async def put_policy(self, policy: PolicyRecord, audit: AuditRecord) -> None:
        async def write(conn: _Conn) -> None:
            await _mark_requests(conn, (audit,))  # first: a repeat of the request changes nothing
            await conn.execute(
                "INSERT INTO policy_files (scope, source_text, source_name, applied_ms, applied_by)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scope) DO UPDATE SET"
                " source_text = excluded.source_text, source_name = excluded.source_name,"
                " applied_ms = excluded.applied_ms, applied_by = excluded.applied_by",
                (policy.scope, policy.source_text, policy.source_name, policy.applied_ms, policy.applied_by),
            )
            await conn.execute(_AUDIT_INSERT, codec.audit_to_row(audit))

        await self._write(write)

    async def list_policies(self) -> list[PolicyRecord]:
        sql = (
            "SELECT scope, source_text, source_name, applied_ms, applied_by FROM policy_files ORDER BY scope"
        )
        return [
            PolicyRecord(
                r["scope"], r["source_text"], r["source_name"], int(r["applied_ms"]), r["applied_by"]
            )
            for r in await self._dicts(sql, [])
        ]

    async def list_events(
        self, contract: str = "", offset: int = 0, limit: int = 100, *, team: str = ""
    ) -> list[EventRecord]:
        where, args = codec.event_filter(contract, team, "%s")
        sql = f"SELECT * FROM events{where} ORDER BY published_ms DESC, event_id LIMIT %s OFFSET %s"
        args += [limit, offset]
        return [codec.event_from_row(r) for r in await self._dicts(sql, args)]

    async def get_event(self, event_id: str) -> EventRecord | None:
        rows = await self._dicts("SELECT * FROM events WHERE event_id = %s", (event_id,))
        return codec.event_from_row(rows[0]) if rows else None

    async def undelivered_events(self, published_before_ms: int, limit: int) -> list[EventRecord]:
        sql = (
            "SELECT * FROM events WHERE delivered_ms = 0 AND published_ms < %s"
            " ORDER BY published_ms, event_id LIMIT %s"
        )
        return [codec.event_from_row(r) for r in await self._dicts(sql, (published_before_ms, limit))]

    async def mark_event_delivered(self, event_id: str, at_ms: int) -> None:
        # May run twice after a lost connection: the second finds it set and changes nothing.
        await self._execute(
            "UPDATE events SET delivered_ms = %s WHERE event_id = %s AND delivered_ms = 0", (at_ms, event_id)
        )

    async def record_event_handled(self, event_id: str, triggered_runs: list[str], at_ms: int) -> None:
        # May run twice after a lost connection: it writes the same runs, and keeps the first times.
        await self._execute(
            "UPDATE events SET triggered_json = %s,"
            " handled_ms = CASE WHEN handled_ms = 0 THEN %s ELSE handled_ms END,"
            " delivered_ms = CASE WHEN delivered_ms = 0 THEN %s ELSE delivered_ms END"
            " WHERE event_id = %s",
            (codec.dumps(list(triggered_runs)), at_ms, at_ms, event_id),
        )

    # ---------- spans ----------

    async def insert_spans(self, spans: list[SpanRecord]) -> None:
        if not spans:
            return
        rows = sorted(await codec.span_rows(spans), key=lambda r: r[:2])

        async def write(conn: _Conn) -> None:
            await conn.cursor().executemany(_SPAN_UPSERT, rows)

        await self._write(write)

    async def spans_for_trace(self, trace_id: str) -> list[SpanRecord]:
        rows = await self._dicts("SELECT * FROM spans WHERE trace_id = %s ORDER BY start_ns", (trace_id,))
        return [codec.span_from_row(r) for r in rows]

    async def prune_spans(self, before_ns: int, limit: int = 0) -> int:
        if limit <= 0:
            return await self._execute("DELETE FROM spans WHERE end_ns < %s", (before_ns,))
        return await self._execute(
            "DELETE FROM spans WHERE (trace_id, span_id) IN (SELECT trace_id, span_id FROM spans"
            " WHERE end_ns < %s ORDER BY end_ns LIMIT %s FOR UPDATE SKIP LOCKED)",
            (before_ns, limit),
        )

    # ---------- retention ----------

    async def purge_runs(self, finished_before_ms: int, limit: int) -> int:
        # The runs' rows are locked first (SKIP LOCKED: another coordinator purging at the same
        # time takes others), then what belongs to them goes, then they do; tried again after a
        # lost connection, as a delete may run twice.
        async def write(conn: _Conn) -> int:
            cursor = await conn.execute(
                "SELECT run_id, data_json::json ->> 'trace_id', workflow, workflow_version, team, status,"
                " created_ms, finished_ms, data_json::json ->> 'pinned' FROM runs"
                f" WHERE {codec.RUN_TERMINAL_SQL} AND finished_ms < %s"
                " ORDER BY finished_ms LIMIT %s FOR UPDATE SKIP LOCKED",
                (finished_before_ms, limit),
            )
            selected = await cursor.fetchall()
            runs = [(str(row[0]), str(row[1])) for row in selected]
            if runs:
                ids = [run_id for run_id, _ in runs]
                # What the autonomy report needs of them outlives them, as daily aggregates
                # (docs/governance.md, "When retention deletes runs"). Rows of the same keys are
                # added to in key order, so two coordinators purging at once never deadlock.
                finished = [run_days.Finished.of(*row[2:]) for row in selected]
                cursor = await conn.execute(_SEGMENT_CHANGES, run_days.changes_window(finished))
                changes = run_days.Changes(await cursor.fetchall())
                cursor = await conn.execute(run_days.failures_sql("%s"), run_days.failures_window(finished))
                failures = await cursor.fetchall()
                folded = sorted(run_days.fold(finished, changes, failures), key=lambda r: r.values()[1:7])
                await conn.cursor().executemany(_RUN_DAY_UPSERT, [row.values() for row in folded])
                # A run's start in the audit log goes with the run (the admin's stays).
                await conn.execute(
                    "DELETE FROM audit WHERE action IN ('run.start', 'run.retry') AND NOT platform_intervention"
                    " AND (at_ms, object) IN (SELECT * FROM unnest(%s::bigint[], %s::text[]))",
                    ([int(row[6]) for row in selected], ids),
                )
                # steps and attempts by their run_id index; timers and offers hold only what is
                # live (a finished run has none left), one pass each.
                for table in ("steps", "attempts", "timers", "offers"):
                    await conn.execute(f"DELETE FROM {table} WHERE run_id = ANY(%s)", (ids,))
                # Spans by the run's trace id (the primary key's first column).
                await conn.execute(
                    "DELETE FROM spans WHERE (trace_id, run_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
                    ([t for _, t in runs], ids),
                )
                await conn.execute("DELETE FROM runs WHERE run_id = ANY(%s)", (ids,))
            return len(runs)

        return await self._write(write, committed=0) if limit > 0 else 0

    async def _purge(self, table: str, key: str, where: str, before: int, limit: int) -> int:
        return await self._execute(
            f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {where} < %s"
            f" ORDER BY {where} LIMIT %s FOR UPDATE SKIP LOCKED)",
            (before, limit),
        )

    async def purge_events(self, published_before_ms: int, limit: int) -> int:
        return await self._execute(
            "DELETE FROM events WHERE event_id IN (SELECT event_id FROM events WHERE published_ms < %s"
            " AND handled_ms > 0 ORDER BY published_ms LIMIT %s FOR UPDATE SKIP LOCKED)",
            (published_before_ms, limit),
        )

    async def purge_requests(self, created_before_ms: int, limit: int) -> int:
        return await self._execute(
            "DELETE FROM requests WHERE (scope, request_id) IN (SELECT scope, request_id FROM requests"
            " WHERE created_ms < %s ORDER BY created_ms LIMIT %s FOR UPDATE SKIP LOCKED)",
            (created_before_ms, limit),
        )

    async def purge_audit(self, before_ms: int, limit: int) -> int:
        return await self._purge("audit", "id", "at_ms", before_ms, limit)

    async def purge_run_days(self, finished_before_ms: int, limit: int) -> int:
        return await self._purge("run_days", "id", "max_finished_ms", finished_before_ms, limit)

    async def list_run_digests(
        self, created_after_ms: int, offset: int, limit: int, *, newest_first: bool = False
    ) -> list[RunRecord]:
        sql = run_days.representatives_sql("%s", "GREATEST", newest_first)
        rows = await self._dicts(sql, [created_after_ms, created_after_ms, created_after_ms, limit, offset])
        return [
            codec.digest_to_run(
                (r["run_id"], r["workflow"], r["workflow_version"], r["team"], r["status"], r["created_ms"],
                 r["finished_ms"], r["pinned_json"])
            )
            for r in rows
        ]  # fmt: skip

    async def reclaim_space(self, max_pages: int) -> int:
        """PostgreSQL's autovacuum makes deleted rows' space reusable by itself: nothing to do."""
        return 0


# A deleted run folded into its daily aggregate (coordinator/store/run_days.py).
_RUN_DAY_UPSERT = (
    f"INSERT INTO run_days ({', '.join(run_days.COLUMNS)}) VALUES ({', '.join('%s' for _ in run_days.COLUMNS)})"
    f" ON CONFLICT ({', '.join(run_days.KEY)}) DO UPDATE SET"
    " runs = run_days.runs + excluded.runs,"
    " min_created_ms = LEAST(run_days.min_created_ms, excluded.min_created_ms),"
    " max_created_ms = GREATEST(run_days.max_created_ms, excluded.max_created_ms),"
    " min_finished_ms = LEAST(run_days.min_finished_ms, excluded.min_finished_ms),"
    " max_finished_ms = GREATEST(run_days.max_finished_ms, excluded.max_finished_ms)"
)
_SEGMENT_CHANGES = (
    "SELECT at_ms, action, object, details_json FROM audit"
    f" WHERE action IN ({', '.join(repr(a) for a in run_days.SEGMENT_ACTIONS)}) AND at_ms BETWEEN %s AND %s"
)


async def _still_open(conn: _Conn) -> None:
    """The pool's check of a connection it is about to hand out, without a round trip: an idle
    connection has nothing to read unless the server wrote to it, and the server writes to an
    idle connection only as it ends it (a restart, an administrator's pg_terminate_backend).
    Such a one is discarded and another taken, so a coordinator whose database restarted works
    again at once instead of failing once per pooled connection. (A server gone without a word,
    behind a broken network, is found out by the call that uses the connection.)"""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        await conn.close()  # closed, so the pool drops it rather than keep it for another try
        raise psycopg.OperationalError("the server has closed this connection")


async def _scalar(conn: _Conn, sql: str, args: Any = None) -> Any:
    row = await (await conn.execute(sql, args)).fetchone()
    return None if row is None else row[0]


# The tables a transition writes besides runs, in the order ``Changes`` documents; a
# ``_Writes``'s ``tables`` holds their rows in this order, each table's sorted by its key.
_TABLE_STATEMENTS = (
    _POLICY_INSERT,
    _STEP_UPSERT,
    _ATTEMPT_UPSERT,
    _AUDIT_INSERT,
    _EVENT_UPSERT,
    _REQUEST_UPSERT,
    _TIMER_CLEAR,
    _TIMER_SET,
    _OFFER_REMOVE,
    _OFFER_ADD,
    _INFLIGHT_REMOVE,
    _INFLIGHT_ADD,
)
# The tables whose rows are sorted by key (all but audit, which is only ever inserted); the key
# is a row's first two values (``_row_key``), unique within a transition and so within a batch,
# whose transitions are of distinct runs.
_SORTED_TABLES = frozenset(range(len(_TABLE_STATEMENTS))) - {_TABLE_STATEMENTS.index(_AUDIT_INSERT)}
_POLICIES = _TABLE_STATEMENTS.index(_POLICY_INSERT)


def _row_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return row[:2]


@dataclass
class _Writes:
    """What one transition writes (``PostgresStore.apply``), encoded, for ``_write_all``."""

    run_ids: list[str]  # sorted
    rows: dict[str, tuple[Any, ...]]  # run id -> the run's row, for the runs it rewrites
    expected: dict[str, int]  # run id -> the version it was read at
    fired: list[tuple[str, str, int]]
    marked: list[AuditRecord]  # audit entries applying a request
    tables: tuple[Sequence[Any], ...]  # rows for each of ``_TABLE_STATEMENTS``
    hint: str | None  # the NOTIFY payload (``PostgresStore._hint_payload``)


async def _write_all(
    conn: _Conn, writes: Sequence[_Writes], channel: str, caps: Sequence[tuple[str, str, int]] = ()
) -> None:
    """The statements of ``writes`` (one transition, or a group commit's; their runs in the
    order given) in the current transaction: the runs one by one (each its own version check),
    then each table's rows of all of them in one statement, in key order. Per statement psycopg
    spends ~50-100 us of Python, so a group of N transitions costs N + 12 statements, not ~8 N.
    A refused check raises; the caller's transaction is then rolled back. ``channel``: where the
    hints go (their payloads are the writes'). ``caps``: the limits a transition alone checks
    (see ``Changes.inflight_caps``)."""
    checks: list[Callable[[], Awaitable[None]]] = []
    if caps:
        # Limits are counted under a lock per key, taken (in key order) before this transaction
        # adds its attempts and held to its end: a transaction counting the same key waits for it
        # and, its count being a later statement, sees its rows.
        for key in sorted({f"{kind}:{key}" for kind, key, _ in caps}):
            await conn.execute(_CAP_LOCK_SQL, (key,))
    for one in writes:
        if one.marked:
            await _mark_requests(conn, one.marked)
    async with conn.pipeline():
        for one in writes:
            for run_id in one.run_ids:
                checks.append(await _write_run(conn, run_id, one.rows.get(run_id), one.expected.get(run_id)))
        for one in writes:
            for kind, key, due_ms in one.fired:
                checks.append(_fired(await conn.execute(_TIMER_FIRE, (kind, key, due_ms)), kind, key, due_ms))
        many = conn.cursor()
        for index, statement in enumerate(_TABLE_STATEMENTS):
            if len(writes) == 1:
                params = list(writes[0].tables[index])
            else:
                params = [row for one in writes for row in one.tables[index]]
                if index == _POLICIES:  # the same new policy in two transitions: written once
                    params = sorted(dict(params).items())
                elif index in _SORTED_TABLES:
                    params.sort(key=_row_key)
            if params:
                await many.executemany(statement, params)
        for kind, key, limit in caps:
            checks.append(_within_cap(await conn.execute(_cap_count(kind), (key,)), kind, key, limit))
        hints = [one.hint for one in writes if one.hint is not None]
        if len(hints) == 1:  # delivered only if the transaction commits
            await conn.execute("SELECT pg_notify(%s, %s)", (channel, hints[0]))
        elif hints:
            # As one JSON text: psycopg's text[] dumper escapes each payload with a regex.
            await conn.execute(
                "SELECT pg_notify(%s, payload) FROM json_array_elements_text(%s::json) AS payload",
                (channel, json.dumps(hints)),
            )
    # Every result is in: a refused check raises, and the transaction is rolled back.
    for check in checks:
        await check()


async def _write_run(
    conn: _Conn, run_id: str, row: tuple[Any, ...] | None, expected: int | None
) -> Callable[[], Awaitable[None]]:
    """Queue the write of one run (in a pipeline) and return the check of its result: an update
    (or, without a record, a version check) must have matched the version read; an insert must
    not have met a run with its id or idempotency key (see ``Changes``)."""
    if expected is not None:
        if row is None:
            # A transition that changed only the run's steps, attempts, timers or offers still
            # moves its version on, so two transitions from one read never both succeed.
            cursor = await conn.execute(_RUN_BUMP, (expected + 1, run_id, expected))
        else:
            changed = tuple(row[i] for i in codec.RUN_MUTABLE_AT)
            cursor = await conn.execute(_RUN_UPDATE, (*changed, expected + 1, run_id, expected))

        async def swapped() -> None:
            if cursor.rowcount == 0:
                stored = await _scalar(conn, "SELECT version FROM runs WHERE run_id = %s", (run_id,))
                raise VersionConflict.stale(run_id, expected, stored)

        return swapped
    assert row is not None
    inserted = await conn.execute(_RUN_INSERT, row)

    async def created() -> None:
        if await inserted.fetchone() is None:
            await _explain_refused_insert(conn, run_id, row)

    return created


async def _explain_refused_insert(conn: _Conn, run_id: str, row: tuple[Any, ...]) -> None:
    """A new run was not inserted (ON CONFLICT DO NOTHING): say which key was taken. Each check
    is a new statement, so it sees the run that took the key even if it committed meanwhile."""
    if await _scalar(conn, "SELECT 1 FROM runs WHERE run_id = %s", (run_id,)):
        raise VersionConflict.run_exists(run_id)
    columns = codec.RUN_COLUMNS
    workflow, caller, key = (row[columns.index(n)] for n in ("workflow", "caller_team", "idempotency_key"))
    taken = await _scalar(
        conn,
        "SELECT run_id FROM runs WHERE workflow = %s AND caller_team = %s AND idempotency_key = %s"
        " AND idempotency_key <> ''",
        (workflow, caller, key),
    )
    if taken is not None:
        raise IdempotencyConflict(taken)
    raise VersionConflict(f"run {run_id} was not written: a run with its id or idempotency key exists")


#: The most transitions one group commit writes (``PostgresStore._grouped``).
_BATCH_MAX = 64
#: A batch taking longer than this is logged (it holds up every transition of the coordinator).
_BATCH_SLOW_S = 10.0


async def _outcome(write: Awaitable[Any]) -> BaseException | None:
    """None if ``write`` went through, else what it raised (a cancellation goes on up)."""
    try:
        await write
    except Exception as exc:
        return exc
    return None


def _fired(cursor: AsyncCursor[TupleRow], kind: str, key: str, due_ms: int) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        if cursor.rowcount == 0:
            raise VersionConflict.timer_moved(kind, key, due_ms)

    return check


def _within_cap(
    cursor: AsyncCursor[TupleRow], kind: str, key: str, limit: int
) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        row = await cursor.fetchone()
        if row is not None and int(row[0]) > limit:
            raise LimitReached(kind, key, limit)

    return check


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
