"""The audit log in the UI, against the real coordinator of the web tests' world: the JSON API
(``/api/v1/audit``) scoped as the gRPC API is (a team reads what it owns or made, never another
team's; the admin every team's), and the page in a real headless Chromium.

In the browser tests' xdist group: they share the one world (and its coordinator) with them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.web.conftest import ARTIFACTS
from tests.web.test_browser import sign_in
from tests.web.world import World

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.xdist_group("browser")]

Page = Any  # playwright.async_api.Page

# The admin registers a contract of warehouse's: a platform intervention on a team's object.
PROBE = """
contract: warehouse/audit-probe
version: 1.0.0
description: Registered by the platform on warehouse's behalf.
input: {type: object}
output: {type: object}
"""


@asynccontextmanager
async def signed_in(world: World, team: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=world.ui_url, timeout=20) as client:
        response = await client.post(
            "/api/v1/session", json={"token": world.tokens[team]}, headers={"Origin": world.ui_url}
        )
        assert response.status_code == 200, response.text
        yield client


async def _intervention(world: World) -> None:
    """Once per world: the admin's registration of warehouse/audit-probe."""
    async with world.coordinator.client() as admin:
        found = await admin.coordinator.ListAuditLog(
            pb.ListAuditLogRequest(team="warehouse", page=common_pb.PageRequest(page_size=1000))
        )
    if not any(e.object == "warehouse/audit-probe@1.0.0" for e in found.entries):
        response = await world.coordinator.register_contract(world.tokens["admin"], PROBE)
        assert response.registered, response


async def _all(client: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    """Every entry the API gives, following next_cursor page by page."""
    entries: list[dict[str, Any]] = []
    cursor = ""
    while True:
        response = await client.get("/api/v1/audit", params={**params, "limit": "7", "cursor": cursor})
        assert response.status_code == 200, response.text
        body = response.json()
        entries += body["entries"]
        cursor = body["next_cursor"]
        if not cursor:
            return entries


async def test_the_audit_api_shows_a_team_its_own_entries_and_the_admin_all(world: World) -> None:
    await _intervention(world)
    async with signed_in(world, "admin") as admin:
        everything = await _all(admin)
        assert [e["id"] for e in everything] == sorted((e["id"] for e in everything), reverse=True)
        assert len({e["id"] for e in everything}) == len(everything)  # pages neither repeat nor skip
        teams = {e["owner_team"] for e in everything}
        assert {"payments", "warehouse", "shipping"} <= teams
        [probe] = [e for e in everything if e["object"] == "warehouse/audit-probe@1.0.0"]
        assert (probe["action"], probe["actor"], probe["owner_team"], probe["platform_intervention"]) == (
            "contract.register",
            "admin",
            "warehouse",
            True,
        )
        assert {e["id"] for e in await _all(admin, team="warehouse")} == {
            e["id"] for e in everything if "warehouse" in (e["owner_team"], e["actor"])
        }
        assert {e["id"] for e in await _all(admin, since="7d")} == {e["id"] for e in everything}

    for team in ("payments", "warehouse", "shipping"):
        async with signed_in(world, team) as client:
            seen = await _all(client)
            assert seen and all(team in (e["owner_team"], e["actor"]) for e in seen), (team, seen)
            assert {e["id"] for e in seen} == {
                e["id"] for e in everything if team in (e["owner_team"], e["actor"])
            }
            other = "shipping" if team != "shipping" else "payments"
            refused = await client.get("/api/v1/audit", params={"team": other})
            assert refused.status_code == 403, refused.text
            error = refused.json()["error"]
            assert error["code"] == "permission_denied" and "only its own audit entries" in error["message"]

    async with signed_in(world, "payments") as client:
        for params in ({"since": "banana"}, {"since": "0"}, {"cursor": "x"}, {"cursor": "-3"}):
            bad = await client.get("/api/v1/audit", params=params)
            assert bad.status_code == 400, (params, bad.text)
            assert bad.json()["error"]["code"] == "invalid_argument"
    async with httpx.AsyncClient(base_url=world.ui_url, timeout=20) as anonymous:
        assert (await anonymous.get("/api/v1/audit")).status_code == 401


async def _rows(page: Page) -> list[dict[str, str]]:
    return list(
        await page.eval_on_selector_all(
            "#audit-table tbody tr[data-id]", "rows => rows.map(r => ({...r.dataset}))"
        )
    )


@pytest.mark.browser
async def test_the_audit_page_lists_interventions_and_filters_by_team(
    world: World, browser_page: Page
) -> None:
    await _intervention(world)
    page = browser_page
    await sign_in(page, world, "admin", "/audit")
    probe = page.locator(
        '#audit-table tr[data-action="contract.register"][data-intervention="true"]',
        has_text="warehouse/audit-probe",
    )
    await probe.wait_for()
    assert "platform intervention" in await probe.inner_text()
    assert "Every team's entries" in await page.inner_text("#audit-scope")
    await page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)

    await page.fill("#audit-filters input[name=team]", "payments")
    await page.select_option("#audit-filters select[name=since]", "7d")
    await page.click("#audit-filters button[type=submit]")
    await page.wait_for_url("**/audit?team=payments&since=7d")
    await page.wait_for_function(
        """() => {
            const rows = [...document.querySelectorAll('#audit-table tbody tr[data-id]')];
            return rows.length > 0 && rows.every(r => r.dataset.owner === 'payments' || r.dataset.actor === 'payments');
        }"""
    )
    assert await probe.count() == 0  # the admin's act on warehouse's object is not payments'


@pytest.mark.browser
async def test_a_team_sees_only_its_own_audit_entries_on_the_page(world: World, browser_page: Page) -> None:
    await _intervention(world)
    page = browser_page
    await sign_in(page, world, "payments", "/audit")
    await page.wait_for_selector("#audit-table tbody tr[data-id]")
    rows = await _rows(page)
    assert rows and all("payments" in (r["owner"], r["actor"]) for r in rows), rows
    assert "team payments" in await page.inner_text("#audit-scope")
    # Another team's entries: refused, said on the page, nothing listed.
    await page.fill("#audit-filters input[name=team]", "warehouse")
    await page.click("#audit-filters button[type=submit]")
    await page.wait_for_selector("#audit-error:not([hidden])")
    assert "only its own audit entries" in await page.inner_text("#audit-error")
    assert await _rows(page) == []
