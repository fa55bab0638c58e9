"""The run page's trace, steps graph and detail panel in a real headless Chromium, over the kinds
of runs the demo shows: clean, retried, declined, a fan-out with a failed item, cancelled, and a
failure of the workflow's own mapping. One row per hop, items labelled [0], attempts "attempt
2/2", the failing hop's message, cancelled / not started / skipped told apart, the graph's counts.

Screenshots go to test-artifacts/ui/trace-views/ (git-ignored), one per kind of run.
"""

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
SHOTS = ARTIFACTS / "trace-views"
DONE = {pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def finished_run(world: World, workflow: str, payload: dict[str, Any]) -> str:
    run_id = await world.start_run("shipping", workflow, payload)
    await world.wait_status(run_id, DONE, timeout=60)
    await trace_written(world, run_id)
    return run_id


async def trace_written(world: World, run_id: str) -> None:
    """Wait for the run's spans (written in batches just after the run ends): the run span and
    one span per step."""
    async with world.coordinator.client() as client:
        run = (await client.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run

        async def complete() -> bool:
            reply = await client.coordinator.GetRunTrace(pb.GetRunTraceRequest(run_id=run_id))
            names = [span.name for span in reply.spans]
            steps = sum(1 for name in names if name.startswith("step "))
            return any(name.startswith("run ") for name in names) and steps == len(run.steps)

        await wait_until(complete, f"the spans of run {run_id}")


async def open_run(page: Page, world: World, run_id: str, team: str = "shipping") -> None:
    await sign_in(page, world, team, f"/runs/{run_id}")
    await page.wait_for_selector(".wf-row")
    await page.wait_for_selector(".node")


async def rows(page: Page) -> list[dict[str, str]]:
    """The waterfall's rows as drawn: label, role, state, status."""
    return await page.eval_on_selector_all(
        ".wf-row",
        "els => els.map(e => ({label: e.dataset.label, role: e.dataset.role, state: e.dataset.state,"
        " status: e.dataset.status, text: e.textContent}))",
    )


async def tick_labels(page: Page) -> list[str]:
    return await page.eval_on_selector_all(".wf-tick-label", "els => els.map(e => e.textContent)")


async def assert_readable_axis(page: Page) -> None:
    ticks = await tick_labels(page)
    assert len(ticks) >= 3 and len(set(ticks)) == len(ticks), ticks  # never "0µs 0µs 0µs 1µs"


async def assert_graph_fits(page: Page) -> None:
    """No node of the steps graph is cut off by its card."""
    card = await page.locator(".graph-wrap").bounding_box()
    for node in await page.locator(".node").all():
        box = await node.bounding_box()
        assert box is not None and card is not None
        assert box["x"] >= card["x"] - 1 and box["x"] + box["width"] <= card["x"] + card["width"] + 1, (
            await node.get_attribute("data-step"),
            box,
            card,
        )


async def test_clean_run_is_one_row_per_hop(world: World, browser_page: Page) -> None:
    page = browser_page
    run_id = await finished_run(
        world, "shipping/charge-and-reserve", {"order_id": "o-clean", "amount_cents": 5}
    )
    await open_run(page, world, run_id)
    drawn = await rows(page)
    assert [r["role"] for r in drawn] == ["run", "step", "step"], drawn
    labels = {r["label"] for r in drawn}
    assert "charge · payments/charge-card@1.1.0" in labels or "charge · payments/charge-card@1.0.0" in labels
    assert all(r["status"] != "error" for r in drawn)
    assert "hops of" in await page.inner_text("#wf-count")
    await assert_readable_axis(page)
    await assert_graph_fits(page)
    # Every span on demand.
    await page.check("#wf-all-spans")
    assert len(await rows(page)) > len(drawn)
    assert any(r["label"] == "attempt 1/1" for r in await rows(page))
    await shot(page, "clean")


async def test_retried_hop_says_two_attempts_and_opens_to_them(world: World, browser_page: Page) -> None:
    page = browser_page
    run_id = await finished_run(
        world, "shipping/charge-and-reserve", {"order_id": "flaky-2", "amount_cents": 5}
    )
    await open_run(page, world, run_id)
    charge = page.locator('.wf-row[data-role="step"]').filter(has_text="charge ·")
    assert "2 attempts" in (await charge.text_content() or "")
    assert await page.locator('.wf-row[data-role="attempt"]').count() == 0  # folded
    await charge.locator(".wf-toggle").click()
    attempts = {r["label"]: r for r in await rows(page) if r["role"] == "attempt"}
    assert set(attempts) == {"attempt 1/2", "attempt 2/2"}
    assert attempts["attempt 1/2"]["status"] == "error" and attempts["attempt 2/2"]["status"] == "ok"
    # Another team's attempt box: its detail shows the attempt's error as the run's viewer has it.
    await page.locator('.wf-row[data-label="attempt 1/2"]').click()
    detail = await page.inner_text("#detail")
    assert (
        "GatewayTimeout" in detail and "did not answer within 2s" in detail and "(no message)" not in detail
    )
    await shot(page, "retried")


async def test_declined_run_shows_the_failing_hops_message(world: World, browser_page: Page) -> None:
    page = browser_page
    run_id = await finished_run(
        world, "shipping/charge-and-reserve", {"order_id": "declined-3", "amount_cents": 5}
    )
    await open_run(page, world, run_id)
    # The failing hop (payments' charge, a box for shipping) is selected; its detail says why.
    detail = page.locator("#detail")
    await detail.locator(".span-error").wait_for()
    text = await detail.inner_text()
    assert "charge · payments/charge-card" in text
    assert "CardDeclined" in text and "declined (code 05)" in text
    assert "(no message)" not in text
    charge = next(r for r in await rows(page) if r["label"].startswith("charge"))
    assert charge["state"] == "error"
    await assert_readable_axis(page)
    await shot(page, "declined")


async def test_fan_out_with_a_failed_item(world: World, browser_page: Page) -> None:
    page = browser_page
    run_id = await finished_run(world, "shipping/fan-out", {"order_id": "o-fan"})
    await open_run(page, world, run_id)
    # The graph counts the items, not the for_each step's own record with them.
    node = page.locator('.node[data-step="notify"]')
    assert await node.get_attribute("data-items") == "2"
    node_text = await node.text_content() or ""
    times = "\u00d7"  # the multiplication sign the node draws
    assert f"{times}2" in node_text and f"{times}3" not in node_text
    assert "1 succeeded" in node_text and "1 failed" in node_text
    await assert_graph_fits(page)
    drawn = {r["label"]: r for r in await rows(page)}
    first, second = "[0] · warehouse/notify-picker@1.0.0", "[1] · warehouse/notify-picker@1.0.0"
    assert first in drawn and second in drawn, list(drawn)
    assert drawn[first]["state"] == "ok" and drawn[second]["state"] == "error"
    assert "3 attempts" in drawn[second]["text"]
    assert "2 items" in drawn["notify · warehouse/notify-picker@1.0.0"]["text"]
    # The for_each step's panel: its items and their attempts, no contradicting badge.
    await node.click()
    panel = page.locator("#detail")
    await panel.locator(".items").wait_for()
    text = await panel.inner_text()
    assert "ITEMS (2) · ATTEMPTS (4)" in text.upper()
    assert "ATTEMPTS (0)" not in text.upper()
    assert "gave up after 3 attempts" in text
    assert "not retryable" not in text.lower()
    assert "none yet" not in text.lower()  # a failed step's missing output is "none", not pending
    await shot(page, "fan-out")


async def test_cancelled_and_not_started_are_told_apart(world: World, browser_page: Page) -> None:
    page = browser_page
    before = len(world.held)
    run_id = await world.start_run("shipping", "shipping/hold-then-charge", {"order_id": "o-cancel"})
    await wait_until(lambda: len(world.held) > before, "the hold step never reached its agent")
    async with world.coordinator.client(world.tokens["shipping"]) as client:
        await client.coordinator.CancelRun(
            pb.CancelRunRequest(run_id=run_id, reason="test", request_id=str(uuid.uuid4()))
        )
    await world.wait_status(run_id, {pb.RUN_STATUS_CANCELLED})
    await trace_written(world, run_id)
    await open_run(page, world, run_id)
    states = {r["label"].split(" ·")[0]: r["state"] for r in await rows(page) if r["role"] == "step"}
    assert states == {"hold": "cancelled", "charge": "not started"}, states
    not_started = page.locator('.wf-row[data-state="not started"]')
    assert "not started" in (await not_started.text_content() or "")
    assert "0µs" not in (await not_started.text_content() or "")
    # The graph and the step panel say the same.
    assert await page.locator('.node[data-step="charge"]').get_attribute("data-state") == "not started"
    assert await page.locator('.node[data-step="hold"]').get_attribute("data-state") == "cancelled"
    await page.click('.node[data-step="charge"]')
    assert "NOT STARTED" in (await page.inner_text("#detail .panel-title")).upper()
    assert (await page.locator("#failure b").first.inner_text()) == "Cancelled"
    await shot(page, "cancelled")


async def test_mapping_failure_is_the_workflows_team(world: World, browser_page: Page) -> None:
    page = browser_page
    run_id = await finished_run(world, "shipping/mapping-failure", {"order_id": "o-map", "amount": -5})
    await open_run(page, world, run_id)
    banner = page.locator("#failure")
    await banner.locator("#mapping-blame").wait_for()
    text = await banner.inner_text()
    assert "steps.charge.input" in text and "shipping/mapping-failure" in text
    assert await banner.locator('.failed-step[data-step="charge"]').get_attribute("data-team") == "shipping"
    assert "the step never reached its contract's team" in text
    assert (await banner.locator("b").first.inner_text()) == "Failed"
    await assert_readable_axis(page)
    await shot(page, "mapping-failure")


async def test_the_run_header_prints_no_stray_null(world: World, browser_page: Page) -> None:
    page = browser_page
    await open_run(page, world, world.failed_run_id)
    assert "null" not in (await page.inner_text(".run-head")).split()


async def test_a_retry_says_what_it_retries_and_marks_its_reused_steps(
    world: World, browser_page: Page
) -> None:
    page = browser_page
    async with world.coordinator.client(world.tokens["shipping"]) as client:
        retried = await client.coordinator.RetryRun(
            pb.RetryRunRequest(run_id=world.failed_run_id, request_id=str(uuid.uuid4()))
        )
    run_id = retried.run.run_id
    await world.wait_status(run_id, DONE, timeout=60)
    reused = {s.id for s in retried.run.steps if s.reused_from}
    assert reused, "the retry reused no step"
    await open_run(page, world, run_id)
    header = await page.inner_text("#retry-of")
    assert world.failed_run_id in header and f"{len(reused)} step outputs reused" in header
    for step in reused:
        node = page.locator(f'.node[data-step="{step}"]')
        assert await node.get_attribute("data-reused") == "1"
        assert "reused" in (await node.text_content() or "")
    for other in await page.eval_on_selector_all(".node", "els => els.map(e => e.dataset.step)"):
        if other not in reused:
            assert await page.locator(f'.node[data-step="{other}"]').get_attribute("data-reused") == "0"
    await shot(page, "retry")
