"""Cancelling through the JSON API is the owner's: another team gets 403 on a LIVE run (not the
409 an already-finished run would give), the run keeps running, and the owner can still cancel."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
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


async def _held_run(world: World) -> pb.Run:
    """A shipping run whose hold step is running on the warehouse's agent."""
    run_id = await world.start_run("shipping", "shipping/hold-and-wait", {"order_id": "o-live-scope"})
    deadline = time.monotonic() + 30
    async with world.coordinator.client() as admin:
        while True:
            run = (await admin.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
            if run.status == pb.RUN_STATUS_RUNNING and any(
                a.status == pb.ATTEMPT_STATUS_RUNNING for s in run.steps for a in s.attempts
            ):
                return run
            assert time.monotonic() < deadline, f"the hold step never started: {run}"
            await asyncio.sleep(0.05)


async def test_another_team_gets_403_cancelling_a_live_run_and_the_owner_can(world: World) -> None:
    run = await _held_run(world)
    run_id = run.run_id

    # warehouse takes part in the run (its hold step) and may see it, but not cancel it;
    # payments takes no part in it at all.
    for team in ("warehouse", "payments"):
        async with signed_in(world, team) as (client, csrf):
            if team == "warehouse":
                shown = (await client.get(f"/api/v1/runs/{run_id}")).json()
                assert shown["run"]["status"] == "running"
                assert shown["permissions"]["cancel"] is False
            cancel = await client.post(
                f"/api/v1/runs/{run_id}/cancel", json={}, headers={"X-Accord-CSRF": csrf}
            )
            assert cancel.status_code == 403, (team, cancel.status_code, cancel.text)
            error = cancel.json()["error"]
            assert error["code"] == "permission_denied", (team, error)
            assert "shipping" in error["message"], (team, error)  # names the owner

    # Refused means untouched: the run is still running, its attempt not asked to stop.
    async with world.coordinator.client() as admin:
        still = (await admin.coordinator.GetRun(pb.GetRunRequest(run_id=run_id))).run
    assert still.status == pb.RUN_STATUS_RUNNING, still

    # The owner can cancel the same live run through the same endpoint.
    async with signed_in(world, "shipping") as (client, csrf):
        shown = (await client.get(f"/api/v1/runs/{run_id}")).json()
        assert shown["permissions"]["cancel"] is True
        cancel = await client.post(
            f"/api/v1/runs/{run_id}/cancel",
            json={"reason": "scoping test"},
            headers={"X-Accord-CSRF": csrf},
        )
        assert cancel.status_code == 200, cancel.text
    cancelled = await world.wait_status(run_id, {pb.RUN_STATUS_CANCELLED}, timeout=20)
    assert cancelled.status == pb.RUN_STATUS_CANCELLED


async def test_a_token_that_cannot_be_one_is_refused_not_a_500(world: World) -> None:
    """Sign-in with a token gRPC metadata cannot carry (a lone surrogate, control characters,
    non-ASCII; found by the UI fuzz test): 401 like any unknown token, never a 500."""
    async with httpx.AsyncClient(base_url=world.ui_url, timeout=20) as client:
        for token in ("\udc3c-token", "tok\x0een", "tøken", "x" * 5000):
            response = await client.post(
                "/api/v1/session",
                content=json.dumps({"token": token}),
                headers={"Origin": world.ui_url, "Content-Type": "application/json"},
            )
            assert response.status_code == 401, (token[:20], response.status_code, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
