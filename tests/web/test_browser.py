"""The tracing UI in a real headless Chromium against a real coordinator with real agents.

Screenshots of the main pages go to test-artifacts/ui/ (git-ignored).
"""

from __future__ import annotations

from typing import Any

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.wait import wait_until
from tests.web.conftest import ARTIFACTS
from tests.web.world import World

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="package")]

Page = Any  # playwright.async_api.Page


async def sign_in(page: Page, world: World, team: str, next_path: str = "/runs") -> None:
    await page.goto(f"{world.ui_url}{next_path}")
    assert "/signin" in page.url
    await page.fill("#token", world.tokens[team])
    await page.click("#signin-submit")
    await page.wait_for_url(f"**{next_path}")


async def shot(page: Page, name: str) -> None:
    await page.wait_for_timeout(150)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_sign_in_lists_runs_and_sign_out(world: World, browser_page: Page) -> None:
    page = browser_page
    await page.goto(f"{world.ui_url}/signin")
    await page.fill("#token", "not-a-token")
    await page.click("#signin-submit")
    await page.wait_for_selector("#signin-error:not([hidden])")
    assert "not valid" in await page.inner_text("#signin-error")
    await sign_in(page, world, "shipping")
    row = page.locator(f'#runs-table tr[data-run-id="{world.failed_run_id}"]')
    await row.wait_for()
    assert "FAILED" in (await row.inner_text()).upper()
    assert "shipping" in await page.inner_text("#who")
    await shot(page, "runs-list")
    await page.click("#signout")
    await page.wait_for_url("**/signin")
    await page.goto(f"{world.ui_url}/runs")
    assert "/signin" in page.url


async def test_failed_three_team_run_shows_where_why_and_whose(world: World, browser_page: Page) -> None:
    page = browser_page
    await sign_in(page, world, "shipping", f"/runs/{world.failed_run_id}")
    await page.wait_for_selector(".wf-row")
    # The banner says it failed at step ship, owned by shipping.
    banner = await page.inner_text("#failure")
    assert "Failed" in banner and "ship" in banner and "label printer lp0 offline" in banner
    # Three teams in the step graph, the failed step outlined.
    assert await page.locator('.node[data-status="failed"][data-step="ship"]').count() == 1
    teams = {await n.get_attribute("data-team") for n in await page.locator(".node").all()}
    assert teams == {"payments", "warehouse", "shipping"}
    # One row per hop: open the failing hop (ship) and read its first attempt's error with
    # engine details.
    ship = page.locator('.wf-row[data-role="step"]').filter(has_text="ship ·")
    await ship.locator(".wf-toggle").click()
    failing = page.locator('.wf-row[data-status="error"][data-label="attempt 1/2"]')
    await failing.first.click()
    detail = page.locator("#detail")
    await detail.locator(".error-box").first.wait_for()
    text = await detail.inner_text()
    assert "CommandFailed" in text
    assert "label printer lp0 offline" in text
    assert "exit code" in text.lower()
    assert "ATTEMPTS (2)" in text.upper()  # the retry is visible
    assert await page.locator('.wf-row[data-status="error"]').count() >= 3  # run, step, two attempts
    await shot(page, "run-page")


async def test_team_viewer_does_not_see_another_teams_payload(world: World, browser_page: Page) -> None:
    page = browser_page
    await sign_in(page, world, "payments", f"/runs/{world.failed_run_id}")
    await page.wait_for_selector(".node")
    # payments' own step: payload visible, sensitive card token redacted by the coordinator.
    await page.click('.node[data-step="charge"]')
    own = await page.inner_text("#detail")
    assert "o-1" in own and "tok_visa_4242" not in own
    # warehouse's step: hidden from payments.
    await page.click('.node[data-step="reserve"]')
    other = await page.inner_text("#detail")
    assert "Hidden: this step belongs to team warehouse" in other
    assert "sku-1" not in other and "aisle 7" not in other
    # No cancel or re-run for a run of another team's workflow.
    assert await page.locator("#cancel-run").count() == 0
    assert await page.locator("#rerun").count() == 0
    await shot(page, "run-page-payments-viewer")


async def test_diff_two_contract_versions(world: World, browser_page: Page) -> None:
    page = browser_page
    await sign_in(page, world, "shipping", "/contracts")
    await page.wait_for_selector('.team-section[data-team="payments"]')
    await shot(page, "contracts")
    await page.click('a[href="/contracts/payments/charge-card"]')
    await page.wait_for_selector("#compare-form")
    await shot(page, "contract-page")
    # Consumers are per version: order-to-cash calls ^1, so 2.0.0 (shown first) has none.
    assert "No registered workflow calls this version" in await page.inner_text("#consumers")
    await page.click(".ver-item:has-text('1.1.0')")
    await page.wait_for_selector("#consumers:has-text('Consumers of 1.1.0')")
    assert "shipping/order-to-cash" in await page.inner_text("#consumers")
    await page.select_option("#diff-old", "payments/charge-card@1.1.0")
    await page.select_option("#diff-new", "payments/charge-card@2.0.0")
    await page.click("#compare-form button")
    await page.wait_for_selector("#verdict")
    verdict = await page.inner_text("#verdict")
    assert "Breaking change" in verdict and "different major" in verdict
    findings = await page.inner_text("#findings")
    assert "card_token" in findings and "BREAKING" in findings.upper()
    await shot(page, "contract-diff")
    # A compatible minor: no breaking findings.
    await page.goto(
        f"{world.ui_url}/contracts/diff?old=payments/charge-card@1.0.0&new=payments/charge-card@1.1.0"
    )
    await page.wait_for_selector("#verdict")
    assert "Compatible" in await page.inner_text("#verdict")


async def test_teams_graph(world: World, browser_page: Page) -> None:
    page = browser_page
    await sign_in(page, world, "warehouse", "/teams")
    await page.wait_for_selector(".tedge")
    edges = {
        (await e.get_attribute("data-from"), await e.get_attribute("data-to"))
        for e in await page.locator(".tedge").all()
    }
    assert ("shipping", "payments") in edges and ("shipping", "warehouse") in edges
    await shot(page, "teams-graph")


async def test_cancel_a_live_run(world: World, browser_page: Page) -> None:
    page = browser_page
    run_id = await world.start_run("shipping", "shipping/hold-and-wait", {"order_id": "o-live"})
    await world.wait_status(run_id, {pb.RUN_STATUS_RUNNING})
    await wait_until(lambda: world.held, "the hold step never reached its agent")
    await sign_in(page, world, "shipping", f"/runs/{run_id}")
    await page.wait_for_selector("#cancel-run")
    assert "RUNNING" in (await page.inner_text(".run-title")).upper()
    await page.click("#cancel-run")
    await page.click("#confirm-cancel")
    await page.locator(".run-title .badge.st-cancelled").wait_for(timeout=20000)
    run = await world.wait_status(run_id, {pb.RUN_STATUS_CANCELLED}, timeout=20)
    assert run.status == pb.RUN_STATUS_CANCELLED
