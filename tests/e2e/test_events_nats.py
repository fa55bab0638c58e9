"""Events over the real NATS JetStream server on 127.0.0.1:4222 (a stream of each test's own,
deleted at its end): publish -> trigger -> run; kill -9 of the coordinator twice while events
are published: exactly one triggered run per event (over NATS and with the in-process bus); two replicas on one database share the
consumer without starting a run twice; a NATS server that is not there at start is exit 3 with
one line; one that goes away while the coordinator runs (a nats-server of the test's own)
makes publishing fail with a retryable error, and triggers resume when it is back.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from contracts._wire.accord.common.v1 import common_pb2 as common_pb
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
from contracts.errors import UnreachableError
from coordinator.client import AsyncClient
from tests.e2e.test_coordinator_events import ON_PAID, ORDER_PAID, SHIP
from tests.support.agent import Call, TestAgent
from tests.support.coordinator import ACCORD, CoordinatorProcess, coordinator_env
from tests.support.events import NATS_URL, handled, nats_stream
from tests.support.postgres import TestDatabase
from tests.support.replicas import Replicas
from tests.support.scenario import wait_run
from tests.support.soak import sized
from tests.support.tls import Certificates
from tests.support.wait import wait_until


@pytest.fixture
def stream() -> Iterator[str]:
    with nats_stream() as name:
        yield name


def _nats_args(stream: str, url: str = NATS_URL) -> list[str]:
    return ["--events", url, "--events-stream", stream]


async def _world(proc: CoordinatorProcess) -> dict[str, str]:
    tokens = {team: await proc.create_team(team) for team in ("payments", "shipping")}
    await proc.register_contract(tokens["payments"], ORDER_PAID)
    await proc.register_contract(tokens["shipping"], SHIP)
    await proc.register_workflow(tokens["shipping"], ON_PAID)
    return tokens


async def _publish(client: AsyncClient, order: str, request_id: str = "") -> pb.Event:
    response = await client.coordinator.PublishEvent(
        pb.PublishEventRequest(
            contract="payments/order-paid@1",
            payload_json=json.dumps({"order_id": order, "amount_cents": 100}),
            request_id=request_id,
        )
    )
    return response.event


async def _stream_subjects(stream: str) -> list[str]:
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream, subjects_filter=">")
        return sorted((info.state.subjects or {}).keys())
    finally:
        await nc.close()


async def _runs_of(client: AsyncClient, workflow: str) -> list[pb.Run]:
    listed = await client.coordinator.ListRuns(
        pb.ListRunsRequest(workflow=workflow, page=common_pb.PageRequest(page_size=1000))
    )
    return list(listed.runs)


async def test_an_event_over_nats_triggers_a_run_that_runs_to_the_end(tmp_path: Path, stream: str) -> None:
    proc = CoordinatorProcess.start(tmp_path / "home", *_nats_args(stream))
    agent = None
    try:
        tokens = await _world(proc)

        async def ship(call: Call) -> dict[str, str]:
            return {"shipment_id": f"s-{call.input['order_id']}"}

        agent = TestAgent(proc.address, tokens["shipping"], "shipping", {"shipping/ship@1": ship})
        await agent.start()
        async with proc.client(tokens["payments"]) as client:
            event = await _publish(client, "o-1", request_id="r-1")
            assert event.published_unix_ms and not event.triggered_runs  # answered once stored
            done = await handled(client, event.event_id)
        [run_id] = done.triggered_runs
        assert done.delivered_unix_ms and done.handled_unix_ms >= done.delivered_unix_ms
        async with proc.client(tokens["shipping"]) as client:
            run = await wait_run(client, run_id)
        assert run.status == pb.RUN_STATUS_SUCCEEDED and run.idempotency_key == f"event:{event.event_id}"
        # The stream holds it under <stream>.<team>.<event>.v<major>.
        assert await _stream_subjects(stream) == [f"{stream}.payments.order-paid.v1"]
        # accord event show, for the triggered team: the runs, not the payload.
        shown = await proc.acli("event", "show", event.event_id, "--json", token=tokens["shipping"])
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["triggered_runs"] == [run_id]
        assert json.loads(shown.stdout)["payload"] is None
    finally:
        if agent is not None:
            await agent.stop()
        proc.kill9()


async def _stream_max_age(stream: str) -> float:
    nc = await nats.connect(NATS_URL)
    try:
        return float((await nc.jetstream().stream_info(stream)).config.max_age or 0)
    finally:
        await nc.close()


async def test_the_stream_keeps_events_as_long_as_runs_unless_events_retention_says(
    tmp_path: Path, stream: str
) -> None:
    """--events-retention defaults to the run retention (docs/production.md, "Events")."""
    for extra, kept_s in [
        (["--retention", "10d"], 10 * 86400),
        (["--retention", "10d", "--events-retention", "2d"], 2 * 86400),
        (["--retention", "off"], 0),  # JetStream's "no age limit"
    ]:
        proc = CoordinatorProcess.start(tmp_path / "home", *_nats_args(stream), *extra)
        try:
            assert await _stream_max_age(stream) == kept_s, extra
        finally:
            proc.stop()


@pytest.mark.parametrize("bus", ["nats", "in-process"])
@sized("events", short=100, soak=1000)
async def test_kill_9_twice_while_events_are_published_starts_one_run_per_event(
    tmp_path: Path, stream: str, events: int, bus: str
) -> None:
    """Over NATS: unacknowledged messages come again; in process: the sweep hands on what the
    killed process stored but had not delivered. Either way one run per event."""
    proc = CoordinatorProcess.start(tmp_path / "home", *(_nats_args(stream) if bus == "nats" else []))
    try:
        tokens = await _world(proc)
        published: list[str] = []
        progress = asyncio.Condition()

        async def publisher() -> None:
            # As a publisher does: each event with a request id made once, sent again (to the
            # coordinator when it is back) until answered.
            for n in range(events):
                while True:
                    try:
                        async with proc.client(tokens["payments"]) as client:
                            event = await _publish(client, f"o-{n}", request_id=f"pub-{n}")
                        break
                    except UnreachableError:
                        await asyncio.sleep(0.05)
                async with progress:
                    published.append(event.event_id)
                    progress.notify_all()

        task = asyncio.create_task(publisher())
        for share in (3, 6):  # kill -9 at 30% and at 60% of the events
            async with progress:
                await progress.wait_for(lambda share=share: len(published) >= events * share // 10)
            await asyncio.to_thread(proc.restart)
        await task
        assert len(set(published)) == events

        async with proc.client(tokens["shipping"]) as client:
            started = []
            for event_id in published:
                done = await handled(client, event_id)
                assert len(done.triggered_runs) == 1, done
                started.append(done.triggered_runs[0])
            runs = await _runs_of(client, "shipping/ship-paid-orders")
        assert len(set(started)) == events
        assert sorted(r.run_id for r in runs) == sorted(started), "a run started twice, or not recorded"
        assert sorted(r.idempotency_key for r in runs) == sorted(f"event:{e}" for e in published)
    finally:
        proc.kill9()


async def test_two_replicas_share_the_consumer_and_start_no_run_twice(
    pg_database: TestDatabase, tmp_path: Path, stream: str
) -> None:
    replicas = Replicas.start(tmp_path, pg_database.schema_url(), 2, *_nats_args(stream))
    try:
        tokens = await _world(replicas[0])
        published = []
        for n in range(40):  # through one replica, then the other
            async with replicas[n % 2].client(tokens["payments"]) as client:
                published.append((await _publish(client, f"o-{n}")).event_id)
        async with replicas.client(tokens["shipping"]) as client:
            started = [(await handled(client, event_id)).triggered_runs for event_id in published]
            runs = await _runs_of(client, "shipping/ship-paid-orders")
        assert all(len(r) == 1 for r in started), started
        assert sorted(r.run_id for r in runs) == sorted(r[0] for r in started)
    finally:
        replicas.kill_all()


def test_a_nats_server_that_is_not_there_at_start_is_one_line_and_exit_3(tmp_path: Path) -> None:
    port = _free_port()
    done = subprocess.run(
        [
            ACCORD,
            "coordinator",
            "start",
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "off",
            "--events",
            f"nats://127.0.0.1:{port}",
        ],
        env=coordinator_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"error: cannot connect to NATS at 127.0.0.1:{port} (--events): Connection refused"], (
        done.stderr
    )
    assert "Traceback" not in done.stderr and not (tmp_path / "home" / "coordinator.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--events", "http://x:4222"], "--events 'http://x:4222': give a NATS server as nats://HOST:PORT"),
        (["--events-stream", "a.b"], "--events-stream 'a.b': use letters, digits, '-' and '_' only"),
        (["--events-retention", "soon"], "--events-retention"),
    ],
)
def test_bad_events_flags_are_exit_2_naming_the_flag(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [ACCORD, "coordinator", "start", "--listen", "127.0.0.1:0", "--ui", "off", *args],
        env=coordinator_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OwnNatsServer:
    """A nats-server with JetStream of the test's own (so it can be stopped), on a fixed port."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.port = _free_port()
        self.store = root / "jetstream"
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server")
        assert binary, "nats-server is not installed"
        self.proc = subprocess.Popen(
            [binary, "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port), *self.extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def wait_serving(self) -> None:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        await wait_until(up, f"nats-server on {self.port}", 30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def test_nats_going_away_refuses_publishing_retryably_and_triggers_resume(tmp_path: Path) -> None:
    server = OwnNatsServer(tmp_path)
    server.start()
    proc = None
    try:
        await server.wait_serving()
        proc = CoordinatorProcess.start(tmp_path / "home", *_nats_args("ACCORD", server.url))
        tokens = await _world(proc)
        async with proc.client(tokens["payments"]) as client:
            first = await handled(client, (await _publish(client, "o-1")).event_id)
        assert len(first.triggered_runs) == 1

        server.stop()
        log_line = f"NATS at 127.0.0.1:{server.port} is unreachable"
        await wait_until(lambda: log_line in proc.log(), "the coordinator saw NATS go", 30)
        refused = await proc.acli(
            "event", "publish", "payments/order-paid@1", "--payload", '{"order_id": "o-2", "amount_cents": 1}',
            token=tokens["payments"],
        )  # fmt: skip
        assert refused.returncode == 3, refused.stderr
        assert f"NATS at 127.0.0.1:{server.port} is unreachable" in refused.stderr
        assert "nothing was stored: try again" in refused.stderr
        async with proc.client(tokens["payments"]) as client:
            listed = await client.coordinator.ListEvents(pb.ListEventsRequest())
        assert [e.event_id for e in listed.events] == [first.event_id]

        server.start()  # the same port and store: the stream and its consumer are still there
        await server.wait_serving()

        async def publish_when_back() -> pb.Event | None:
            try:
                async with proc.client(tokens["payments"]) as client:
                    return await _publish(client, "o-2", request_id="after")
            except UnreachableError:
                return None

        await wait_until(publish_when_back, "publishing accepted again", 60)
        async with proc.client(tokens["payments"]) as client:
            again = await _publish(client, "o-2", request_id="after")  # the same event
            done = await handled(client, again.event_id)
            listed = await client.coordinator.ListEvents(pb.ListEventsRequest())
        assert len(done.triggered_runs) == 1
        assert len(listed.events) == 2
    finally:
        if proc is not None:
            proc.kill9()
        server.stop()


async def test_events_over_tls_with_a_password_and_a_wrong_password_is_exit_3(tmp_path: Path) -> None:
    certs = Certificates.make(tmp_path / "tls")
    server = OwnNatsServer(
        tmp_path,
        "--tls", "--tlscert", str(certs.server_cert), "--tlskey", str(certs.server_key),
        "--user", "accord", "--pass", "s3cret-pw",
    )  # fmt: skip
    server.start()
    proc = None
    try:
        await server.wait_serving()
        trust = {"SSL_CERT_FILE": str(certs.ca)}  # tls:// trusts the system's CAs, or this bundle
        wrong = await asyncio.to_thread(
            subprocess.run,
            [ACCORD, "coordinator", "start", "--listen", "127.0.0.1:0", "--ui", "off",
             "--events", f"tls://accord:wrong-pw@127.0.0.1:{server.port}"],
            env=coordinator_env(tmp_path / "wrong", **trust),
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert wrong.returncode == 3, wrong.stderr
        assert (
            f"cannot connect to NATS at 127.0.0.1:{server.port} (--events): Authorization Violation"
            in wrong.stderr
        )
        assert "wrong-pw" not in wrong.stderr and "Traceback" not in wrong.stderr

        proc = CoordinatorProcess.start(
            tmp_path / "home",
            *_nats_args("ACCORD", f"tls://accord:s3cret-pw@127.0.0.1:{server.port}"),
            env=trust,
        )
        tokens = await _world(proc)
        async with proc.client(tokens["payments"]) as client:
            done = await handled(client, (await _publish(client, "o-tls")).event_id)
        assert len(done.triggered_runs) == 1
        assert "s3cret-pw" not in proc.log()
    finally:
        if proc is not None:
            proc.kill9()
        server.stop()
