"""A real Prefect 3 server, and a ``flow.serve()`` runner of the test flows, for the
``@pytest.mark.prefect`` tests.

The server is installed once into a venv of its own (prefect_venv.py; ``make test`` starts
building it at once). Each test module gets a fresh ``PREFECT_HOME`` in a tmp dir (SQLite), and
runs ``prefect server start`` on 127.0.0.1 (on a copy of the cached migrated database) and
``serve_flows.py`` (the runner that creates the ``accord`` deployments and runs their flow runs;
it starts at once, importing Prefect while the server starts, and waits for the API) in one
process group of their own, which the teardown kills as a whole. Under pytest-xdist the module's tests run on one worker
(``xdist_group("prefect")``), so one server serves them all.

Set ``ACCORD_TEST_PREFECT=skip`` to skip these tests on a machine that cannot reach PyPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.engines.airflow_real import spawn_in_one_group, stop_group
from tests.engines.airflow_venv import free_port
from tests.engines.prefect_venv import ensure_db_template, ensure_prefect_venv

FLOWS_DIR = Path(__file__).parent / "prefect_flows"
DEPLOYMENTS = ["accord-echo", "accord-fail", "accord-slow", "charge-card"]


@dataclass
class RealPrefect:
    """A running Prefect server: where its API answers."""

    api_url: str
    auth_string: str  # the server's PREFECT_SERVER_API_AUTH_STRING (HTTP Basic "user:password")
    home: Path
    pgid: int

    def binding(self, deployment: str, **extra: object) -> dict[str, object]:
        """A ``prefect`` engine ``with:`` mapping for one of the served flows."""
        config: dict[str, object] = {
            "api_url": self.api_url,
            "deployment": f"{deployment}/accord",
            "auth_string": self.auth_string,
            "input_parameter": "payload",
            "poll_interval": "0.3s",
            "max_poll_interval": "1s",
            "timeout": "60s",
        }
        config.update(extra)
        return config

    def client(self) -> httpx.AsyncClient:
        """A client of the REST API, logged in, for test set-up and checks. Like Prefect's own
        client (and the ``prefect`` engine), it sends a call again on 502/503/504: a Prefect
        server on SQLite answers 503 while its database is locked, which a loaded machine sees
        (the calls made here create or read by name: sending one again is safe)."""
        user, password = self.auth_string.split(":", 1)
        return httpx.AsyncClient(
            base_url=self.api_url, auth=(user, password), timeout=60, transport=_RetryingTransport()
        )

    def logs(self) -> str:
        parts = []
        for name in ("server", "serve"):
            path = self.home / f"{name}.log"
            if path.exists():
                parts.append(f"--- prefect {name} ---\n{path.read_text(errors='replace')[-6000:]}")
        return "\n".join(parts)


class _RetryingTransport(httpx.AsyncBaseTransport):
    """httpx's transport, a call answered 502/503/504 sent again with backoff for up to ~30 s."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        delay, deadline = 0.2, time.monotonic() + 30
        while True:
            response = await self._inner.handle_async_request(request)
            if response.status_code not in (502, 503, 504) or time.monotonic() > deadline:
                return response
            await response.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3.0)

    async def aclose(self) -> None:
        await self._inner.aclose()


def prefect_environment(home: Path, api_url: str, auth_string: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OTEL_", "VIRTUAL_ENV"))}
    env.update(
        {
            "HOME": str(home),
            "PREFECT_HOME": str(home / "prefect-home"),
            "PREFECT_API_URL": api_url,
            # Basic auth on the server; its runner and flows log in with the same string.
            "PREFECT_SERVER_API_AUTH_STRING": auth_string,
            "PREFECT_API_AUTH_STRING": auth_string,
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            # Services the tests do not use: each is a loop taking CPU and SQLite's write lock.
            "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
            "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
            # The runner looks for new and cancelling runs every second (default 10 s).
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
            # The flows' logs stay in serve.log rather than being written to SQLite, and the
            # server logs why it answered 503 (a locked database) if it does.
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
            "PREFECT_API_LOG_RETRYABLE_ERRORS": "true",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def _wait_ready(pf: RealPrefect, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(DEPLOYMENTS)
    user, password = pf.auth_string.split(":", 1)
    with httpx.Client(base_url=pf.api_url, auth=(user, password), timeout=5) as client:
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a Prefect process exited with {proc.returncode}:\n{pf.logs()}")
            try:
                if client.get("/health").status_code == 200:
                    pending = [
                        d for d in pending if client.get(f"/deployments/name/{d}/accord").status_code != 200
                    ]
                    if not pending:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
    raise RuntimeError(f"Prefect not ready after {timeout}s (deployments missing: {pending}):\n{pf.logs()}")


@contextlib.contextmanager
def running_prefect(home: Path) -> Iterator[RealPrefect]:
    venv = ensure_prefect_venv()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ensure_db_template(venv), home / "prefect.db")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    auth_string = f"accord:{secrets.token_hex(12)}"
    env = prefect_environment(home, api_url, auth_string)
    prefect = str(venv / "bin" / "prefect")
    commands = {
        "server": [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        "serve": [str(venv / "bin" / "python"), str(FLOWS_DIR / "serve_flows.py")],
    }
    procs: list[subprocess.Popen[bytes]] = []
    pf = RealPrefect(api_url, auth_string, home, 0)
    try:
        pf.pgid = spawn_in_one_group(commands, home, env, procs)
        _wait_ready(pf, procs, timeout=240)
        yield pf
    finally:
        stop_group(procs, grace=2.0)  # nothing to save: a tmp dir


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "prefect"


@pytest.fixture(scope="module")
def real_prefect(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealPrefect]:
    """A real Prefect 3 server with the test flows and the prefect-team example's flow served.
    When a test of the module failed, the server's and the runner's logs are kept in
    test-artifacts/prefect/ (git-ignored): the tmp dir goes a few sessions later."""
    if os.environ.get("ACCORD_TEST_PREFECT") == "skip":
        pytest.skip("ACCORD_TEST_PREFECT=skip")
    home = tmp_path_factory.mktemp("prefect-home")
    failed_before = request.session.testsfailed
    try:
        with running_prefect(home) as pf:
            yield pf
            if request.session.testsfailed > failed_before:
                kept = ARTIFACTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{home.name}"
                kept.mkdir(parents=True, exist_ok=True)
                for name in ("server.log", "serve.log"):
                    if (home / name).exists():
                        shutil.copyfile(home / name, kept / name)
    except RuntimeError as exc:
        pytest.fail(f"could not start the real Prefect: {exc}", pytrace=False)
