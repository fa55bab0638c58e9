"""A real Apache Airflow for the test suite, in a virtual environment of its own.

The venv and a migrated SQLite database are built once and cached (airflow_venv.py; ``make
test`` starts building them in the background at once). Each test session gets a fresh
``AIRFLOW_HOME`` in a tmp dir (a copy of the cached database), with the simple auth manager and a
known password, and runs ``airflow api-server``, ``airflow scheduler --skip-serve-logs`` and
``airflow dag-processor`` as separate processes on 127.0.0.1 in one process group of their own,
which the teardown kills as a whole. (``airflow standalone`` is avoided: it opens a log server on
all interfaces.) Under pytest-xdist every test of the group runs on one worker, so one Airflow
serves them all (tests/conftest.py).

Set ``ACCORD_TEST_AIRFLOW=skip`` to skip the ``@pytest.mark.airflow`` tests on a machine that
cannot reach PyPI; by default they run (they are part of ``make test`` and CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.engines.airflow_venv import (
    USERNAME,
    airflow_environment,
    ensure_airflow_venv,
    ensure_db_template,
    free_port,
)

DAGS_DIR = Path(__file__).parent / "airflow_dags"
EXAMPLE_DAGS_DIR = Path(__file__).resolve().parents[2] / "examples" / "airflow-team" / "dags"


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

    def logs(self, tasks: int = 0) -> str:
        """The tail of every process's log, and of the ``tasks`` latest task logs, for a failing
        test's report."""
        parts = []
        for name in ("api-server", "scheduler", "dag-processor"):
            path = self.home / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')[-4000:]}")
        task_logs = sorted((self.home / "logs").glob("dag_id=*/**/*.log"), key=lambda p: p.stat().st_mtime)
        for path in task_logs[-tasks:] if tasks else []:
            name = path.relative_to(self.home / "logs")
            parts.append(f"--- task log {name} ---\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)


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


def spawn_in_one_group(
    commands: dict[str, list[str]], home: Path, env: dict[str, str], procs: list[subprocess.Popen[bytes]]
) -> int:
    """Start ``commands`` (name -> argv, output to ``home/<name>.log``) in one new process group,
    led by the first, so that ``_kill_group`` reaches their children too; each process is added to
    ``procs`` as it starts (the caller's teardown waits for them). Returns the group id."""
    pgid = 0
    for name, cmd in commands.items():
        with open(home / f"{name}.log", "wb") as log:
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
        pgid = pgid or proc.pid
    return pgid


def stop_group(procs: list[subprocess.Popen[bytes]], grace: float = 5.0) -> None:
    """End the process group ``spawn_in_one_group`` started (``procs``, its leader first, as far
    as it got) and wait for its processes."""
    if procs:
        _kill_group(procs[0].pid, grace)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


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
    port = free_port()
    env = airflow_environment(home, port, password_file)
    shutil.copyfile(ensure_db_template(venv), home / "airflow.db")
    airflow = str(venv / "bin" / "airflow")
    commands = {
        "api-server": [airflow, "api-server", "--host", "127.0.0.1", "--port", str(port)],
        "scheduler": [airflow, "scheduler", "--skip-serve-logs"],
        "dag-processor": [airflow, "dag-processor"],
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        pgid = spawn_in_one_group(commands, home, env, procs)
        af = RealAirflow(f"http://127.0.0.1:{port}", USERNAME, password, home, venv, pgid)
        _wait_ready(af, procs, dag_ids, timeout=180)
        yield af
    finally:
        stop_group(procs)


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
