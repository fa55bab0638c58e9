"""PostgresStore beyond the conformance suite: migrations by one process while others wait, a
schema newer than the binary refused, an unreachable server, and races between coordinators
(stores on separate connection pools, as separate processes have)."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from contracts.errors import FailedPreconditionError, UnreachableError
from coordinator.registry.teams import ADMIN_TOKEN_SETTING, Teams
from coordinator.store.postgres import PostgresStore, SchemaTooNewError, _migrations
from coordinator.store.records import Changes, TokenRecord, VersionConflict
from coordinator.tokens import TokenAuthority, hash_token
from tests.coordinator.store_conformance import (
    all_timers,
    assert_payloads_moved_out,
    attempt_record,
    audit,
    offer,
    read_and_move_old_payloads,
    rows_before_payload_columns,
    run_record,
    step_record,
    timer,
)
from tests.support.postgres import TestDatabase

pytestmark = pytest.mark.postgres

APPLYING = "applying schema migration"


def _schema_versions(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return [
            (int(v), str(n)) for v, n in conn.execute("SELECT version, name FROM schema_version ORDER BY 1")
        ]


def _applied(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(APPLYING)]


async def test_stores_opening_an_empty_database_at_once_migrate_it_once(
    pg_database: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordinator.store.postgres")
    url = pg_database.schema_url()
    stores = [PostgresStore(url, pool_size=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        known = [(number, name) for number, name, _ in _migrations()]
        assert known and known[0] == (1, "0001_init.sql")
        assert _schema_versions(url) == known
        assert len(_applied(caplog)) == len(known)  # by one of them; the others found it done
        # Every one of them works on the one schema.
        await stores[0].apply(Changes(runs=[run_record("r1")]))
        assert all([await s.get_run("r1") is not None for s in stores])
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_opening_a_migrated_database_again_migrates_nothing(
    pg_database: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="coordinator.store.postgres")
    url = pg_database.schema_url()
    first = PostgresStore(url)
    await first.open()
    await first.apply(Changes(runs=[run_record("r1")]))
    await first.close()
    versions = _schema_versions(url)
    caplog.clear()

    again = PostgresStore(url)
    await again.open()
    try:
        assert _applied(caplog) == []
        assert _schema_versions(url) == versions
        assert await again.get_run("r1") is not None
    finally:
        await again.close()


async def test_a_schema_newer_than_the_binary_is_refused(pg_database: TestDatabase) -> None:
    url = pg_database.schema_url()
    store = PostgresStore(url)
    await store.open()
    await store.close()
    newest = _migrations()[-1][0]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version VALUES (%s, '9999_future.sql', 0)", (newest + 1,))

    with pytest.raises(SchemaTooNewError) as refused:
        await PostgresStore(url).open()
    assert isinstance(refused.value, FailedPreconditionError) and refused.value.exit_code == 1
    where = f"127.0.0.1:5432/{pg_database.name}"
    assert str(refused.value) == (
        f"the database at {where} has schema version {newest + 1}, newer than this coordinator knows"
        f" (up to {newest}): a newer Accord migrated it; upgrade this coordinator (every one that"
        " shares the database) to that version"
    )
    assert _schema_versions(url)[-1] == (newest + 1, "9999_future.sql")  # and nothing was changed


async def test_a_server_that_is_not_there_is_unreachable_naming_host_and_port() -> None:
    store = PostgresStore("postgresql://postgres:s3cret@127.0.0.1:1/x")
    with pytest.raises(UnreachableError) as unreachable:
        await store.open()
    assert unreachable.value.exit_code == 3
    message = str(unreachable.value)
    assert message.startswith("cannot connect to PostgreSQL at 127.0.0.1:1/x: "), message
    assert "refused" in message.lower()
    assert "s3cret" not in message and "\n" not in message


async def test_a_database_that_does_not_exist_is_unreachable_and_says_so(pg_database: TestDatabase) -> None:
    url = pg_database.url.rsplit("/", 1)[0] + "/accord_no_such_database"
    with pytest.raises(UnreachableError, match='database "accord_no_such_database" does not exist'):
        await PostgresStore(url).open()


async def test_one_run_version_is_won_by_one_transition_among_coordinators(pg_database: TestDatabase) -> None:
    """Transitions from one read of a run, on separate pools: one wins, every other is a
    VersionConflict that wrote nothing."""
    url = pg_database.schema_url()
    stores = [PostgresStore(url, pool_size=3) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        await stores[0].apply(Changes(runs=[run_record("r1")]))
        results = await asyncio.gather(
            *(
                store.apply(
                    Changes(
                        runs=[run_record("r1", status="succeeded", output=n)],
                        steps=[step_record("r1", f"s{n}")],
                        expect_versions={"r1": 1},
                    )
                )
                for n in range(12)
                for store in [stores[n % 3]]
            ),
            return_exceptions=True,
        )
        winners = [n for n, r in enumerate(results) if r is None]
        assert len(winners) == 1, results
        assert all(isinstance(r, VersionConflict) for r in results if r is not None), results
        stored = await stores[1].load_run("r1")
        assert stored is not None
        assert (stored.run.version, stored.run.output) == (2, winners[0])
        assert [s.step_id for s in stored.steps] == [f"s{winners[0]}"]
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_transitions_of_overlapping_runs_never_deadlock(pg_database: TestDatabase) -> None:
    """Transitions that write the same runs named in opposite orders: each wins or loses the
    race (VersionConflict), none fails with PostgreSQL's deadlock error."""
    url = pg_database.schema_url()
    first, second = PostgresStore(url, pool_size=4), PostgresStore(url, pool_size=4)
    await asyncio.gather(first.open(), second.open())
    try:
        ids = [f"r{n}" for n in range(6)]
        await first.apply(Changes(runs=[run_record(i) for i in ids]))

        async def churn(store: PostgresStore, order: list[str]) -> list[BaseException | None]:
            outcomes: list[BaseException | None] = []
            for _ in range(15):
                versions = {i: (await store.get_run(i)).version for i in order}  # type: ignore[union-attr]
                try:
                    await store.apply(
                        Changes(
                            runs=[run_record(i, output=len(outcomes)) for i in order[:3]],
                            steps=[step_record(i, "s") for i in order],
                            expect_versions=versions,
                        )
                    )
                    outcomes.append(None)
                except VersionConflict as conflict:
                    outcomes.append(conflict)
            return outcomes

        results = await asyncio.gather(
            *(churn(store, ids if n % 2 else ids[::-1]) for n in range(4) for store in (first, second))
        )
        outcomes = [o for batch in results for o in batch]
        assert any(o is None for o in outcomes)
        assert all(o is None or "lost a race in PostgreSQL" not in str(o) for o in outcomes), outcomes
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_transitions_arriving_together_share_a_commit_and_a_loser_fails_alone(
    pg_database: TestDatabase,
) -> None:
    """Group commit: transitions that arrive while one commits are written in one transaction
    (fewer commits than transitions); one among them that lost its race (a stale version) is
    refused alone, and the others are written all the same."""
    store = PostgresStore(pg_database.schema_url(), pool_size=4)
    await store.open()
    try:
        await store.apply(Changes(runs=[run_record("stale")]))
        await store.apply(
            Changes(runs=[run_record("stale", output="moved on")], expect_versions={"stale": 1})
        )
        writes = [
            store.apply(Changes(runs=[run_record(f"r{n}")], steps=[step_record(f"r{n}", "s")]))
            for n in range(40)
        ]
        writes.insert(
            20, store.apply(Changes(runs=[run_record("stale", output="late")], expect_versions={"stale": 1}))
        )
        results = await asyncio.gather(*writes, return_exceptions=True)
        assert [n for n, r in enumerate(results) if r is not None] == [20], results
        assert isinstance(results[20], VersionConflict), results[20]
        for n in range(40):
            stored = await store.load_run(f"r{n}")
            assert stored is not None and [s.step_id for s in stored.steps] == ["s"], n
        assert (await store.get_run("stale")).output == "moved on"  # type: ignore[union-attr]
        grouped = store.commits
        await asyncio.gather(*(store.apply(Changes(runs=[run_record(f"q{n}")])) for n in range(40)))
        assert store.commits - grouped < 40, store.commits - grouped  # none lost a race: grouped
    finally:
        await store.close()


