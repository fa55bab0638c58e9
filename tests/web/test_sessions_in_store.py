"""The UI's sessions in the coordinator's store (a real SQLite file): nothing stored is usable on
its own, any app on the store serves a session, expiry and the bound hold, use is written only
now and then, and a revoked token or a failing store ends in a clear answer.

Times come from a clock the test moves (wall-clock seconds), never from waiting. Sessions across
real coordinator processes (PostgreSQL replicas, SQLite restarts) are in
tests/e2e/test_ui_sessions_replicas.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from contracts.errors import UnauthenticatedError
from coordinator.store.sqlite import SqliteStore
from coordinator.web import Principal, SessionStore, create_app, serve_ui
from coordinator.web._sessions import COOKIE_NAME, session_key
from tests.web.fake_source import ADMIN_TOKEN, FakeSource

TOKEN = "tok-shipping"


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class RevocableSource(FakeSource):
    """The fake coordinator API, where a token can be revoked (as ``rotate-token`` does)."""

    def __init__(self) -> None:
        super().__init__()
        self.revoked: set[str] = set()
        self.whoami_calls = 0

    async def whoami(self, token: str) -> Principal:
        self.whoami_calls += 1
        if token in self.revoked:
            raise UnauthenticatedError(message="unknown or revoked token")
        return await super().whoami(token)


@asynccontextmanager
async def served(sessions: SessionStore, source: FakeSource | None = None) -> AsyncIterator[str]:
    server = await serve_ui(create_app(source or FakeSource(), sessions=sessions), "127.0.0.1", 0)
    try:
        yield server.url
    finally:
        await server.stop()


async def sign_in(url: str, token: str = TOKEN) -> tuple[str, str]:
    """Sign in; returns (cookie, csrf)."""
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/api/v1/session", json={"token": token}, headers={"Origin": url})
        assert response.status_code == 200, response.text
        cookie = response.cookies.get(COOKIE_NAME)
        assert cookie
        return cookie, response.json()["csrf"]


async def status_with(url: str, cookie: str, path: str = "/api/v1/runs") -> int:
    async with httpx.AsyncClient(base_url=url, cookies={COOKIE_NAME: cookie}) as client:
        return (await client.get(path)).status_code


def rows(store: SqliteStore) -> list[sqlite3.Row]:
    """The ui_sessions table as another program reading the file sees it."""
    with sqlite3.connect(store._path) as connection:
        connection.row_factory = sqlite3.Row
        return list(connection.execute("SELECT * FROM ui_sessions"))


async def test_the_store_holds_neither_the_cookie_nor_the_token(ui_store: SqliteStore) -> None:
    async with served(SessionStore(ui_store)) as url:
        cookie, csrf = await sign_in(url)
        admin_cookie, _ = await sign_in(url, ADMIN_TOKEN)
        assert await status_with(url, cookie) == 200
    stored = rows(ui_store)
    assert sorted(row["key"] for row in stored) == sorted([session_key(cookie), session_key(admin_cookie)])
    every_byte = b"".join(
        value if isinstance(value, bytes) else str(value).encode() for row in stored for value in tuple(row)
    )
    for secret in (cookie, admin_cookie, TOKEN, ADMIN_TOKEN):
        assert secret.encode() not in every_byte
    row = next(r for r in stored if r["key"] == session_key(cookie))
    assert (row["team"], row["admin"], row["csrf"]) == ("shipping", 0, csrf)


async def test_a_session_signed_in_through_one_app_is_served_and_ended_by_another(
    ui_store: SqliteStore,
) -> None:
    """Two apps on one store stand for two coordinators on one database (or one restarted)."""
    async with served(SessionStore(ui_store)) as first, served(SessionStore(ui_store)) as second:
        cookie, csrf = await sign_in(first)
        assert await status_with(second, cookie) == 200
        async with httpx.AsyncClient(base_url=second, cookies={COOKIE_NAME: cookie}) as client:
            session = (await client.get("/api/v1/session")).json()
            assert (session["label"], session["csrf"]) == ("shipping", csrf)
            out = await client.delete("/api/v1/session", headers={"X-Accord-CSRF": csrf})
            assert out.status_code == 200
        assert await status_with(first, cookie) == 401
    assert rows(ui_store) == []


async def test_a_row_changed_behind_the_coordinators_back_is_no_session(ui_store: SqliteStore) -> None:
    async with served(SessionStore(ui_store)) as url:
        cookie, _ = await sign_in(url)
        with sqlite3.connect(ui_store._path) as connection:
            connection.execute("UPDATE ui_sessions SET team = '', admin = 1")  # "make me admin"
        assert await status_with(url, cookie) == 401
    assert rows(ui_store) == []  # and the row is gone


async def test_sessions_expire_when_idle_and_when_too_old_by_the_wall_clock(ui_store: SqliteStore) -> None:
    clock = Clock()
    sessions = SessionStore(ui_store, idle_s=600, max_age_s=3600, touch_every_s=60, clock=clock)
    async with served(sessions) as url:
        idle, _ = await sign_in(url)
        busy, _ = await sign_in(url)
        for _ in range(5):  # busy is used every 9 minutes; idle is not
            clock.now += 540
            assert await status_with(url, busy) == 200
        assert await status_with(url, idle) == 401
        assert await status_with(url, busy) == 200
        clock.now += 3600 - 5 * 540 + 1  # an hour and a second after sign-in, however busy
        assert await status_with(url, busy) == 401
    assert rows(ui_store) == []


async def test_use_is_written_at_most_every_touch_interval(ui_store: SqliteStore) -> None:
    clock = Clock()
    source = RevocableSource()
    sessions = SessionStore(ui_store, touch_every_s=60, clock=clock)
    async with served(sessions, source) as url:
        cookie, _ = await sign_in(url)
        signed_in_ms = rows(ui_store)[0]["last_seen_ms"]
        confirmations = source.whoami_calls
        for _ in range(3):
            clock.now += 19
            assert await status_with(url, cookie, "/api/v1/session") == 200
        assert rows(ui_store)[0]["last_seen_ms"] == signed_in_ms  # 57 s: not written
        assert source.whoami_calls == confirmations  # and the token not asked about
        clock.now += 3
        assert await status_with(url, cookie, "/api/v1/session") == 200
        assert rows(ui_store)[0]["last_seen_ms"] == signed_in_ms + 60_000
        assert source.whoami_calls == confirmations + 1  # the use is written: the token confirmed


async def test_a_revoked_token_ends_its_sessions_at_the_next_call_or_confirmation(
    ui_store: SqliteStore,
) -> None:
    clock = Clock()
    source = RevocableSource()
    sessions = SessionStore(ui_store, touch_every_s=60, clock=clock)
    async with served(sessions, source) as url:
        calls, _ = await sign_in(url)
        pages, _ = await sign_in(url)
        other, _ = await sign_in(url, "tok-payments")
        source.revoked.add(TOKEN)
        assert await status_with(url, calls) == 401  # an API call: refused, session deleted
        assert await status_with(url, calls, "/api/v1/session") == 401
        # A call that reaches no API is answered from the session until it confirms its token.
        assert await status_with(url, pages, "/api/v1/session") == 200
        clock.now += 60
        assert await status_with(url, pages, "/api/v1/session") == 401
        assert await status_with(url, other) == 200
    assert [row["team"] for row in rows(ui_store)] == ["payments"]


async def test_sign_ins_beyond_the_limit_end_the_least_recently_used(ui_store: SqliteStore) -> None:
    clock = Clock()
    sessions = SessionStore(ui_store, limit=3, touch_every_s=0, clock=clock)
    async with served(sessions) as url:
        cookies = []
        for _ in range(3):
            cookies.append((await sign_in(url))[0])
            clock.now += 1
        assert await status_with(url, cookies[0]) == 200  # used: now the most recent
        clock.now += 1
        for _ in range(50):  # a flood of sign-ins
            await sign_in(url)
            clock.now += 1
        assert len(rows(ui_store)) == 3
        assert [await status_with(url, c) for c in cookies] == [401, 401, 401]


async def test_expired_sessions_are_deleted_at_the_next_sign_in(ui_store: SqliteStore) -> None:
    clock = Clock()
    sessions = SessionStore(ui_store, idle_s=600, clock=clock)
    async with served(sessions) as url:
        for _ in range(4):
            await sign_in(url)
        clock.now += 601
        fresh, _ = await sign_in(url)
        assert [row["key"] for row in rows(ui_store)] == [session_key(fresh)]


async def test_a_store_that_fails_gives_503_not_a_traceback(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "coordinator.db")
    await store.open()
    async with served(SessionStore(store)) as url:
        cookie, _ = await sign_in(url)
        await store.close()  # as a database that went away
        async with httpx.AsyncClient(base_url=url, cookies={COOKIE_NAME: cookie}) as client:
            api = await client.get("/api/v1/runs")
            assert api.status_code == 503 and api.json()["error"]["code"] == "unavailable"
            page = await client.get("/runs")
            assert page.status_code == 503 and "try again" in page.text
            signin = await client.post("/api/v1/session", json={"token": TOKEN}, headers={"Origin": url})
            assert signin.status_code == 503
