"""PostgresStore while PostgreSQL goes away and comes back (a real TCP proxy between the store and
the real server, cut and restored): operations wait and go on, give up with UNAVAILABLE after
their budget, the outage is logged once each way, and a transaction whose COMMIT answer was lost
is neither lost nor applied twice."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from contracts.errors import UnreachableError
from coordinator.engine.spans import SpanBuffer
from coordinator.store.pg_retry import lost_connection
from coordinator.store.postgres import PostgresStore
from coordinator.store.records import Changes, SpanRecord
from coordinator.telemetry.sink import TelemetrySink
from tests.coordinator.store_conformance import run_record
from tests.support.postgres import TestDatabase
from tests.support.tcp_proxy import TcpProxy
from tests.support.wait import wait_until

pytestmark = pytest.mark.postgres

LOST = "is unreachable"
BACK = "is reachable again"


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    proxy = TcpProxy.start("127.0.0.1", 5432)
    yield proxy
    proxy.close()


def _via(url: str, proxy: TcpProxy) -> str:
    """``url`` (postgresql://postgres@127.0.0.1:5432/...) through the proxy."""
    assert "@127.0.0.1:5432/" in url
    return url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")


@pytest.fixture
async def store(pg_database: TestDatabase, proxy: TcpProxy) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(_via(pg_database.schema_url(), proxy), pool_size=3)
    await store.open()
    yield store
    await store.close()


def _messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def _runs(url: str, run_id: str) -> list[tuple[int]]:
    with psycopg.connect(url) as conn:
        return [(int(v),) for (v,) in conn.execute("SELECT version FROM runs WHERE run_id = %s", (run_id,))]


def test_what_counts_as_a_lost_connection() -> None:
    assert lost_connection(psycopg.OperationalError("consuming input failed: server closed the connection"))
    assert lost_connection(PoolTimeout("couldn't get a connection after 5.00 sec"))
    assert lost_connection(
        psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    )
    assert lost_connection(psycopg.errors.CannotConnectNow("the database system is starting up"))
    # Answers about the statement: never tried again as if the server were away.
    assert not lost_connection(psycopg.errors.SerializationFailure("could not serialize access"))
    assert not lost_connection(psycopg.errors.DeadlockDetected("deadlock detected"))
    assert not lost_connection(psycopg.errors.UniqueViolation("duplicate key value"))
    assert not lost_connection(psycopg.errors.QueryCanceled("canceling statement due to statement timeout"))


async def test_a_new_run_whose_commit_answer_was_lost_is_written_once(
    store: PostgresStore, proxy: TcpProxy, pg_database: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """The server committed, the answer never came back: the store finds the commit done rather
    than insert the run again (which would meet its own row)."""
    caplog.set_level(logging.INFO, logger="coordinator.store")
    proxy.lose_answer_to(b"COMMIT")
    await store.apply(Changes(runs=[run_record("r1")]))
    assert proxy.triggered == 1
    assert _messages(caplog, "did commit"), caplog.text
    stored = await store.get_run("r1")
    assert stored is not None and stored.version == 1


async def test_a_transition_whose_commit_answer_was_lost_is_applied_once(
    store: PostgresStore, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordinator.store")
    await store.apply(Changes(runs=[run_record("r1")]))
    proxy.lose_answer_to(b"COMMIT")
    await store.apply(Changes(runs=[run_record("r1", status="succeeded")], expect_versions={"r1": 1}))
    assert proxy.triggered == 1
    assert _messages(caplog, "did commit"), caplog.text
    stored = await store.get_run("r1")
    assert stored is not None and stored.version == 2 and stored.status == "succeeded"


async def test_a_commit_that_never_reached_the_server_is_rolled_back_and_run_again(
    store: PostgresStore, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    """The COMMIT was lost on the way, and the server still holds the transaction open (it has
    not noticed the client is gone, as behind a broken network): the store ends that session,
    which rolls it back, and applies the transition anew."""
    caplog.set_level(logging.INFO, logger="coordinator.store")
    proxy.hold_back(b"COMMIT")
    await store.apply(Changes(runs=[run_record("r1")]))
    assert proxy.triggered == 1
    assert _messages(caplog, "was rolled back, and runs again"), caplog.text
    stored = await store.get_run("r1")
    assert stored is not None and stored.version == 1


async def test_a_transaction_cut_before_its_commit_runs_again(store: PostgresStore, proxy: TcpProxy) -> None:
    proxy.lose_answer_to(b"txid_current")  # the statements went out; their answers did not come back
    await store.apply(Changes(runs=[run_record("r1")]))
    assert proxy.triggered == 1
    stored = await store.get_run("r1")
    assert stored is not None and stored.version == 1


async def test_operations_wait_while_postgresql_is_away_and_go_on_when_it_is_back(
    store: PostgresStore, proxy: TcpProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordinator.store")
    changes: list[bool] = []
    store.subscribe_reachability(changes.append)
    await store.apply(Changes(runs=[run_record("r1")]))

    proxy.cut()
    read = asyncio.ensure_future(store.get_run("r1"))
    write = asyncio.ensure_future(store.apply(Changes(runs=[run_record("r2")])))
    await wait_until(lambda: changes == [False], "the store finds PostgreSQL gone")
    assert not read.done() and not write.done()  # still trying, within their budget

    proxy.restore()
    assert (await read) is not None
    await write
    await wait_until(lambda: changes == [False, True], "the store finds PostgreSQL back")
    assert await store.get_run("r2") is not None
    # One line when it went, one when it came back, however many operations retried meanwhile.
    assert len(_messages(caplog, LOST)) == 1, caplog.text
    assert len(_messages(caplog, BACK)) == 1, caplog.text
    assert f"127.0.0.1:{proxy.port}" in _messages(caplog, LOST)[0]


async def test_an_operation_gives_up_after_its_budget_naming_the_server(
    pg_database: TestDatabase, proxy: TcpProxy
) -> None:
    store = PostgresStore(_via(pg_database.schema_url(), proxy), pool_size=2, retry_budget_s=1.0)
    await store.open()
    try:
        proxy.cut()
        with pytest.raises(UnreachableError) as refused:
            await store.get_run("r1")
        message = str(refused.value)
        assert f"PostgreSQL at 127.0.0.1:{proxy.port}/" in message and "is unreachable" in message
        assert "Connection refused" in message
        proxy.restore()

        async def answers() -> bool:
            try:
                return await store.get_run("r1") is None
            except UnreachableError:  # its short budget may run out before the pool has reconnected
                return False

        await wait_until(answers, "the store answers again, without a restart")
    finally:
        await store.close()


async def test_a_constraint_error_is_not_retried(store: PostgresStore, proxy: TcpProxy) -> None:
    """A refusal by the server is its answer: raised at once, on the first try."""
    await store.set_setting("k", "v")
    accepted = proxy.accepted
    with pytest.raises(psycopg.errors.NotNullViolation):
        await store.set_setting("k2", None)  # type: ignore[arg-type]
    assert proxy.accepted == accepted  # no new connection: it did not try again


class _Counting:
    """The real span sink, counting the writes refused because PostgreSQL was away."""

    def __init__(self, sink: TelemetrySink) -> None:
        self.sink = sink
        self.refused = 0

    async def emit(self, records: list[SpanRecord]) -> None:
        try:
            await self.sink.emit(records)
        except UnreachableError:
            self.refused += 1
            raise


async def test_spans_made_while_postgresql_is_away_are_written_once_it_is_back(
    pg_database: TestDatabase, proxy: TcpProxy
) -> None:
    store = PostgresStore(_via(pg_database.schema_url(), proxy), pool_size=2, retry_budget_s=0.2)
    await store.open()
    sink = _Counting(TelemetrySink(store))
    buffer = SpanBuffer(sink, interval_s=0.01)
    buffer.start()
    try:
        proxy.cut()
        span = SpanRecord(
            trace_id="c" * 32, span_id="d" * 16, parent_span_id="", name="run", start_ns=1, end_ns=2
        )
        buffer.add([span])
        await wait_until(lambda: sink.refused >= 2, "the buffer tries to write the span, and again")
        proxy.restore()
        await wait_until(lambda: _stored(store, span.trace_id), "the span is written once PostgreSQL is back")
    finally:
        await buffer.stop()
        await store.close()


async def _stored(store: PostgresStore, trace_id: str) -> bool:
    try:
        return bool(await store.spans_for_trace(trace_id))
    except UnreachableError:
        return False
