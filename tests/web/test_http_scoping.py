"""The JSON API is scoped by the coordinator's own rules: plain HTTP against the real thing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from tests.web.world import World

pytestmark = pytest.mark.asyncio(loop_scope="package")


@asynccontextmanager
async def signed_in(world: World, team: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(base_url=world.ui_url, timeout=20) as client:
        response = await client.post(
            "/api/v1/session", json={"token": world.tokens[team]}, headers={"Origin": world.ui_url}
        )
        assert response.status_code == 200, response.text
        yield client, response.json()["csrf"]


async def test_another_teams_payloads_are_hidden_and_sensitive_fields_masked(world: World) -> None:
    async with signed_in(world, "payments") as (client, _):
        body = (await client.get(f"/api/v1/runs/{world.failed_run_id}")).json()
        steps = {s["id"]: s for s in body["run"]["steps"]}
        assert steps["charge"]["payload_hidden"] is False
        assert steps["charge"]["input"]["card_token"] == "[redacted]"
        assert steps["reserve"]["payload_hidden"] is True and steps["reserve"]["output"] is None
        assert steps["ship"]["payload_hidden"] is True and steps["ship"]["input"] is None
        assert body["run"]["payload_hidden"] is True and body["run"]["input"] is None
        assert body["permissions"] == {"cancel": False, "rerun": False, "answer": []}
        trace = (await client.get(f"/api/v1/runs/{world.failed_run_id}/trace")).json()
        others = [s for s in trace["spans"] if s["team"] not in ("", "payments")]
        assert others and all(s["redacted"] and "accord.agent_id" not in s["attributes"] for s in others)
    async with signed_in(world, "shipping") as (client, _):
        body = (await client.get(f"/api/v1/runs/{world.failed_run_id}")).json()
        assert body["run"]["input"]["order_id"] == "o-1"
        # The owner sees its run input, but not the sensitive value it handed to payments.
        assert body["run"]["input"]["card_token"] == "[redacted]"
        assert "tok_visa_4242" not in str(body)
        assert body["permissions"]["rerun"] is True


async def test_a_team_cannot_cancel_or_rerun_another_teams_run(world: World) -> None:
    async with signed_in(world, "warehouse") as (client, csrf):
        cancel = await client.post(
            f"/api/v1/runs/{world.failed_run_id}/cancel", json={}, headers={"X-Accord-CSRF": csrf}
        )
        assert cancel.status_code in (403, 409), cancel.text
        rerun = await client.post(
            f"/api/v1/runs/{world.failed_run_id}/rerun", json={}, headers={"X-Accord-CSRF": csrf}
        )
        assert rerun.status_code == 403 and rerun.json()["error"]["code"] == "permission_denied"


async def test_rerun_starts_a_new_run_with_the_same_input(world: World) -> None:
    async with signed_in(world, "shipping") as (client, csrf):
        response = await client.post(
            f"/api/v1/runs/{world.failed_run_id}/rerun",
            json={"request_id": "rerun-1"},
            headers={"X-Accord-CSRF": csrf},
        )
        assert response.status_code == 201, response.text
        new_id = response.json()["run"]["run_id"]
        assert new_id != world.failed_run_id
    async with world.coordinator.client() as admin:
        from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb

        old = (await admin.coordinator.GetRun(pb.GetRunRequest(run_id=world.failed_run_id))).run
        new = (await admin.coordinator.GetRun(pb.GetRunRequest(run_id=new_id))).run
        assert new.input_json == old.input_json and "tok_visa_4242" in new.input_json


async def test_run_list_filters_and_team_scoping(world: World) -> None:
    async with signed_in(world, "shipping") as (client, _):
        failed = (
            await client.get(
                "/api/v1/runs", params={"status": "failed", "workflow": "shipping/order-to-cash"}
            )
        ).json()
        assert world.failed_run_id in [r["run_id"] for r in failed["runs"]]
        by_id = (await client.get("/api/v1/runs", params={"q": world.failed_run_id})).json()["runs"]
        assert [r["run_id"] for r in by_id] == [world.failed_run_id]
        later = (await client.get("/api/v1/runs", params={"after": "2100-01-01"})).json()["runs"]
        assert later == []
    async with signed_in(world, "payments") as (client, _):
        runs = (await client.get("/api/v1/runs")).json()["runs"]
        # payments is involved in order-to-cash (charge) but not in hold-and-wait.
        assert all(r["workflow"] != "shipping/hold-and-wait" for r in runs)


async def test_contracts_and_team_graph_through_the_api(world: World) -> None:
    async with signed_in(world, "warehouse") as (client, _):
        catalog = (await client.get("/api/v1/contracts")).json()
        teams = {t["team"]: t for t in catalog["teams"]}
        charge = next(c for c in teams["payments"]["contracts"] if c["name"] == "payments/charge-card")
        assert [v["version"] for v in charge["versions"]] == ["2.0.0", "1.1.0", "1.0.0"]
        detail = (await client.get("/api/v1/contracts/payments/charge-card")).json()
        v11 = next(v for v in detail["versions"] if v["version"] == "1.1.0")
        assert {c["workflow"] for c in v11["consumers"]} == {
            "shipping/order-to-cash",
            "shipping/charge-and-reserve",
            "shipping/hold-then-charge",
            "shipping/mapping-failure",
        }
        diff = (
            await client.get(
                "/api/v1/contracts/diff",
                params={"old": "payments/charge-card@1.1.0", "new": "payments/charge-card@2.0.0"},
            )
        ).json()
        assert diff["breaking"] is True and diff["same_major"] is False and diff["findings"]
        assert (await client.get("/api/v1/contracts/diff")).status_code == 400
        graph = (await client.get("/api/v1/teams/graph")).json()
        assert {(e["from"], e["to"]) for e in graph["edges"]} >= {
            ("shipping", "payments"),
            ("shipping", "warehouse"),
        }
