"""The UI's re-run starts the new run from the run's STORED input, not from the copy it shows:
viewers get sensitive input fields as "[redacted]", and a re-run must not charge that."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from coordinator.store.sqlite import SqliteStore
from coordinator.web import SessionStore, create_app, serve_ui
from tests.web.fake_source import FakeSource

RAW = {"order_id": "o-1", "amount_cents": 1299, "card_token": "tok_visa_4242"}


class RedactingSource(FakeSource):
    """As the coordinator does for a viewer: the run's card token comes back redacted."""

    async def get_run(self, token: str, run_id: str) -> Any:
        run = copy.deepcopy(await super().get_run(token, run_id))
        if isinstance(run.get("input"), dict) and "card_token" in run["input"]:
            run["input"]["card_token"] = "[redacted]"
        return run


@pytest.fixture
async def served(ui_store: SqliteStore) -> AsyncIterator[tuple[str, RedactingSource]]:
    source = RedactingSource()
    source.runs["run-failed-1"]["input"] = dict(RAW)
    server = await serve_ui(create_app(source, sessions=SessionStore(ui_store)), "127.0.0.1", 0)
    try:
        yield server.url, source
    finally:
        await server.stop()


async def test_rerun_copies_the_stored_input_not_the_redacted_view(
    served: tuple[str, RedactingSource],
) -> None:
    url, source = served
    async with httpx.AsyncClient(base_url=url) as client:
        session = await client.post(
            "/api/v1/session", json={"token": "tok-shipping"}, headers={"Origin": url}
        )
        assert session.status_code == 200, session.text
        shown = (await client.get("/api/v1/runs/run-failed-1")).json()["run"]["input"]
        assert shown["card_token"] == "[redacted]"
        response = await client.post(
            "/api/v1/runs/run-failed-1/rerun",
            json={"request_id": "r-1"},
            headers={"X-Accord-CSRF": session.json()["csrf"]},
        )
        assert response.status_code == 201, response.text
    new_id = response.json()["run"]["run_id"]
    assert source.runs[new_id]["input"] == RAW
