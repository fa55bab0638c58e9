"""The autonomy page and its JSON API against the real coordinator of the web tests' world: the
figures the page shows are the coordinator's report (``/api/v1/autonomy``), scoped as the gRPC API
is, and the page renders in a real headless Chromium.

In the browser tests' xdist group: they share the one world (and its coordinator) with them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
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
    # the DORA keys per contract, as the report gives them
    contract_rows = await page.eval_on_selector_all(
        "#autonomy-contracts tbody tr[data-contract]",
        "rows => rows.map(r => ({team: r.dataset.team, contract: r.dataset.contract, cells: [...r.cells].map(c => c.textContent)}))",
    )
    expected_contracts = {
        (t, name): d for t, team in expected.items() for name, d in team["contracts"].items()
    }
    assert {(r["team"], r["contract"]) for r in contract_rows} == set(expected_contracts)
    assert ("payments", "payments/charge-card") in expected_contracts
    for row in contract_rows:
        d = expected_contracts[(row["team"], row["contract"])]
        assert row["cells"][2] == str(d["changes"])
        assert row["cells"][4] == (d["lead_time"]["text"] if d["lead_time"] else "—")
        assert row["cells"][5].endswith(f"({d['failed_changes']}/{d['changes_with_runs']})")
    # over time, by week (the default): a row per team and week
    assert report["by"] == "week"
    period_rows = await page.eval_on_selector_all(
        "#autonomy-over-time tbody tr[data-period]",
        "rows => rows.map(r => ({team: r.dataset.team, period: r.dataset.period, cells: [...r.cells].map(c => c.textContent)}))",
    )
    assert [(r["team"], r["period"]) for r in period_rows] == [
        (t["team"], p["period"]) for t in report["teams"] for p in t["over_time"]
    ]
    shipping_weeks = {r["period"]: r["cells"] for r in period_rows if r["team"] == "shipping"}
    for p in expected["shipping"]["over_time"]:
        assert shipping_weeks[p["period"]][3] == str(p["changes"]["workflow_versions"])
    assert await page.locator("#autonomy-truncated").count() == 0
    assert "change_failure_rate" in await page.inner_text("#autonomy-how")
    await page.screenshot(path=str(ARTIFACTS / "autonomy.png"), full_page=True)

    # by day, chosen on the page
    await page.select_option("#autonomy-filters select[name=by]", "day")
    await page.click("#autonomy-filters button[type=submit]")
    await page.wait_for_url("**by=day**")
    await page.wait_for_selector("#autonomy-over-time tbody tr[data-period]")
    assert "Over time, by day" in await page.inner_text("#autonomy-over-time h2")
    async with signed_in(world, "admin") as admin:
        daily = (await admin.get("/api/v1/autonomy", params={"by": "day"})).json()["report"]
    days = await page.eval_on_selector_all(
        "#autonomy-over-time tbody tr[data-period]", "rows => rows.map(r => r.dataset.period)"
    )
    assert days == [p["period"] for t in daily["teams"] for p in t["over_time"]]
    bad = None
    async with signed_in(world, "admin") as admin:
        bad = await admin.get("/api/v1/autonomy", params={"by": "year"})
    assert bad.status_code == 400 and "by:" in bad.text

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


@pytest.mark.browser
async def test_the_autonomy_page_says_when_a_limit_cut_the_period(
    world: World, browser_page: Page, tmp_path: Path
) -> None:
    """A coordinator reading at most 3 audit entries per report: the page says which period its
    figures cover in full, as the report does."""
    from tests.support.coordinator import CoordinatorProcess
    from tests.support.scenario import contract

    home = tmp_path / "home"
    coordinator = CoordinatorProcess.start(home, "--ui", "127.0.0.1:0", "--autonomy-rows", "3")
    try:
        payments = await coordinator.create_team("payments")
        for version in ("1.0.0", "1.1.0", "1.2.0", "1.3.0"):
            assert (
                await coordinator.register_contract(payments, contract("payments/charge", version))
            ).registered
        ui_url = f"http://{json.loads((home / 'coordinator.json').read_text())['ui']}"
        page = browser_page
        await page.context.clear_cookies()
        await page.goto(f"{ui_url}/autonomy")
        await page.fill("#token", coordinator.admin_token)
        await page.click("#signin-submit")
        await page.wait_for_selector("#autonomy-truncated")
        async with coordinator.client() as admin:
            audit = list((await admin.coordinator.ListAuditLog(pb.ListAuditLogRequest())).entries)
        covered = sorted(e.at_unix_ms for e in audit)[-3] + 1
        banner = page.locator("#autonomy-truncated")
        assert await banner.get_attribute("data-covered-from") == str(covered)
        text = await banner.inner_text()
        shown = datetime.fromtimestamp(covered / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        assert (
            text.startswith("Truncated: these figures cover") and shown in text and "3 audit entries" in text
        )
        await page.screenshot(path=str(ARTIFACTS / "autonomy-truncated.png"), full_page=True)
    finally:
        coordinator.kill9()
