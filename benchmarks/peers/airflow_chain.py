"""Airflow 3 peer: api-server + scheduler + dag-processor on 127.0.0.1 with SQLite.

The three processes share one process group and are killed at teardown (never
``airflow standalone``).  Runs are triggered through ``POST /api/v2/dags/{id}/dagRuns``
with a JWT from ``POST /auth/token`` and polled until terminal.  The REST calls are
made here with the standard library; the peer venv only provides the ``airflow`` CLI.

Run alone: ``python -m benchmarks.peers.airflow_chain --runs 10 --seconds 20``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from . import common

PEER = "airflow"
AIRFLOW_VERSION = "3.3.2"  # the version in shared/reference/airflow-3.3.2-exchanges.md
REQUIREMENTS = [f"apache-airflow=={AIRFLOW_VERSION}"]
DAG_ID = "accord_chain"
RUN_TIMEOUT_S = 120.0


class Api:
    """Minimal /api/v2 client (stdlib only)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None
        self.retries = 0

    def call(self, method: str, path: str, body: Any = None, *, timeout: float = 30.0) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw = err.read()
            status = err.code
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        return status, payload

    def login(self, user: str, password: str) -> None:
        status, body = self.call("POST", "/auth/token", {"username": user, "password": password})
        if status != 201 or not isinstance(body, dict) or "access_token" not in body:
            raise common.PeerError(f"POST /auth/token -> {status} {body}")
        self.token = body["access_token"]

    def trigger(self, note: str) -> str:
        """Trigger one run with our own dag_run_id, so a retry after a 5xx (SQLite
        "database is locked" under load) is idempotent: 409 means it was created."""
        run_id = f"bench__{note}__{secrets.token_hex(4)}"
        body = {"dag_run_id": run_id, "logical_date": None, "conf": {"req": note}}
        status, payload = 0, None
        for attempt in range(5):
            status, payload = self.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", body)
            if status == 200 or (status == 409 and attempt > 0):
                if attempt:
                    self.retries += 1
                return run_id
            if status < 500:
                break
            time.sleep(0.5 * 2**attempt)
        raise common.PeerError(f"trigger -> {status} {payload}")

    def run_state(self, run_id: str) -> str:
        rid = urllib.parse.quote(run_id, safe="")
        status, body = 0, None
        for attempt in range(5):
            status, body = self.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{rid}")
            if status == 200:
                return str(body["state"])
            if status < 500:
                break
            self.retries += 1
            time.sleep(0.5 * 2**attempt)
        raise common.PeerError(f"get run -> {status} {body}")