async def test_transitions_queued_as_a_batch_begins_are_not_called_slow(
    pg_database: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch's wait is measured from its start: transitions queued in the turn its task is
    made (before it first runs) were warned of as waiting since the store opened ("waiting for
    4340s", seen in a rolling restart's log)."""
    store = PostgresStore(pg_database.schema_url(), pool_size=2)
    await store.open()
    try:
        caplog.set_level(logging.WARNING, logger="coordinator.store.postgres")
        await asyncio.gather(*(store.apply(Changes(runs=[run_record(f"w{n}")])) for n in range(3)))
        assert [r.getMessage() for r in caplog.records if "has been waiting" in r.getMessage()] == []
    finally:
        await store.close()


async def test_a_group_commit_writes_every_table_of_every_transition(pg_database: TestDatabase) -> None:
    """A group commit writes each table's rows of all its transitions with one statement (runs
    aside): every row of every transition lands, in the tables' documented order (a timer
    cleared and set again is set; an offer removed and added again is open), and one new policy
    named by several transitions of the batch is written once."""
    url = pg_database.schema_url()
    store = PostgresStore(url, pool_size=4)
    await store.open()
    policy = {"retry": {"max_attempts": 4}}
    try:
        for n in range(30):
            await store.apply(
                Changes(
                    runs=[run_record(f"g{n}")],
                    timers_set=[timer("lease", f"g{n}:s:1", 10, run_id=f"g{n}")],
                    offers_add=[offer(f"g{n}:s:1", n)],
                )
            )
        commits = store.commits
        await asyncio.gather(
            *(
                store.apply(
                    Changes(
                        steps=[step_record(f"g{n}", "s", policy=policy)],
                        attempts=[attempt_record(f"g{n}", "s")],
                        audit=[audit("run.start", at_ms=n)],
                        timers_clear=[("lease", f"g{n}:s:1")],
                        timers_set=[timer("lease", f"g{n}:s:1", 1000 + n, run_id=f"g{n}")],
                        offers_remove=[f"g{n}:s:1"],
                        offers_add=[offer(f"g{n}:s:1", 100 + n)],
                        inflight_add=[(f"g{n}:s:0", "payments", "payments/charge")],
                        expect_versions={f"g{n}": 1},
                    )
                )
                for n in range(30)
            )
        )
        assert store.commits - commits < 30  # grouped
        timers = {t.key: t.due_ms for t in await all_timers(store)}
        assert timers == {f"g{n}:s:1": 1000 + n for n in range(30)}
        offered = await store.offers([("payments/charge", 1)], 100)
        assert [o.attempt_id for o in offered] == [f"g{n}:s:1" for n in range(30)]
        assert sum((await store.inflight_counts()).values()) == 30
        for n in range(30):
            stored = await store.load_run(f"g{n}")
            assert stored is not None and stored.run.version == 2, n
            assert [(s.step_id, s.policy) for s in stored.steps] == [("s", policy)], n
            assert [a.attempt_id for a in stored.attempts] == [f"g{n}:s:1"], n
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM policies").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM audit WHERE action = 'run.start'").fetchone() == (30,)
    finally:
        await store.close()


async def test_coordinators_starting_at_once_keep_one_admin_token(pg_database: TestDatabase) -> None:
    url = pg_database.schema_url()
    stores = [PostgresStore(url, pool_size=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        authorities = [TokenAuthority() for _ in stores]
        tokens = await asyncio.gather(*(Teams(s, a).load() for s, a in zip(stores, authorities, strict=True)))
        created = [t for t in tokens if t is not None]
        assert len(created) == 1, tokens
        assert await stores[0].get_setting(ADMIN_TOKEN_SETTING) == hash_token(created[0])
        for authority in authorities:  # the token works on every one of them
            principal = authority.authenticate(created[0])
            assert principal is not None and principal.admin
        # A later start finds it and makes none.
        assert await Teams(stores[1], TokenAuthority()).load() is None
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_connections_postgresql_dropped_are_replaced(pg_database: TestDatabase) -> None:
    """PostgreSQL restarted, or an operator ended the coordinator's sessions: the pool hands out
    working connections again, without a restart of the coordinator."""
    url = pg_database.schema_url()
    store = PostgresStore(url, pool_size=3)
    await store.open()
    try:
        await store.apply(Changes(runs=[run_record("r1")]))
        others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        with pg_database.connect() as admin:
            ended = admin.execute(
                f"SELECT pg_terminate_backend(pid) {others}", (pg_database.name,)
            ).fetchall()
            assert len(ended) >= 2  # the pool keeps two open
            for _ in range(500):  # pg_terminate_backend only signals: wait until they are gone
                if admin.execute(f"SELECT count(*) {others}", (pg_database.name,)).fetchone() == (0,):
                    break
                await asyncio.sleep(0.01)
        failures = 0
        for _ in range(5):
            try:
                assert await store.get_run("r1") is not None
            except psycopg.OperationalError:
                failures += 1
        assert failures == 0
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("conninfo", "where"),
    [
        ("postgresql://accord:s3cret@db.internal:6432/accord?sslmode=verify-full", "db.internal:6432/accord"),
        ("postgres://accord@db.internal/accord", "db.internal:5432/accord"),
        ("postgresql:///accord", "the local socket (port 5432)/accord"),
        ("host=/var/run/postgresql dbname=accord password=s3cret", "/var/run/postgresql (port 5432)/accord"),
        ("postgresql://a:1,b:2/accord", "a,b (ports 1,2)/accord"),
    ],
)
def test_messages_name_the_server_without_the_password(
    conninfo: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("PGHOST", "PGPORT", "PGDATABASE"):
        monkeypatch.delenv(variable, raising=False)
    assert PostgresStore(conninfo).where == where


async def test_a_version_1_database_keeps_each_teams_token_as_its_default_token(
    pg_database: TestDatabase,
) -> None:
    """0004 moves teams.token_hash into the tokens table, named "default": the token a team had
    keeps working, and the team keeps its defaults."""
    url = pg_database.schema_url()
    first = next(sql for number, _, sql in _migrations() if number == 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(first)
        conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_ms bigint NOT NULL)"
        )
        conn.execute("INSERT INTO schema_version VALUES (1, '0001_init.sql', 0)")
        conn.execute(
            "INSERT INTO teams (name, token_hash, created_ms, retry_json) VALUES"
            " ('payments', 'hash-p', 10, '{\"max_attempts\": 4}'), ('crm', 'hash-c', 20, '{}')"
        )
    store = PostgresStore(url)
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
    with psycopg.connect(url) as conn:
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'teams'"
                " AND table_schema = current_schema() ORDER BY ordinal_position"
            )
        ]
    assert columns == ["name", "created_ms", "retry_json", "timeouts_json"]
    assert _schema_versions(url)[-1][0] == _migrations()[-1][0]


