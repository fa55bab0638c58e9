"""Metrics and retention on the real coordinator process: /metrics scraped during a run shows what
that run produced; a database in use before retention keeps everything and start-up says so."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
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
            # gRPC sends an aborted call's status before the server's handler unwinds, and the
            # edge counts the refusal as it unwinds: the client may see it a moment before a scrape.
            refused = await wait_until(
                lambda: _scrape_when(http, url, "accord_requests_refused_total", reason="unauthenticated"),
                "the refused request counted",
            )
            assert started.run.run_id not in refused and agent.agent_id not in refused
            # Only the run that finished is counted as finished; the waiting one only as started.
            assert _value(refused, "accord_runs_started_total", workflow="payments/refund-once") == 1
            assert _value(refused, "accord_runs_finished_total", workflow="payments/refund-once") == 0
    finally:
        await agent.stop()


async def _scrape_when(http: httpx.AsyncClient, url: str, name: str, **labels: str) -> str | None:
    text = (await http.get(url)).text
    return text if _value(text, name, **labels) else None


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


async def test_an_event_the_bus_has_not_taken_shows_in_the_event_lag_gauges_until_it_does(
    tmp_path: Path,
) -> None:
    """An event stored and not handed to the bus (its NATS server gone, as when a coordinator
    dies between storing and handing on) is counted in accord_events_undelivered, with its age in
    accord_event_lag_seconds, until the bus takes it."""
    from coordinator.store import codec
    from coordinator.store.records import EventRecord
    from tests.e2e.test_events_nats import OwnNatsServer, _nats_args, _world
    from tests.support.events import handled

    server = OwnNatsServer(tmp_path)
    server.start()
    proc = None
    try:
        await server.wait_serving()
        proc = CoordinatorProcess.start(
            tmp_path / "home", "--metrics", "127.0.0.1:0", *_nats_args("ACCORD", server.url)
        )
        url = f"http://{json.loads((proc.home / 'coordinator.json').read_text())['metrics']}/metrics"
        tokens = await _world(proc)
        server.stop()
        await wait_until(
            lambda: f"NATS at 127.0.0.1:{server.port} is unreachable" in proc.log(),
            "the coordinator saw NATS go",
        )
        # Stored a minute ago and never handed on.
        stranded = EventRecord(
            event_id="evt-stranded",
            contract="payments/order-paid",
            contract_version="1.0.0",
            team="payments",
            payload={"order_id": "o-9", "amount_cents": 100},
            published_ms=int(time.time() * 1000) - 60_000,
        )
        row = codec.event_to_row(stranded)
        with sqlite3.connect(proc.db, timeout=30) as conn:
            conn.execute(
                f"INSERT INTO events ({', '.join(codec.EVENT_COLUMNS)}) VALUES ({', '.join('?' for _ in row)})",
                row,
            )

        async with httpx.AsyncClient() as http:

            async def lag() -> str | None:
                text = (await http.get(url)).text
                return (
                    text
                    if _value(text, "accord_events_undelivered", contract="payments/order-paid")
                    else None
                )

            waiting = await wait_until(lag, "the stranded event in accord_events_undelivered")
            assert _value(waiting, "accord_events_undelivered", contract="payments/order-paid") == 1
            assert _value(waiting, "accord_event_lag_seconds", contract="payments/order-paid") >= 60

            server.start()  # the bus is back: the sweep hands the event on and its trigger runs
            await server.wait_serving()
            async with proc.client(tokens["payments"]) as client:
                done = await handled(client, "evt-stranded")
            assert len(done.triggered_runs) == 1

            async def caught_up() -> str | None:
                text = (await http.get(url)).text
                undelivered = _value(text, "accord_events_undelivered", contract="payments/order-paid")
                return text if "accord_events_undelivered" in text and not undelivered else None

            after = await wait_until(caught_up, "accord_events_undelivered back to nothing")
            assert _value(after, "accord_event_lag_seconds", contract="payments/order-paid") == 0
    finally:
        if proc is not None:
            proc.kill9()
        server.stop()


async def test_metrics_are_exported_by_otlp_to_the_collector_the_otel_variables_name(tmp_path: Path) -> None:
    from tests.telemetry.otlp_collector import OtlpMetricsCollector

    collector = OtlpMetricsCollector()
    address = await collector.start()
    env = {
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://{address}",
        "OTEL_EXPORTER_OTLP_METRICS_INSECURE": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    proc = CoordinatorProcess.start(tmp_path / "home", "--metrics", "off", env=env)
    try:
        token = await proc.create_team("payments")
        await proc.register_contract(token, contract("payments/charge"))
        await proc.register_workflow(token, CHARGE_ONCE)

        async def charge(call: Call) -> dict[str, str]:
            return {"ref": "r-" + call.input["order_id"]}

        agent = TestAgent(proc.address, token, "payments", {"payments/charge@1": charge})
        await agent.start()
        try:
            async with proc.client(token) as client:
                started = await start_run(client, "payments/charge-once", {"order_id": "o-1"})
                assert (await wait_run(client, started.run.run_id)).status == pb.RUN_STATUS_SUCCEEDED
        finally:
            await agent.stop()

        def exported(name: str, **labels: str) -> float:
            return sum(
                v for attrs, v in collector.points(name) if all(attrs.get(k) == x for k, x in labels.items())
            )

        try:
            await wait_until(
                lambda: (
                    exported("accord.runs.finished", workflow="payments/charge-once", status="succeeded") == 1
                ),
                "the finished run exported to the OTLP collector",
            )
        except AssertionError as missing:
            # What arrived and what the coordinator said of its exports (the exporter logs its
            # failures), so that a failure on a loaded machine can be read after the fact.
            raise AssertionError(
                f"{missing}: {len(collector.requests)} exports arrived; runs.finished there: "
                f"{collector.points('accord.runs.finished')}; the coordinator's log:\n{proc.log()[-4000:]}"
            ) from None
        assert exported("accord.runs.started", workflow="payments/charge-once") == 1
        assert exported("accord.step.duration", contract="payments/charge", status="succeeded") == 1
        assert exported("accord.store.commit.duration", store="sqlite") > 0
        names = {
            m.name
            for r in collector.requests
            for rm in r.resource_metrics
            for s in rm.scope_metrics
            for m in s.metrics
        }
        assert {"accord.runs.started", "accord.runs.finished", "accord.step.duration"} <= names
        # Labels are bounded there too: no run id.
        assert started.run.run_id not in str(collector.requests)
    finally:
        proc.kill9()
        await collector.stop()
