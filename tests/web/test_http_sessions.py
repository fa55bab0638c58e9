"""The UI's HTTP layer over a served app: sessions, cookies, CSRF, errors, keyset pages.

Data comes from the in-memory FakeSource; scoping against the real coordinator is in
test_http_scoping.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from coordinator.store.sqlite import SqliteStore
from coordinator.web import SessionStore, create_app, serve_ui
from tests.web.fake_source import ADMIN_TOKEN, FakeSource


@pytest.fixture
async def base_url(ui_store: SqliteStore) -> AsyncIterator[str]:
    app = create_app(FakeSource(), sessions=SessionStore(ui_store))
    server = await serve_ui(app, "127.0.0.1", 0)
    try:
        yield server.url
    finally:
        await server.stop()


async def sign_in(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    response = await client.post(
        "/api/v1/session", json={"token": token}, headers={"Origin": str(client.base_url)}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_missing_cookie_gives_401_json_and_pages_redirect_to_sign_in(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        for path in ("/api/v1/runs", "/api/v1/runs/run-failed-1", "/api/v1/contracts", "/api/v1/teams/graph"):
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "unauthenticated"
        page = await client.get("/runs/run-failed-1?x=1")
        assert page.status_code == 303
        assert page.headers["location"] == "/signin?next=%2Fruns%2Frun-failed-1%3Fx%3D1"
        signin = await client.get("/signin")
        assert signin.status_code == 200 and 'id="token"' in signin.text


async def test_forged_cookie_is_refused(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url, cookies={"accord_session": "not-a-session"}) as client:
        assert (await client.get("/api/v1/runs")).status_code == 401
        assert (await client.get("/runs")).status_code == 303
    # The raw token as a cookie is no session either.
    async with httpx.AsyncClient(base_url=base_url, cookies={"accord_session": ADMIN_TOKEN}) as client:
        assert (await client.get("/api/v1/runs")).status_code == 401


async def test_sign_in_sets_an_opaque_strict_http_only_cookie(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        bad = await client.post("/api/v1/session", json={"token": "wrong"}, headers={"Origin": base_url})
        assert bad.status_code == 401
        response = await client.post(
            "/api/v1/session", json={"token": "tok-shipping"}, headers={"Origin": base_url}
        )
        assert response.status_code == 200
        assert response.json()["team"] == "shipping" and response.json()["admin"] is False
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("accord_session=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        assert "tok-shipping" not in cookie
        assert (await client.get("/api/v1/runs")).status_code == 200
        page = await client.get("/runs")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert response.json()["csrf"] in page.text  # handed to the page in a meta tag


async def test_cross_origin_sign_in_is_refused(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post(
            "/api/v1/session", json={"token": "tok-shipping"}, headers={"Origin": "http://evil.example"}
        )
        assert response.status_code == 403
        assert "set-cookie" not in response.headers


async def test_posts_need_the_session_csrf_header(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        session = await sign_in(client, "tok-shipping")
        no_header = await client.post("/api/v1/runs/run-failed-1/cancel", json={})
        assert no_header.status_code == 403 and no_header.json()["error"]["code"] == "csrf"
        wrong = await client.post(
            "/api/v1/runs/run-failed-1/cancel", json={}, headers={"X-Accord-CSRF": "nope"}
        )
        assert wrong.status_code == 403
        ok = await client.post(
            "/api/v1/runs/run-failed-1/cancel", json={}, headers={"X-Accord-CSRF": session["csrf"]}
        )
        assert ok.status_code == 200 and ok.json()["run"]["status"] == "cancelled"


async def test_sign_out_ends_the_session(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        session = await sign_in(client, "tok-shipping")
        cookie = client.cookies.get("accord_session")
        assert (await client.delete("/api/v1/session")).status_code == 403  # CSRF header missing
        out = await client.delete("/api/v1/session", headers={"X-Accord-CSRF": session["csrf"]})
        assert out.status_code == 200
    async with httpx.AsyncClient(base_url=base_url, cookies={"accord_session": cookie or ""}) as client:
        assert (await client.get("/api/v1/runs")).status_code == 401


async def test_run_list_keyset_pages_cover_every_run_once_newest_first(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        await sign_in(client, "tok-shipping")
        seen: list[tuple[int, str]] = []
        cursor = ""
        while True:
            response = await client.get("/api/v1/runs", params={"limit": 25, "cursor": cursor})
            body = response.json()
            seen.extend((r["created_ms"], r["run_id"]) for r in body["runs"])
            cursor = body["next_cursor"]
            if not cursor:
                break
        assert len(seen) == 122 == len(set(seen))
        assert seen == sorted(seen, reverse=True)
        failed = (await client.get("/api/v1/runs", params={"status": "failed", "q": "run-00"})).json()["runs"]
        assert failed and all(r["status"] == "failed" and "run-00" in r["run_id"] for r in failed)
        assert (await client.get("/api/v1/runs", params={"cursor": "garbage!"})).status_code == 400
        assert (await client.get("/api/v1/runs", params={"status": "weird"})).status_code == 400


async def test_unknown_api_path_is_json_404(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        await sign_in(client, ADMIN_TOKEN)
        response = await client.get("/api/v1/nope")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        missing = await client.get("/api/v1/runs/does-not-exist")
        assert missing.status_code == 404 and "does-not-exist" in missing.json()["error"]["message"]
