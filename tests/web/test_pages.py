"""The pages a debugger reaches from a run page: the workflow (versions, steps, who it calls,
latest runs) and the agents (team, contracts served, last heartbeat, in-flight tasks, version).
Real Chromium, real coordinator and agents; screenshots in test-artifacts/ui/pages/."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.wait import wait_until
from tests.web.conftest import ARTIFACTS
from tests.web.test_browser import sign_in
from tests.web.world import World

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="package")]

Page = Any  # playwright.async_api.Page
SHOTS = ARTIFACTS / "pages"


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_workflow_page_from_the_run_page(world: World, browser_page: Page) -> None:
    page = browser_page
    await sign_in(page, world, "shipping", f"/runs/{world.failed_run_id}")
    await page.click("#workflow-link")
    await page.wait_for_url("**/workflows/shipping/order-to-cash?version=1")
    await page.wait_for_selector("#workflow-steps")
    steps = await page.eval_on_selector_all("#workflow-steps tbody tr", "els => els.map(e => e.dataset.step)")
    assert steps == ["charge", "reserve", "ship"]
    calls = await page.inner_text("#workflow-calls")
    assert "payments/charge-card" in calls and "warehouse/reserve-stock" in calls
    assert "shipping/create-shipment" in calls
    assert await page.locator('#workflow-versions [data-version="1"]').count() == 1
    assert world.failed_run_id in await page.inner_text("#workflow-runs")
    assert await page.locator('.node[data-step="ship"]').count() == 1
    await shot(page, "workflow")
    # The list of workflows links to it.
    await page.click('nav a[href="/workflows"]')
    await page.wait_for_selector('#workflows-table tr[data-workflow="shipping/order-to-cash"]')
    await shot(page, "workflows")


async def test_agents_page_from_a_run_pages_attempt(world: World, browser_page: Page) -> None:
    page = browser_page
    before = len(world.held)
    run_id = await world.start_run("shipping", "shipping/hold-and-wait", {"order_id": "o-agents"})
    await wait_until(lambda: len(world.held) > before, "the hold step never reached its agent")
    try:
        await sign_in(page, world, "shipping", f"/runs/{run_id}")
        await page.click('.node[data-step="hold"]')
        link = page.locator("#detail .agent-link").first
        agent_id = await link.inner_text()
        assert agent_id.startswith("warehouse-test-")
        await link.click()
        await page.wait_for_url("**/agents?agent=*")
        row = page.locator(f'#agents-table tr.marked[data-agent="{agent_id}"]')
        await row.wait_for()
        cells = await row.locator("td").all_inner_texts()
        assert "warehouse" in cells[1]
        assert "warehouse/hold-stock@1" in cells[2] and "warehouse/reserve-stock@2" in cells[2]
        assert "ago" in cells[3] and await row.get_attribute("data-alive") == "true"
        in_flight = int(cells[4].split("/")[0])
        assert in_flight >= 1, cells
        # Every agent of every team is listed; another team's hostname is not.
        listed = await page.eval_on_selector_all(
            "#agents-table tbody tr", "els => els.map(e => e.dataset.agent)"
        )
        assert any(a.startswith("payments-test-") for a in listed) and len(listed) >= 3
        await shot(page, "agents")
    finally:
        async with world.coordinator.client(world.tokens["shipping"]) as client:
            await client.coordinator.CancelRun(
                pb.CancelRunRequest(run_id=run_id, reason="test done", request_id=str(uuid.uuid4()))
            )


async def test_event_page_from_the_run_an_event_started(world: World, browser_page: Page) -> None:
    page = browser_page
    async with world.coordinator.client(world.tokens["payments"]) as client:
        published = await client.coordinator.PublishEvent(
            pb.PublishEventRequest(
                contract="payments/refund-issued@1",
                payload_json='{"order_id": "o-refund"}',
                request_id=str(uuid.uuid4()),
            )
        )
        event_id = published.event.event_id

        async def started() -> list[str]:
            reply = await client.coordinator.GetEvent(pb.GetEventRequest(event_id=event_id))
            return list(reply.event.triggered_runs) if reply.event.handled_unix_ms else []

        [run_id] = await wait_until(started, f"the triggers of event {event_id}")
    await world.wait_status(run_id, {pb.RUN_STATUS_SUCCEEDED}, timeout=60)
    # The run page's "started by event" is a link to the event's page (shipping sees payments'
    # event: that it happened and what it started, not its payload).
    await sign_in(page, world, "shipping", f"/runs/{run_id}")
    await page.click("#event-link")
    await page.wait_for_url(f"**/events/{event_id}")
    await page.wait_for_selector("#event-facts")
    facts = await page.inner_text("#event-facts")
    assert "payments/refund-issued@1.0.0" in facts and "payments" in facts
    assert "published with accord event publish" in facts  # no run published it
    assert "not yet" not in facts  # taken by the bus, its triggers ran
    assert await page.locator(f'#event-runs a[href="/runs/{run_id}"]').count() == 1
    assert "o-refund" not in await page.inner_text("main")  # the payload is payments' own
    await shot(page, "event")
    # And back to the run it started.
    await page.click(f'#event-runs a[href="/runs/{run_id}"]')
    await page.wait_for_url(f"**/runs/{run_id}")
    await page.wait_for_selector("#event-link")
    # An event that does not exist (or that retention deleted) is a 404 naming it.
    missing = await page.request.get(f"{world.ui_url}/api/v1/events/evt-nope")
    assert missing.status == 404 and "evt-nope" in await missing.text()
