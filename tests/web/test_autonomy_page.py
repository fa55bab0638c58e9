"""The autonomy page and its JSON API against the real coordinator of the web tests' world: the
figures the page shows are the coordinator's report (``/api/v1/autonomy``), scoped as the gRPC API
is, and the page renders in a real headless Chromium.

In the browser tests' xdist group: they share the one world (and its coordinator) with them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.conftest import ARTIFACTS
from tests.web.test_audit_page import signed_in
from tests.web.test_browser import sign_in
from tests.web.world import World

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.xdist_group("browser")]

Page = Any  # playwright.async_api.Page


async def test_the_autonomy_api_gives_the_report_a_team_its_own(world: World) -> None:
    async with signed_in(world, "admin") as admin:
        response = await admin.get("/api/v1/autonomy", params={"since": "30d", "last": "3"})
        assert response.status_code == 200, response.text
        body = response.json()
        teams = {t["team"]: t for t in body["report"]["teams"]}
        assert {"payments", "warehouse", "shipping"} <= set(teams)
        # shipping's order-to-cash calls payments and warehouse
        assert {"payments", "warehouse"} <= set(teams["shipping"]["cross_team_dependencies"]["calls"])
        assert teams["shipping"]["changes"]["workflow_versions"] >= 2
        assert len(body["changes"]) == 3
        assert "change_failure_rate" in body["report"]["how"]
        for params in ({"since": "banana"}, {"last": "0"}, {"last": "x"}):
            bad = await admin.get("/api/v1/autonomy", params=params)
            assert bad.status_code == 400, (params, bad.text)
    async with signed_in(world, "warehouse") as client:
        own = (await client.get("/api/v1/autonomy")).json()
        assert [t["team"] for t in own["report"]["teams"]] == ["warehouse"]
        assert all(c["team"] == "warehouse" for c in own["changes"])
        refused = await client.get("/api/v1/autonomy", params={"team": "payments"})
        assert refused.status_code == 403 and "only its own autonomy report" in refused.text


@pytest.mark.browser
async def test_the_autonomy_page_shows_the_figures_of_the_report(world: World, browser_page: Page) -> None:
    async with signed_in(world, "admin") as admin:
        report = (await admin.get("/api/v1/autonomy")).json()["report"]
    expected = {t["team"]: t for t in report["teams"]}
    page = browser_page
    await sign_in(page, world, "admin", "/autonomy")
    await page.wait_for_selector("#autonomy-teams tbody tr[data-team]")
    rows = await page.eval_on_selector_all(
        "#autonomy-teams tbody tr[data-team]",
        "rows => rows.map(r => ({team: r.dataset.team, rate: r.dataset.failureRate, cells: [...r.cells].map(c => c.textContent)}))",
    )
    shown = {r["team"]: r for r in rows}
    assert set(shown) == set(expected)
    shipping = shown["shipping"]
    rate = expected["shipping"]["dora"]["change_failure_rate"]
    assert shipping["rate"] == "null" if rate is None else float(shipping["rate"]) == rate
    assert shipping["cells"][2] == str(expected["shipping"]["changes"]["workflow_versions"])
    assert "calls payments, warehouse" in shipping["cells"][6]
    assert await page.locator("#autonomy-changes tbody tr").count() == 5
    assert "change_failure_rate" in await page.inner_text("#autonomy-how")
    await page.screenshot(path=str(ARTIFACTS / "autonomy.png"), full_page=True)

    await sign_in_as(page, world, "payments")
    await page.wait_for_selector("#autonomy-teams tbody tr[data-team]")
    teams = await page.eval_on_selector_all(
        "#autonomy-teams tbody tr[data-team]", "rows => rows.map(r => r.dataset.team)"
    )
    assert teams == ["payments"]
    assert "team payments" in await page.inner_text("#autonomy-scope")


async def sign_in_as(page: Page, world: World, team: str) -> None:
    await page.context.clear_cookies()
    await sign_in(page, world, team, "/autonomy")
