"""Metrics and retention on the real coordinator process: /metrics scraped during a run shows what
that run produced; a database in use before retention keeps everything and start-up says so."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from importlib import resources
from pathlib import Path

import httpx
import pytest

from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import UnauthenticatedError
from coordinator.client import AsyncClient
from tests.support.agent import Call, TestAgent
from tests.support.coordinator import CoordinatorProcess
from tests.support.inprocess import CHARGE_ONCE
from tests.support.scenario import contract, start_run, wait_run
from tests.support.wait import wait_until

REFUND_ONCE = CHARGE_ONCE.replace("charge-once", "refund-once").replace(
    "payments/charge@", "payments/refund@"
)


def _samples(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in the exposition ``text``: their labels -> value."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{.*\}})?\s+(\S+)$", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def _value(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry every label of ``labels``."""
    total = 0.0
    for label_text, value in _samples(text, name).items():
        if all(f'{key}="{val}"' in label_text for key, val in labels.items()):
            total += value
    return total


@pytest.fixture
def metered(tmp_path: Path):
    proc = CoordinatorProcess.start(tmp_path / "home", "--metrics", "127.0.0.1:0")
    try:
        yield proc
    finally:
        proc.kill9()


async def test_metrics_scraped_during_a_run_show_what_that_run_did(metered: CoordinatorProcess) -> None:
    state = json.loads((metered.home / "coordinator.json").read_text())
    url = f"http://{state['metrics']}/metrics"
    token = await metered.create_team("payments")
    await metered.register_contract(token, contract("payments/charge"))
    await metered.register_workflow(token, CHARGE_ONCE)
    entered, release = asyncio.Event(), asyncio.Event()

    async def charge(call: Call) -> dict[str, str]:
        entered.set()
        await asyncio.wait_for(release.wait(), 30)
        return {"ref": "r-" + call.input["order_id"]}

    agent = TestAgent(metered.address, token, "payments", {"payments/charge@1": charge})
    await agent.start()
    try:
        async with httpx.AsyncClient() as http, metered.client(token) as client:

            async def scrape() -> str:
                response = await http.get(url)
                assert response.status_code == 200
                return response.text

            started = await start_run(client, "payments/charge-once", {"order_id": "o-1"})
            await asyncio.wait_for(entered.wait(), 30)
            during = await scrape()
            assert _value(during, "accord_runs_started_total", workflow="payments/charge-once") == 1
            assert _value(during, "accord_runs_finished_total") == 0
            assert _value(during, "accord_store_commit_duration_seconds_count", store="sqlite") > 0
            # The gauges are read every few seconds: the agent shows up at the next reading, and so
            # does a task no agent serves, waiting in its queue.
            await wait_until(
                lambda: _gauge_agents(http, url), "the agent counted in accord_agents_connected", within=30
            )
            await metered.register_contract(token, contract("payments/refund"))
            await metered.register_workflow(token, REFUND_ONCE)
            await start_run(client, "payments/refund-once", {"order_id": "o-2"})
            queued = await wait_until(
                lambda: _scrape_when(http, url, "accord_queue_depth"),
                "the waiting task in accord_queue_depth",
            )
            assert _value(queued, "accord_queue_depth", contract="payments/refund@1") == 1
            assert _value(queued, "accord_queue_depth", contract="payments/charge@1") == 0
            assert _value(queued, "accord_queue_oldest_age_seconds", contract="payments/refund@1") >= 0

            release.set()
            run = await wait_run(client, started.run.run_id)
            assert run.status == pb.RUN_STATUS_SUCCEEDED
            # Counted right after the commit that finished it (which a reader may see first).
            after = await wait_until(
                lambda: _scrape_when(http, url, "accord_runs_finished_total"), "the finished run counted"
            )
            assert (
                _value(
                    after, "accord_runs_finished_total", workflow="payments/charge-once", status="succeeded"
                )
                == 1
            )
            assert (
                _value(
                    after,
                    "accord_step_duration_seconds_count",
                    contract="payments/charge",
                    status="succeeded",
                )
                == 1
            )
            assert _value(after, "accord_step_failures_total") == 0
            # A request refused: counted by its reason; no label carries a run or agent id.
            async with AsyncClient(metered.address, token="not-a-token") as stranger:
                with pytest.raises(UnauthenticatedError):
                    await stranger.coordinator.ListRuns(pb.ListRunsRequest())
            refused = await scrape()
            assert _value(refused, "accord_requests_refused_total", reason="unauthenticated") >= 1
            assert started.run.run_id not in refused and agent.agent_id not in refused
            # Only the run that finished is counted as finished; the waiting one only as started.
            assert _value(refused, "accord_runs_started_total", workflow="payments/refund-once") == 1
            assert _value(refused, "accord_runs_finished_total", workflow="payments/refund-once") == 0
    finally:
        await agent.stop()


async def _scrape_when(http: httpx.AsyncClient, url: str, name: str) -> str | None:
    text = (await http.get(url)).text
    return text if _value(text, name) else None


async def _gauge_agents(http: httpx.AsyncClient, url: str) -> bool:
    text = (await http.get(url)).text
    return _value(text, "accord_agents_connected", team="payments") == 1


def test_metrics_on_a_port_in_use_given_explicitly_is_refused_at_start(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError) as refused:
            CoordinatorProcess.start(tmp_path / "home", "--metrics", f"127.0.0.1:{port}")
    assert "exited with 2" in str(refused.value)
    assert f"127.0.0.1:{port}" in str(refused.value) and "--metrics" in str(refused.value)


def test_a_database_in_use_before_retention_says_at_start_that_it_keeps_everything(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    db = home / "coordinator.db"
    conn = sqlite3.connect(db, isolation_level=None)
    files = sorted(
        (int(f.name.split("_", 1)[0]), f.name, f.read_text())
        for f in resources.files("coordinator.store.migrations").iterdir()
        if f.name.endswith(".sql")
    )
    [retention] = [number for number, name, _ in files if name.endswith("_retention.sql")]
    for number, _, sql in files:
        if number < retention:
            conn.executescript("BEGIN;\n" + sql + f"\nPRAGMA user_version = {number};\nCOMMIT;")
    # As the first start left it: the admin token's hash (of a token the test does not need).
    conn.execute("INSERT INTO settings (key, value) VALUES ('admin_token_hash', 'x')")
    conn.close()
    proc = CoordinatorProcess.start(home)
    try:
        assert "retention is off" in proc.log() and "--retention" in proc.log()
    finally:
        proc.kill9()
    # Told, it says nothing of the kind.
    proc = CoordinatorProcess.start(home, "--retention", "30d")
    try:
        assert "retention is off" not in proc.log()
    finally:
        proc.kill9()
