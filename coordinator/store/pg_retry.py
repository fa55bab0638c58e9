"""PostgreSQL lost while the coordinator runs: which errors mean that, and what the store does.

An operation that fails because the connection was lost or the server cannot be reached (a
restart, a failover, a broken network; ``lost_connection``) is tried again with exponential
backoff (50 ms doubling to 2 s, with jitter) for up to ``RETRY_BUDGET_S``; then it fails with
``UnreachableError`` (gRPC UNAVAILABLE) naming the server. Errors PostgreSQL reports about the
statement itself (a constraint, a serialization failure, a deadlock) are not retried here: they
are answers, and the store handles them where it makes them.

``Reachability`` keeps whether the server is reachable: the first failure starts a probe (a new
connection, ``SELECT 1``, retried with the same backoff) which decides. It logs one line when
the server is found gone and one when it is back (never one per retry), and tells its listeners
(the coordinator's gRPC health: NOT_SERVING meanwhile). See docs/production.md, "What a down
database does".

A transaction whose COMMIT was sent but whose answer was lost may have committed or not. The
store does not run it again blindly (a new run's insert would meet its own row): each write
transaction learns its transaction id and backend pid before it commits (``Stamp``), and after a
lost answer ``transaction_outcome`` asks the server what became of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import PoolTimeout

from contracts.errors import UnreachableError

logger = logging.getLogger(__name__)
T = TypeVar("T")

# How long one operation keeps trying while PostgreSQL cannot be reached, before it fails with
# UnreachableError (the caller, an agent or the CLI, then retries or moves to another coordinator);
# ``--store-retry`` sets it.
RETRY_BUDGET_S = 30.0
BACKOFF_FIRST_S = 0.05
BACKOFF_MAX_S = 2.0
# How long one try waits for a connection from the pool. A pool that has none (the server went
# away) grows again only when asked: a short wait, then a new try, asks again.
POOL_WAIT_S = 5.0

# SQLSTATEs that mean the session is gone or could not start: class 08 (connection exception),
# the server shutting down or starting up, a session ended by an administrator or a timeout, too
# many connections. Not class 40 (serialization failure, deadlock): the transaction was rolled
# back by the server, which answered; the store turns those into VersionConflict.
_LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57P05", "53300"})

_Conn = psycopg.AsyncConnection[TupleRow]


def lost_connection(exc: BaseException) -> bool:
    """True when ``exc`` means the server could not be reached or the session was lost (what
    trying again later may cure), not an error about the statement."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = exc.sqlstate
    # No SQLSTATE: libpq's own error (connection refused, server closed the connection, ...).
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _LOST_SQLSTATES


