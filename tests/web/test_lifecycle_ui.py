"""Deprecation in the UI, against the real coordinator of the web tests' world: a run that pins a
deprecated version carries the warning on its run page (and in ``/api/v1/runs/ID``); the calling
team's notices list it, the owning team's notices say who still calls it and how often; the
contract page counts each consumer's runs. The JSON API and the pages in a real headless Chromium.

In the browser tests' xdist group: they share the one world (and its coordinator) with them. The
contract and workflow here have names of their own, so the other tests' pages do not change.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from tests.support.agent import Call, TestAgent
from tests.support.scenario import contract, wait_run
from tests.web.test_audit_page import signed_in
from tests.web.test_browser import shot, sign_in
from tests.web.world import World

pytestmark = [pytest.mark.asyncio(loop_scope="package"), pytest.mark.xdist_group("browser")]

Page = Any  # playwright.async_api.Page

FEE_1 = contract(
    "payments/legacy-fee", "1.0.0", output_props="{fee: {type: integer}}", output_required="[fee]"
)
FEE_2 = contract(
    "payments/legacy-fee", "2.0.0", output_props="{fee: {type: integer}}", output_required="[fee]"
)
FEE_CHECK = """\
workflow: shipping/fee-check
input: {type: object, required: [order_id], properties: {order_id: {type: string}}}
steps:
  fee:
    contract: payments/legacy-fee@^1
    input: {order_id: "${input.order_id}"}
output: {fee: "${steps.fee.output.fee}"}
"""
SUNSET = (datetime.date.today() + datetime.timedelta(days=200)).isoformat()
WARNING = f"payments/legacy-fee@1.0.0 is deprecated: sunset {SUNSET}, replacement payments/legacy-fee@2"


async def _deprecated_run(world: World) -> str:
    """Once per world: payments deprecates legacy-fee@1, shipping runs fee-check on it."""
    async with world.coordinator.client(world.tokens["shipping"]) as client:
        runs = await client.coordinator.ListRuns(pb.ListRunsRequest(workflow="shipping/fee-check"))
    done = [r for r in runs.runs if r.status == pb.RUN_STATUS_SUCCEEDED]
    if done:
        return done[0].run_id
    for text in (FEE_1, FEE_2):
        assert (await world.coordinator.register_contract(world.tokens["payments"], text)).registered
    assert (await world.coordinator.register_workflow(world.tokens["shipping"], FEE_CHECK)).registered
    async with world.coordinator.client(world.tokens["payments"]) as client:
        await client.coordinator.DeprecateContract(
            pb.DeprecateContractRequest(
                ref="payments/legacy-fee@1", sunset=SUNSET, replacement="payments/legacy-fee@2"
            )
        )

    async def fee(call: Call) -> dict[str, Any]:
        return {"fee": 3}

    agent = TestAgent(
        world.coordinator.address, world.tokens["payments"], "payments", {"payments/legacy-fee@1": fee}
    )
    await agent.start()
    world.agents.append(agent)  # stopped with the world
    run_id = await world.start_run("shipping", "shipping/fee-check", {"order_id": "fee-1"})
    async with world.coordinator.client(world.tokens["shipping"]) as client:
        assert (await wait_run(client, run_id)).status == pb.RUN_STATUS_SUCCEEDED
    return run_id


async def test_the_api_carries_the_warning_the_notices_and_the_callers(world: World) -> None:
    run_id = await _deprecated_run(world)
    async with signed_in(world, "shipping") as shipping:
        run = (await shipping.get(f"/api/v1/runs/{run_id}")).json()["run"]
        assert run["warnings"] == [WARNING]
        notices = (await shipping.get("/api/v1/notices")).json()["notices"]
        mine = [n for n in notices if n["contract"] == "payments/legacy-fee@1.0.0"]
        assert [(n["kind"], n["workflow"], n["step"], n["sunset"], n["replacement"]) for n in mine] == [
            ("deprecated", "shipping/fee-check", "fee", SUNSET, "payments/legacy-fee@2")
        ]
    async with signed_in(world, "payments") as payments:
        notices = (await payments.get("/api/v1/notices")).json()["notices"]
        callers = [
            n for n in notices if n["kind"] == "callers" and n["contract"] == "payments/legacy-fee@1.0.0"
        ]
        assert [(n["team"], n["workflow"], n["runs_last_30_days"]) for n in callers] == [
            ("shipping", "shipping/fee-check", 1)
        ]
        page = (await payments.get("/api/v1/contracts/payments/legacy-fee")).json()
        [v1] = [v for v in page["versions"] if v["version"] == "1.0.0"]
        assert [(c["workflow"], c["team"], c["runs_last_30_days"]) for c in v1["consumers"]] == [
            ("shipping/fee-check", "shipping", 1)
        ]
    async with signed_in(world, "warehouse") as warehouse:
        notices = (await warehouse.get("/api/v1/notices")).json()["notices"]
        assert [n for n in notices if "legacy-fee" in n["contract"]] == []  # not its concern
        refused = await warehouse.get("/api/v1/notices", params={"team": "shipping"})
        assert refused.status_code == 403, refused.text


async def test_the_run_page_and_the_notices_page_show_the_deprecation(
    world: World, browser_page: Page
) -> None:
    run_id = await _deprecated_run(world)
    page = browser_page
    await sign_in(page, world, "shipping", f"/runs/{run_id}")
    await page.wait_for_selector("#run-warnings")
    assert WARNING in await page.inner_text("#run-warnings")
    await shot(page, "run-deprecated")
    await page.goto(f"{world.ui_url}/notices")
    await page.wait_for_selector("#notices-deprecated")
    text = await page.inner_text("#notices-deprecated")
    assert "payments/legacy-fee@1.0.0" in text and SUNSET in text and "shipping/fee-check v1" in text
    await shot(page, "notices-caller")
    # The owner's view: who still calls it.
    await page.click("#signout")
    await page.wait_for_url("**/signin")
    await sign_in(page, world, "payments", "/notices")
    await page.wait_for_selector("#notices-callers")
    text = await page.inner_text("#notices-callers")
    assert "payments/legacy-fee@1.0.0" in text and "shipping" in text and "shipping/fee-check v1" in text
    await shot(page, "notices-owner")
