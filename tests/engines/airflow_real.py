"""A real Apache Airflow for the test suite, in a virtual environment of its own.

Airflow pins hundreds of packages; installing it into Accord's venv would let its pins decide
Accord's. So it lives in a cached venv (``$ACCORD_TEST_CACHE`` or ``~/.cache/accord-test``, as
``airflow-<version>``), built once (about 35 s, 290 MB) under a file lock so parallel sessions
share it. Each test session gets a fresh ``AIRFLOW_HOME`` in a tmp dir (SQLite; the migrated
database is cached as a template too), with the simple auth manager and a known password, and
runs ``airflow api-server``, ``airflow scheduler --skip-serve-logs`` and ``airflow
dag-processor`` as separate processes on 127.0.0.1 in one process group of their own, which the
teardown kills as a whole. (``airflow standalone`` is avoided: it opens a log server on all
interfaces.)

Set ``ACCORD_TEST_AIRFLOW=skip`` to skip the ``@pytest.mark.airflow`` tests on a machine that
cannot reach PyPI; by default they run (they are part of ``make test`` and CI).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

AIRFLOW_VERSION = "3.3.2"
DAGS_DIR = Path(__file__).parent / "airflow_dags"
EXAMPLE_DAGS_DIR = Path(__file__).resolve().parents[2] / "examples" / "airflow-team" / "dags"
USERNAME = "admin"
READY_MARKER = ".accord-ready"


def cache_root() -> Path:
    return Path(os.environ.get("ACCORD_TEST_CACHE") or Path.home() / ".cache" / "accord-test")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 900) -> None:
    with open(log, "ab") as out:
        result = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=False
        )
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {result.returncode}; log {log}:\n{tail}")


def ensure_airflow_venv(version: str = AIRFLOW_VERSION) -> Path:
    """The venv with ``apache-airflow==version``, built on first use and reused after."""
    venv = cache_root() / f"airflow-{version}"
    if (venv / READY_MARKER).exists():
        return venv
    with _locked(cache_root() / f"airflow-{version}.lock"):
        if (venv / READY_MARKER).exists():
            return venv  # another session built it while we waited
        shutil.rmtree(venv, ignore_errors=True)  # a half-built one from an interrupted session
        log = cache_root() / f"airflow-{version}-install.log"
        log.unlink(missing_ok=True)
        base_python = getattr(sys, "_base_executable", None) or sys.executable
        started = time.monotonic()
        _run([base_python, "-m", "venv", str(venv)], log)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        _run([*pip, f"apache-airflow=={version}"], log)
        (venv / READY_MARKER).write_text(f"installed in {time.monotonic() - started:.0f}s\n")
    return venv


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RealAirflow:
    """A running Airflow: where it answers and how to log in."""

    base_url: str
    username: str
    password: str
    home: Path
    venv: Path
    pgid: int

    def binding(self, dag_id: str, **extra: object) -> dict[str, object]:
        """An ``airflow`` engine ``with:`` mapping for one of the test DAGs."""
        config: dict[str, object] = {
            "base_url": self.base_url,
            "dag_id": dag_id,
            "username": self.username,
            "password": self.password,
            "output": {"task_id": "finalize"},
            "poll_interval": "0.5s",
            "max_poll_interval": "2s",
            # SQLite-backed Airflow can stall an API call for seconds while it starts a task.
            "timeout": "60s",
        }
        config.update(extra)
        return config

    @contextlib.contextmanager
    def api(self) -> Iterator[httpx.Client]:
        """A logged-in client of the REST API (``/api/v2/...``), for test set-up and checks."""
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            answer = client.post("/auth/token", json={"username": self.username, "password": self.password})
            answer.raise_for_status()
            client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
            yield client

    def set_paused(self, dag_id: str, paused: bool) -> None:
        with self.api() as client:
            client.patch(
                f"/api/v2/dags/{dag_id}", params={"update_mask": "is_paused"}, json={"is_paused": paused}
            ).raise_for_status()

    def logs(self) -> str:
        """The tail of every process's log, for a failing test's report."""
        parts = []
        for name in ("api-server", "scheduler", "dag-processor"):
            path = self.home / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)


def _environment(home: Path, port: int, password_file: Path) -> dict[str, str]:
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
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            # Nothing listens beyond loopback: the log servers are not started (--skip-serve-logs)
            # but their ports are pinned to free loopback ones anyway.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def _migrated_db(venv: Path, env: dict[str, str], home: Path) -> None:
    """Copy a cached, migrated SQLite database into ``home`` (migrating takes ~15 s)."""
    template = cache_root() / f"airflow-{AIRFLOW_VERSION}-db-template.sqlite"
    with _locked(cache_root() / f"airflow-{AIRFLOW_VERSION}-db.lock"):
        if not template.exists():
            _run([str(venv / "bin" / "airflow"), "db", "migrate"], home / "migrate.log", env=env, timeout=600)
            shutil.copyfile(home / "airflow.db", template.with_suffix(".tmp"))
            os.replace(template.with_suffix(".tmp"), template)
            return
    shutil.copyfile(template, home / "airflow.db")


def _process_table() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, process group) of every live (not zombie) process, from /proc."""
    table: dict[int, tuple[int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] == "Z":
            continue
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    return table


def _group_and_descendants(pgid: int) -> set[int]:
    """Every process of the group, and every descendant of one: Airflow's task supervisor
    starts each task in a process group of its own, which a kill of our group would miss."""
    table = _process_table()
    found = {pid for pid, (_, group) in table.items() if group == pgid}
    while True:
        more = {pid for pid, (parent, _) in table.items() if parent in found} - found
        if not more:
            return found
        found |= more


def _kill_group(pgid: int, grace: float = 5.0) -> None:
    """SIGTERM the group and everything it spawned; SIGKILL what is left after ``grace``."""
    targets = _group_and_descendants(pgid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            table = _process_table()
            targets = {pid for pid in targets if pid in table}
            if not targets and not any(group == pgid for _, group in table.values()):
                return
            time.sleep(0.1)


def _wait_ready(
    af: RealAirflow, procs: list[subprocess.Popen[bytes]], dag_ids: list[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    token = None
    pending = list(dag_ids)
    with httpx.Client(base_url=af.base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"an Airflow process exited with {proc.returncode}:\n{af.logs()}")
            try:
                if token is None:
                    r = client.post("/auth/token", json={"username": af.username, "password": af.password})
                    if r.status_code == 201:
                        token = r.json()["access_token"]
                if token is not None:
                    headers = {"Authorization": f"Bearer {token}"}
                    health = client.get("/api/v2/monitor/health", headers=headers).json()
                    scheduler_ok = health.get("scheduler", {}).get("status") == "healthy"
                    pending = [
                        d
                        for d in pending
                        if client.get(f"/api/v2/dags/{d}", headers=headers).status_code != 200
                    ]
                    if scheduler_ok and not pending:
                        return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.5)
    raise RuntimeError(f"Airflow not ready after {timeout}s (DAGs not parsed: {pending}):\n{af.logs()}")


@contextlib.contextmanager
def running_airflow(home: Path, dag_dirs: list[Path], dag_ids: list[str]) -> Iterator[RealAirflow]:
    """Start Airflow in ``home`` with the DAG files of ``dag_dirs``; stop it on exit."""
    venv = ensure_airflow_venv()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dags").mkdir(exist_ok=True)
    for folder in dag_dirs:
        for dag_file in folder.glob("*.py"):
            shutil.copy(dag_file, home / "dags" / dag_file.name)
    password = secrets.token_urlsafe(12)
    password_file = home / "passwords.json"
    password_file.write_text(json.dumps({USERNAME: password}))
    port = _free_port()
    env = _environment(home, port, password_file)
    _migrated_db(venv, env, home)
    airflow = str(venv / "bin" / "airflow")
    commands = {
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [airflow, "dag-processor"],
    }
    procs: list[subprocess.Popen[bytes]] = []
    pgid = 0
    try:
        for name, cmd in commands.items():
            with open(home / f"{name}.log", "wb") as log:
                # All three in one new process group (led by the first), so the teardown reaches
                # their children too.
                proc = subprocess.Popen(
                    cmd,
                    env=env,
                    cwd=home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    process_group=pgid,
                )
            procs.append(proc)
            if pgid == 0:
                pgid = proc.pid
        af = RealAirflow(f"http://127.0.0.1:{port}", USERNAME, password, home, venv, pgid)
        _wait_ready(af, procs, dag_ids, timeout=180)
        yield af
    finally:
        if pgid:
            _kill_group(pgid)
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


TEST_DAG_IDS = ["accord_echo", "accord_fail", "accord_paused", "accord_slow", "charge_card"]


@pytest.fixture(scope="session")
def real_airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealAirflow]:
    """A real Airflow 3 with the test DAGs and the airflow-team example's DAG."""
    if os.environ.get("ACCORD_TEST_AIRFLOW") == "skip":
        pytest.skip("ACCORD_TEST_AIRFLOW=skip")
    home = tmp_path_factory.mktemp("airflow-home")
    try:
        with running_airflow(home, [DAGS_DIR, EXAMPLE_DAGS_DIR], TEST_DAG_IDS) as af:
            yield af
    except RuntimeError as exc:
        pytest.fail(f"could not start the real Airflow: {exc}", pytrace=False)