async def test_a_version_13_database_keeps_the_payloads_in_its_rows_and_moves_them_out_when_written(
    pg_database: TestDatabase,
) -> None:
    """0014 gives payloads columns of their own without touching the rows: a run and a step
    written before hold theirs in data_json, are read with them, and the first write of each
    moves them out."""
    url = pg_database.schema_url()
    columns, run_row, step_data = rows_before_payload_columns()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_ms bigint NOT NULL)"
        )
        for number, name, sql in _migrations():
            if number <= 13:
                conn.execute(sql)  # type: ignore[arg-type]
                conn.execute("INSERT INTO schema_version VALUES (%s, %s, 0)", (number, name))
        conn.execute(
            f"INSERT INTO runs ({', '.join(columns)}, version) VALUES ({', '.join('%s' for _ in columns)}, 4)",
            run_row,
        )
        conn.execute(
            "INSERT INTO steps (run_id, step_id, data_json, policy_ref) VALUES ('r1', 'charge', %s, '')",
            (step_data,),
        )
    store = PostgresStore(url)
    await store.open()
    try:
        await read_and_move_old_payloads(store)
    finally:
        await store.close()
    assert _schema_versions(url)[-1][0] == _migrations()[-1][0]
    with psycopg.connect(url) as conn:
        assert_payloads_moved_out(
            conn.execute("SELECT data_json, input_json FROM runs").fetchone(),  # type: ignore[arg-type]
            conn.execute("SELECT data_json, output_json FROM steps").fetchone(),  # type: ignore[arg-type]
        )
