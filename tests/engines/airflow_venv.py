"""The cached virtual environment of the real Airflow the ``@pytest.mark.airflow`` tests start,
and the migrated SQLite database every test session copies. Standard library only, so that it
also runs as a script under the system's ``python3`` before Accord's own venv exists:

    python3 tests/engines/airflow_venv.py     # build both unless cached (what `make test` starts early)

Airflow pins hundreds of packages; installing it into Accord's venv would let its pins decide
Accord's. So it lives in a venv of its own under ``$ACCORD_TEST_CACHE`` (default
``~/.cache/accord-test``) as ``airflow-<version>``: on a fresh machine building it takes a minute
or more (290 MB), which is why ``make test`` starts this script in the background while it
installs, lints and type-checks. Each step holds a file lock, so a test session that needs the
venv while the script still builds it waits for it instead of building it a second time, and a
half-built one (an interrupted build) is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

AIRFLOW_VERSION = "3.3.2"
USERNAME = "admin"
READY_MARKER = ".accord-ready"


def cache_root() -> Path:
    return Path(os.environ.get("ACCORD_TEST_CACHE") or Path.home() / ".cache" / "accord-test")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run_logged(cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 900) -> None:
    """Run ``cmd`` with its output appended to ``log``; raise with the log's tail if it fails."""
    with open(log, "ab") as out:
        result = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {result.returncode}; log {log}:\n{tail}")


def ensure_cached_venv(name: str, requirement: str) -> Path:
    """The venv ``name`` under ``cache_root()`` with ``requirement`` installed, built on first use
    (under a file lock: a session that needs it while another builds it waits) and reused after."""
    venv = cache_root() / name
    if (venv / READY_MARKER).exists():
        return venv
    with locked(cache_root() / f"{name}.lock"):
        if (venv / READY_MARKER).exists():
            return venv  # another session built it while we waited
        shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted session
        log = cache_root() / f"{name}-install.log"
        log.unlink(missing_ok=True)
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        started = time.monotonic()
        run_logged([base_python, "-m", "venv", str(venv)], log)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        run_logged([*pip, requirement], log)
        (venv / READY_MARKER).write_text(f"installed in {time.monotonic() - started:.0f}s\n")
    return venv


def ensure_airflow_venv(version: str = AIRFLOW_VERSION) -> Path:
    """The venv with ``apache-airflow==version``, built on first use and reused after."""
    return ensure_cached_venv(f"airflow-{version}", f"apache-airflow=={version}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def airflow_environment(home: Path, port: int, password_file: Path) -> dict[str, str]:
    """The environment of every Airflow process of one test Airflow in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OTEL_", "VIRTUAL_ENV"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            # The API server, the scheduler and the task runners must share the JWT secret.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            # Fast turnarounds: the defaults are tuned for production, not for tests.
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            # Each DAG file is parsed once, at start: the files never change during a session,
            # and every parse (a process importing Airflow, then a write to the SQLite database)
            # took CPU and the database's one write lock from the tests, every 5 s.
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3600",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            # A task's runner waits for a busy API server rather than giving up after 5 s: under
            # load the API server once took 38 s to answer a task's start, the runner's five
            # retries ran out, and the task failed before it began.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "120",
            # Nothing listens beyond loopback: the log servers are not started (--skip-serve-logs)
            # but their ports are pinned to free loopback ones anyway.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def ensure_db_template(venv: Path) -> Path:
    """A migrated, empty SQLite database of Airflow (migrating takes ~15 s), built once."""
    template = cache_root() / f"airflow-{AIRFLOW_VERSION}-db-template.sqlite"
    if template.exists():
        return template
    with locked(cache_root() / f"airflow-{AIRFLOW_VERSION}-db.lock"):
        if template.exists():
            return template
        with tempfile.TemporaryDirectory(prefix="accord-airflow-migrate-") as tmp:
            home = Path(tmp)
            env = airflow_environment(home, free_port(), home / "passwords.json")
            log = cache_root() / f"airflow-{AIRFLOW_VERSION}-migrate.log"
            log.unlink(missing_ok=True)
            run_logged([str(venv / "bin" / "airflow"), "db", "migrate"], log, env=env, timeout=600)
            shutil.copyfile(home / "airflow.db", template.with_suffix(".tmp"))
            os.replace(template.with_suffix(".tmp"), template)
    return template


def main() -> int:
    if os.environ.get("ACCORD_TEST_AIRFLOW") == "skip":
        print("ACCORD_TEST_AIRFLOW=skip: no Airflow venv built")
        return 0
    started = time.monotonic()
    venv = ensure_airflow_venv()
    template = ensure_db_template(venv)
    print(f"Airflow {AIRFLOW_VERSION}: {venv} and {template} ready after {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
