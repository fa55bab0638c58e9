"""UI sign-in sessions live in the store: real coordinator processes serving the UI over HTTP.

On PostgreSQL, two replicas on one database (each with its own home and UI address): a session
made through one is served by the other, survives ``kill -9`` of the one that made it, ends on
both when signed out through either, and ends on both when its token is rotated through either.
On SQLite, a session survives a restart of the coordinator. Nothing in the database is usable on
its own: neither the cookie nor the token is in it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from coordinator.web._sessions import COOKIE_NAME, session_key
from tests.support.coordinator import CoordinatorProcess
from tests.support.postgres import TestDatabase
from tests.support.wait import wait_until

UI = ("--ui", "127.0.0.1:0")


def ui_url(coordinator: CoordinatorProcess) -> str:
    """The UI of the running process (a restart on port 0 may bind another port)."""
    state = json.loads((coordinator.home / "coordinator.json").read_text())
    assert "ui" in state, f"no UI address in coordinator.json: {state}\n{coordinator.log()}"
    return f"http://{state['ui']}"


async def sign_in(url: str, token: str) -> tuple[str, str]:
    """Sign in through the UI at ``url``; returns (cookie, csrf)."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/api/v1/session", json={"token": token}, headers={"Origin": url})
        assert response.status_code == 200, response.text
        cookie = response.cookies.get(COOKIE_NAME)
        assert cookie
        return cookie, response.json()["csrf"]


async def get(url: str, cookie: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, cookies={COOKIE_NAME: cookie}, timeout=30) as client:
        return await client.get(path)


def stored_sessions(url: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute("SELECT * FROM ui_sessions"))


@pytest.mark.postgres
async def test_a_session_is_served_by_every_replica_and_outlives_the_one_that_made_it(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    url = pg_database.schema_url()
    a = CoordinatorProcess.start(tmp_path / "a", "--store", url, *UI)
    b = CoordinatorProcess.start(tmp_path / "b", "--store", url, *UI)
    try:
        b.admin_token = a.admin_token  # one admin token per database; a's home has it
        payments = await a.create_team("payments")
        cookie, csrf = await sign_in(ui_url(a), payments)

        on_b = await get(ui_url(b), cookie, "/api/v1/session")
        assert on_b.status_code == 200, on_b.text
        assert (on_b.json()["label"], on_b.json()["csrf"]) == ("payments", csrf)
        assert (await get(ui_url(b), cookie, "/api/v1/runs")).status_code == 200

        # The database holds the session, and nothing in it signs anyone in.
        rows = stored_sessions(url)
        assert len(rows) == 1 and rows[0][0] == session_key(cookie)
        stored = repr(rows).encode() + b"".join(v for v in rows[0] if isinstance(v, bytes))
        assert cookie.encode() not in stored and payments.encode() not in stored

        a.kill9()
        assert (await get(ui_url(b), cookie, "/api/v1/runs")).status_code == 200
        page = await get(ui_url(b), cookie, "/runs")
        assert page.status_code == 200 and csrf in page.text

        async with httpx.AsyncClient(base_url=ui_url(b), cookies={COOKIE_NAME: cookie}) as client:
            out = await client.delete("/api/v1/session", headers={"X-Accord-CSRF": csrf})
            assert out.status_code == 200, out.text
        assert stored_sessions(url) == []

        a.restart()
        assert (await get(ui_url(a), cookie, "/api/v1/runs")).status_code == 401
        assert (await get(ui_url(a), cookie, "/runs")).status_code == 303  # to the sign-in page
    finally:
        a.kill9()
        b.kill9()


@pytest.mark.postgres
async def test_a_token_rotated_through_one_replica_ends_its_sessions_on_the_other(
    pg_database: TestDatabase, tmp_path: Path
) -> None:
    url = pg_database.schema_url()
    a = CoordinatorProcess.start(tmp_path / "a", "--store", url, *UI)
    b = CoordinatorProcess.start(tmp_path / "b", "--store", url, *UI)
    try:
        b.admin_token = a.admin_token
        payments = await a.create_team("payments")
        crm = await a.create_team("crm")
        rotated, _ = await sign_in(ui_url(a), payments)
        kept, _ = await sign_in(ui_url(a), crm)
        assert (await get(ui_url(b), rotated, "/api/v1/runs")).status_code == 200

        async with b.client(payments) as client:
            await client.coordinator.RotateTeamToken(pb.RotateTeamTokenRequest(name="payments"))

        # a refuses the old token once it has read the new hash (its cache, within a second)...
        async def refused_on_a() -> bool:
            return (await get(ui_url(a), rotated, "/api/v1/runs")).status_code == 401

        await wait_until(refused_on_a, "the rotated token's session refused by replica a")
        # ...and that refusal ended the session in the database: b refuses it too, even where
        # no call to the API is made.
        assert (await get(ui_url(b), rotated, "/api/v1/session")).status_code == 401
        assert (await get(ui_url(b), rotated, "/api/v1/runs")).status_code == 401
        assert [row[0] for row in stored_sessions(url)] == [session_key(kept)]
        assert (await get(ui_url(b), kept, "/api/v1/runs")).status_code == 200
    finally:
        a.kill9()
        b.kill9()


async def test_a_session_survives_a_restart_of_the_coordinator_on_sqlite(tmp_path: Path) -> None:
    coordinator = CoordinatorProcess.start(tmp_path / "home", *UI)
    try:
        payments = await coordinator.create_team("payments")
        cookie, csrf = await sign_in(ui_url(coordinator), payments)
        coordinator.kill9()
        coordinator.restart()
        session = await get(ui_url(coordinator), cookie, "/api/v1/session")
        assert session.status_code == 200, session.text
        assert (session.json()["label"], session.json()["csrf"]) == ("payments", csrf)
        assert (await get(ui_url(coordinator), cookie, "/api/v1/runs")).status_code == 200
    finally:
        coordinator.kill9()