def reason(exc: BaseException) -> str:
    """libpq's first line without its preamble ("Connection refused", "server closed the
    connection unexpectedly")."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    first = lines[0] if lines else type(exc).__name__
    for preamble in ("connection failed:", "consuming input failed:", "sending query failed:"):
        if first.startswith(preamble):
            first = first[len(preamble) :].strip()
    if first.startswith("connection to server at ") and " failed: " in first:
        first = first.split(" failed: ", 1)[1]
    if isinstance(exc, PoolTimeout):
        first = "no connection could be made in time"
    return first


def _jitter(delay: float) -> float:
    return delay * random.uniform(0.8, 1.2)


class Reachability:
    """Whether the PostgreSQL at ``where`` answers, as operations and a probe find out."""

    def __init__(
        self,
        where: str,
        probe: Callable[[], Awaitable[None]],
        *,
        budget_s: float = RETRY_BUDGET_S,
        on_back: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``probe``: connect anew and run a trivial statement (raises what a lost connection
        raises); ``on_back``: run once the server answers again (the pool is told to connect)."""
        self.where = where
        self.budget_s = budget_s
        self._probe = probe
        self._on_back = on_back
        self._available = True
        self._lost_at = 0.0
        self._back = asyncio.Event()
        self._back.set()
        self._probing: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[bool], None]] = []
        self._last_reason = ""
        self._closed = False

    @property
    def available(self) -> bool:
        return self._available

    def subscribe(self, listener: Callable[[bool], None]) -> None:
        """``listener(available)`` is called (in the event loop) at each change."""
        self._listeners.append(listener)

    async def close(self) -> None:
        self._closed = True
        if self._probing is not None:
            self._probing.cancel()
            await asyncio.gather(self._probing, return_exceptions=True)
            self._probing = None

    async def retry(self, operation: Callable[[float], Awaitable[T]]) -> T:
        """``operation(pool_wait_s)`` until it does not fail for a lost connection, with backoff,
        for up to the budget; then ``UnreachableError``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget_s
        delay = BACKOFF_FIRST_S
        while True:
            remaining = deadline - loop.time()
            try:
                result = await operation(max(0.1, min(POOL_WAIT_S, remaining)))
            except Exception as exc:
                if not lost_connection(exc):
                    raise
                self.failed(exc)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self.unreachable(exc) from exc
                pause = min(_jitter(delay), remaining)
                if self._available:
                    await asyncio.sleep(pause)
                else:  # the probe found it gone: wait for the probe to find it back, or the pause
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._back.wait(), pause)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self.succeeded()
            return result

    def unreachable(self, exc: BaseException) -> UnreachableError:
        # While the probe finds it gone, its reason ("Connection refused") says more than the
        # pool's timeout.
        away = isinstance(exc, PoolTimeout) and not self._available and self._last_reason
        why = self._last_reason if away else reason(exc)
        return UnreachableError(
            f"PostgreSQL at {self.where} is unreachable ({why}); the coordinator keeps trying to"
            " reach it: try again, or another coordinator"
        )

    def failed(self, exc: BaseException) -> None:
        """An operation lost its connection: have the probe find out whether the server is gone."""
        if not isinstance(exc, PoolTimeout):  # the probe's reason says more than a timeout
            self._last_reason = reason(exc)
        if not self._closed and (self._probing is None or self._probing.done()):
            self._probing = asyncio.get_running_loop().create_task(self._probe_until_back(), name="pg-probe")

    def succeeded(self) -> None:
        """An operation worked: the server is there."""
        if not self._available:
            self._mark(True)

    async def _probe_until_back(self) -> None:
        delay = BACKOFF_FIRST_S
        first = True
        while True:
            try:
                await self._probe()
            except Exception as exc:
                # Lost, or it answers but refuses new sessions (a password changed, the database
                # dropped): unusable either way, and the line logged says why.
                self._last_reason = reason(exc)
                if self._available:
                    if not first:
                        return  # an operation found it there meanwhile (on a connection it had)
                    self._mark(False)
                first = False
                await asyncio.sleep(_jitter(delay))
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            if not self._available:
                self._mark(True)
            return

    def _mark(self, available: bool) -> None:
        self._available = available
        if available:
            logger.warning(
                "PostgreSQL at %s is reachable again after %.1fs; serving",
                self.where,
                time.monotonic() - self._lost_at,
            )
            self._back.set()
            if self._on_back is not None:
                reconnecting: asyncio.Future[None] = asyncio.ensure_future(self._on_back())
                reconnecting.add_done_callback(_log_failure)
        else:
            self._lost_at = time.monotonic()
            self._back.clear()
            logger.error(
                "PostgreSQL at %s is unreachable (%s); health is NOT_SERVING and calls that need it"
                " are retried for up to %.0fs, then answered UNAVAILABLE, until it is back",
                self.where,
                self._last_reason,
                self.budget_s,
            )
        for listener in list(self._listeners):
            try:
                listener(available)
            except Exception:
                logger.exception("a listener of PostgreSQL's reachability failed")


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("reconnecting the pool failed: %s", task.exception())


# ---------- the outcome of a transaction whose COMMIT answer was lost ----------


@dataclass(frozen=True)
class Stamp:
    """A transaction's id (``txid_current()``, 64 bits with its epoch) and its backend's pid."""

    xid: int
    pid: int


STAMP_SQL = "SELECT txid_current(), pg_backend_pid()"
_STATUS_SQL = "SELECT txid_status(%s)"
# End the session that still runs the transaction (its client is gone, but the server has not
# noticed yet, as behind a broken network): only while that very transaction runs in it.
_END_SESSION_SQL = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE pid = %s AND backend_xid = (%s::bigint %% 4294967296)::text::xid"
)


async def transaction_outcome(conn: _Conn, stamp: Stamp, budget_s: float) -> bool:
    """True when the transaction ``stamp`` committed, False when it was rolled back. While it
    still runs (its old session not ended yet), that session is ended, which decides it: a
    session that got its COMMIT commits before it ends, one that did not rolls back."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    delay = 0.01
    while True:
        row = await (await conn.execute(_STATUS_SQL, (stamp.xid,))).fetchone()
        status = row[0] if row else None
        if status == "committed":
            return True
        if status == "aborted":
            return False
        if status is None:  # too old to know (wrapped around): never for a transaction just made
            raise UnreachableError(
                f"the outcome of transaction {stamp.xid} on PostgreSQL is unknown; try again"
            )
        try:
            await conn.execute(_END_SESSION_SQL, (stamp.pid, stamp.xid))
        except psycopg.errors.InsufficientPrivilege:
            pass  # another role's session (not ours): it ends when the server notices
        if loop.time() + delay > deadline:
            raise UnreachableError(
                f"transaction {stamp.xid} is still running on PostgreSQL after its connection was"
                " lost; try again"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX_S)