def _wait_dag(api: Api, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        status, body = api.call("GET", f"/api/v2/dags/{DAG_ID}")
        if status == 200:
            if body.get("has_import_errors"):
                raise common.PeerError(f"DAG has import errors: {body}")
            if body.get("is_paused"):
                api.call("PATCH", f"/api/v2/dags/{DAG_ID}?update_mask=is_paused", {"is_paused": False})
                continue
            return
        last = (status, body)
        time.sleep(0.5)
    raise common.PeerError(f"DAG {DAG_ID} not parsed within {timeout:.0f} s (last: {last})")


def _one_run(api: Api, note: str, poll_s: float) -> float:
    t0 = time.perf_counter()
    run_id = api.trigger(note)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        state = api.run_state(run_id)
        if state == "success":
            return time.perf_counter() - t0
        if state == "failed":
            raise common.PeerError(f"run {run_id} failed")
        time.sleep(poll_s)
    raise common.PeerError(f"run {run_id} not finished within {RUN_TIMEOUT_S:.0f} s")


def _throughput(api: Api, seconds: float, in_flight: int, poll_s: float) -> dict[str, Any]:
    """Keep ``in_flight`` runs going; the window opens at the first completion
    (so the pipeline is full) and closes ``seconds`` later."""
    live: dict[str, float] = {}
    done = failed = 0
    n = 0
    window_start: float | None = None
    hard_deadline = time.monotonic() + seconds + RUN_TIMEOUT_S
    while time.monotonic() < hard_deadline:
        now = time.monotonic()
        if window_start is not None and now >= window_start + seconds:
            break
        while len(live) < in_flight:
            live[api.trigger(f"tp-{n}")] = time.monotonic()
            n += 1
        for run_id in list(live):
            state = api.run_state(run_id)
            if state in ("success", "failed"):
                live.pop(run_id)
                t = time.monotonic()
                if window_start is None:
                    window_start = t  # this first completion is not counted
                elif t <= window_start + seconds:
                    if state == "success":
                        done += 1
                    else:
                        failed += 1
        time.sleep(poll_s)
    if window_start is None:
        raise common.PeerError("no run completed during the throughput phase")
    elapsed = min(time.monotonic(), window_start + seconds) - window_start
    return {
        "throughput_runs": done,
        "throughput_failed": failed,
        "throughput_window_s": round(elapsed, 3),
        "steps_per_s": round(done * 3 / elapsed, 2) if elapsed > 0 else None,
        "concurrency": in_flight,
        "runs_triggered": n,
    }


def run(
    runs: int = 10,
    seconds: float = 20.0,
    *,
    in_flight: int = 8,
    poll_s: float = 0.1,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    res: dict[str, Any] = common.empty_result()
    try:
        py, info = common.ensure_venv(PEER, REQUIREMENTS)
    except Exception as exc:
        res["error"] = f"install failed: {exc}"
        return res
    res.update(install_s=info["install_s"], env_install_s=info["env_install_s"], env_reused=info["reused"])
    airflow = py.parent / "airflow"

    with tempfile.TemporaryDirectory(prefix="accord-airflow-") as tmp:
        home = Path(tmp)
        logs = log_dir or home
        dags = home / "dags"
        dags.mkdir()
        shutil.copy(common.SCRIPTS_DIR / "airflow_dag.py", dags / "accord_chain.py")
        port = common.free_port()
        base = f"http://127.0.0.1:{port}"
        password = secrets.token_urlsafe(16)
        (home / "passwords.json").write_text(json.dumps({"admin": password}))
        env = common.peer_env(
            HOME=str(home),
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base}/execution/",
            AIRFLOW__API__BASE_URL=base,
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(port),
            AIRFLOW__API__SECRET_KEY=secrets.token_hex(16),
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
            AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
            AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK="False",
        )
        t0 = time.monotonic()
        try:
            common.run_checked([str(airflow), "db", "migrate"], timeout=600, env=env)
        except Exception as exc:
            res["error"] = f"db migrate failed: {exc}"
            return res
        res["db_migrate_s"] = round(time.monotonic() - t0, 1)
        common.log(f"airflow: db migrate in {res['db_migrate_s']} s")

        t1 = time.monotonic()
        leader = None
        try:
            leader = common.start_group(
                [str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                log_path=logs / "airflow-api-server.log",
                env=env,
                cwd=home,
            )
            for name, cmd in (
                ("scheduler", [str(airflow), "scheduler", "--skip-serve-logs"]),
                ("dag-processor", [str(airflow), "dag-processor"]),
            ):
                common.start_group(
                    cmd, log_path=logs / f"airflow-{name}.log", env=env, cwd=home, pgid=leader.pid
                )
            common.wait_port(port, timeout=180, proc=leader)
            api = Api(base)
            deadline = time.monotonic() + 60
            while True:
                try:
                    api.login("admin", password)
                    break
                except (common.PeerError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            _wait_dag(api, timeout=180)
            res["start_s"] = round(time.monotonic() - t1, 1)
            common.log(f"airflow: api-server/scheduler/dag-processor ready in {res['start_s']} s")

            t2 = time.monotonic()
            _one_run(api, "warmup", poll_s)
            res["first_run_s"] = round(time.monotonic() - t2, 2)
            lat: list[float] = []
            errors = 0
            lat_deadline = time.monotonic() + max(120.0, runs * 30.0)
            for i in range(runs):
                if time.monotonic() > lat_deadline:
                    break
                try:
                    lat.append(_one_run(api, f"lat-{i}", poll_s))
                except common.PeerError as exc:
                    errors += 1
                    common.log(f"airflow: latency run {i} failed: {exc}")
            res.update(common.summarize_latencies(lat))
            res["latency_errors"] = errors
            common.log(f"airflow: latency p50 {res['p50_ms']} ms; throughput for {seconds:.0f} s")
            res.update(_throughput(api, seconds, in_flight, max(poll_s, 0.25)))
            res["api_retries"] = api.retries
            res["versions"] = {"apache-airflow": AIRFLOW_VERSION}
        except Exception as exc:
            res["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if leader is not None:
                common.kill_group(leader, grace=15)
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--log-dir", type=Path, default=None)
    a = ap.parse_args()
    print(json.dumps(run(a.runs, a.seconds, in_flight=a.in_flight, log_dir=a.log_dir), indent=2))
