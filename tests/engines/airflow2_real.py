"""A real Apache Airflow 2 (``/api/v1``, HTTP Basic auth), as many teams still run, for the
``airflow`` adapter's ``api_version: 1``.

Like airflow_real.py (Airflow 3): its own cached virtual environment (airflow_venv.py, version
``AIRFLOW2_VERSION``), a fresh ``AIRFLOW_HOME`` per session with SQLite, and ``airflow webserver``
and ``airflow scheduler`` on 127.0.0.1 in one process group that the teardown kills. SQLite
allows only the SequentialExecutor: tasks run one at a time, which the small test DAGs allow.
The ``airflow2`` tests run in ``make soak`` (pytest -m soak): a second Airflow does not fit in
``make test``'s time.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.engines.airflow_real import RealAirflow, spawn_in_one_group, stop_group
from tests.engines.airflow_venv import USERNAME, ensure_airflow_venv, free_port, run_logged

AIRFLOW2_VERSION = "2.10.5"
DAGS2_DIR = Path(__file__).parent / "airflow2_dags"
DAG2_IDS = ["accord_echo", "accord_fail"]


def airflow2_environment(home: Path, port: int, venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OTEL_", "VIRTUAL_ENV"))}
    env.update(
        {
            # The SequentialExecutor runs each task as the command `airflow`, found on PATH.
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__AUTH_BACKENDS": "airflow.api.auth.backend.basic_auth",
            # The adapter reads XCom with deserialize=true on /api/v1 (docs/engines/airflow.md).
            "AIRFLOW__API__ENABLE_XCOM_DESERIALIZE_SUPPORT": "True",
            "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(port),
            "AIRFLOW__WEBSERVER__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__WEBSERVER__WORKERS": "1",
            "AIRFLOW__WEBSERVER__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "3600",
            "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "3600",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def _wait_ready2(af: RealAirflow, procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(DAG2_IDS)
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"an Airflow 2 process exited with {proc.returncode}")
        try:
            with httpx.Client(base_url=af.base_url, auth=(af.username, af.password), timeout=10) as client:
                health = client.get("/api/v1/health")
                scheduler_ok = health.status_code == 200 and (
                    health.json().get("scheduler", {}).get("status") == "healthy"
                )
                pending = [d for d in DAG2_IDS if client.get(f"/api/v1/dags/{d}").status_code != 200]
                if scheduler_ok and not pending:
                    return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(1)
    raise RuntimeError(f"Airflow 2 not ready after {timeout}s (DAGs not parsed: {pending})")


@contextlib.contextmanager
def running_airflow2(home: Path) -> Iterator[RealAirflow]:
    venv = ensure_airflow_venv(AIRFLOW2_VERSION)
    (home / "dags").mkdir(parents=True, exist_ok=True)
    for dag_file in DAGS2_DIR.glob("*.py"):
        shutil.copy(dag_file, home / "dags" / dag_file.name)
    port = free_port()
    env = airflow2_environment(home, port, venv)
    airflow = str(venv / "bin" / "airflow")
    # Hex, so the password never begins with "-": argparse would read "-sThq..." as an option
    # and `airflow users create` would fail one time in 64 (it did in CI).
    password = secrets.token_hex(12)
    run_logged([airflow, "db", "migrate"], home / "setup.log", env=env, timeout=600)
    run_logged(
        [airflow, "users", "create", "--username", USERNAME, f"--password={password}", "--role", "Admin",
         "--firstname", "Accord", "--lastname", "Test", "--email", "accord@example.invalid"],
        home / "setup.log", env=env, timeout=300,
    )  # fmt: skip
    commands = {
        "webserver": [airflow, "webserver", "--hostname", "127.0.0.1", "--port", str(port)],
        "scheduler": [airflow, "scheduler"],
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pgid = spawn_in_one_group(commands, home, env, procs)
        af = RealAirflow(f"http://127.0.0.1:{port}", USERNAME, password, home, venv, pgid)
        _wait_ready2(af, procs, timeout=300)
        yield af
    finally:
        stop_group(procs)


@pytest.fixture(scope="session")
def real_airflow2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealAirflow]:
    """A real Airflow 2 with the Airflow 2 test DAGs."""
    if os.environ.get("ACCORD_TEST_AIRFLOW") == "skip":
        pytest.skip("ACCORD_TEST_AIRFLOW=skip")
    home = tmp_path_factory.mktemp("airflow2-home")
    try:
        with running_airflow2(home) as af:
            yield af
    except RuntimeError as exc:
        logs = "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(home.glob("*.log"))
        )
        pytest.fail(f"could not start the real Airflow 2: {exc}\n{logs}", pytrace=False)
