"""Shared helpers for the peer benchmarks.

Everything here uses the standard library only, so the drivers run in Accord's
venv or in a plain ``python3``.  The peer-side scripts (under ``scripts/``) run in
the peer's own venv and import nothing from here; they talk back by printing one
JSON line prefixed with ``RESULT_PREFIX`` on stdout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = BENCH_DIR.parent
ENVS_DIR = BENCH_DIR / ".envs"
RESULTS_DIR = BENCH_DIR / "results"
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
RESULT_PREFIX = "PEER_RESULT "
STAMP_NAME = ".accord-peer-stamp.json"


class PeerError(RuntimeError):
    """A peer could not be installed, started or measured."""


def log(msg: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- venv


def _base_python() -> str:
    """The interpreter to build peer venvs from: the base one, not Accord's venv."""
    base = getattr(sys, "_base_executable", None) or sys.executable
    return base if os.path.exists(base) else sys.executable


def ensure_venv(
    peer: str,
    requirements: Sequence[str],
    *,
    install_timeout: float = 1500.0,
) -> tuple[Path, dict[str, Any]]:
    """Create (or reuse) ``benchmarks/.envs/<peer>`` with ``requirements`` installed.

    A stamp file records the requirement list and interpreter version once the
    install succeeded; a later call with the same list reuses the env as is.
    Returns the env's python and ``{"reused", "install_s" (spent in this call),
    "env_install_s" (spent building the env, from the stamp when reused)}``.
    """
    env_dir = ENVS_DIR / peer
    py = env_dir / "bin" / "python"
    stamp = env_dir / STAMP_NAME
    wanted = {
        "requirements": list(requirements),
        "python": "{}.{}".format(*sys.version_info[:2]),
    }
    if stamp.exists() and py.exists():
        try:
            recorded = json.loads(stamp.read_text())
            if recorded.get("key") == wanted:
                # install_s: spent now; env_install_s: what building the env took.
                return py, {"reused": True, "install_s": 0.0, "env_install_s": recorded.get("install_s")}
        except (OSError, ValueError):
            pass
    t0 = time.monotonic()
    ENVS_DIR.mkdir(parents=True, exist_ok=True)
    if stamp.exists():
        stamp.unlink()
    log(f"{peer}: creating venv {env_dir}")
    run_checked([_base_python(), "-m", "venv", "--clear", str(env_dir)], timeout=300)
    log(f"{peer}: pip install {' '.join(requirements)}")
    deadline = t0 + install_timeout
    run_checked(
        [str(py), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        timeout=max(30.0, deadline - time.monotonic()),
    )
    run_checked(
        [str(py), "-m", "pip", "install", "--quiet", *requirements],
        timeout=max(30.0, deadline - time.monotonic()),
    )
    install_s = time.monotonic() - t0
    stamp.write_text(json.dumps({"key": wanted, "install_s": round(install_s, 1), "at": time.time()}))
    log(f"{peer}: venv ready in {install_s:.1f} s")
    return py, {"reused": False, "install_s": round(install_s, 1), "env_install_s": round(install_s, 1)}


def run_checked(cmd: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` to completion in its own process group; raise PeerError on failure."""
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise PeerError(f"timed out after {timeout:.0f} s: {' '.join(cmd[:4])} ...") from None
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-15:])
        raise PeerError(f"exit {proc.returncode}: {' '.join(cmd[:6])}\n{tail}")
    return out


# --------------------------------------------------------------------- processes


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, *, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise PeerError(f"process exited with {proc.returncode} before port {port} opened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.2)
    raise PeerError(f"port {port} did not open within {timeout:.0f} s")


def start_group(
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    pgid: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with output to ``log_path``.

    With ``pgid=None`` the process leads a new process group; otherwise it joins
    group ``pgid`` so one ``kill_group`` stops all of them.
    """
    log_f = open(log_path, "ab")
    # process_group needs Python 3.11+.  The group stays in our session: setpgid()
    # cannot join a group that lives in another session (start_new_session would).
    kwargs: dict[str, Any] = {"process_group": 0 if pgid is None else pgid}
    try:
        return subprocess.Popen(
            list(cmd),
            stdout=log_f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            **kwargs,
        )
    finally:
        log_f.close()


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) for every process visible in /proc (Linux)."""
    table: dict[int, tuple[int, int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return table
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        try:
            table[int(name)] = (int(fields[1]), int(fields[2]))
        except (IndexError, ValueError):
            continue
    return table


def group_and_descendants(pgid: int) -> set[int]:
    """Members of process group ``pgid`` plus all their descendants, whatever group
    or session those moved to (Airflow's task runners start new sessions)."""
    table = _proc_table()
    found = {pid for pid, (_, g) in table.items() if g == pgid}
    changed = True
    while changed:
        changed = False
        for pid, (ppid, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("utf-8", "replace")
        return stat[stat.rfind(")") + 2 :].split()[0] != "Z"
    except OSError:
        return False


def kill_group(proc: subprocess.Popen[Any] | int, *, grace: float = 10.0) -> None:
    """Stop the process group led by ``proc`` (a Popen or a pgid) and every descendant
    of its members: SIGTERM, wait up to ``grace`` s, then SIGKILL what is left."""
    pgid = proc if isinstance(proc, int) else proc.pid
    targets = group_and_descendants(pgid)
    if isinstance(proc, subprocess.Popen) and proc.poll() is None:
        targets.add(proc.pid)
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if isinstance(proc, subprocess.Popen):
            proc.poll()
        # Children that appeared after the first scan are caught here too.
        targets |= group_and_descendants(pgid)
        if not any(_alive(p) for p in targets):
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in targets | group_and_descendants(pgid):
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    if isinstance(proc, subprocess.Popen):
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def run_peer_script(
    py: Path,
    script: str,
    args: Sequence[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: str | Path | None = None,
) -> dict[str, Any]:
    """Run ``scripts/<script>`` with the peer's python in its own process group.

    The script prints its result as one ``RESULT_PREFIX + json`` line.  Whatever it
    started in the same group is killed afterwards, whatever happened.
    """
    cmd = [str(py), str(SCRIPTS_DIR / script), *args]
    out_f = open(log_path, "w+b") if log_path else None
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=out_f if out_f else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PeerError(f"{script} timed out after {timeout:.0f} s") from None
    finally:
        kill_group(proc, grace=5)
        if out_f:
            out_f.close()
    text = out.decode("utf-8", "replace")
    for line in reversed(text.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    tail = ""
    if log_path and log_path.exists():
        tail = "\n".join(log_path.read_text(errors="replace").strip().splitlines()[-15:])
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    cause = next(
        (ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln), lines[-1] if lines else ""
    )
    raise PeerError(f"{script} exited {proc.returncode} without a result: {cause}\n{tail}")


def peer_env(**extra: str) -> dict[str, str]:
    """os.environ without Accord's venv, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv_bin = os.environ.get("VIRTUAL_ENV")
    if venv_bin:
        parts = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(venv_bin)]
        env["PATH"] = os.pathsep.join(parts)
    env.update(extra)
    return env


# -------------------------------------------------------------------------- stats


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank-with-interpolation percentile (``q`` in 0..100), like numpy's default."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def summarize_latencies(latencies_s: Sequence[float]) -> dict[str, Any]:
    ms = [x * 1000.0 for x in latencies_s]
    return {
        "runs": len(ms),
        "p50_ms": _r(percentile(ms, 50)),
        "p99_ms": _r(percentile(ms, 99)),
        "min_ms": _r(min(ms)) if ms else None,
        "max_ms": _r(max(ms)) if ms else None,
        "mean_ms": _r(sum(ms) / len(ms)) if ms else None,
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def empty_result(error: str | None = None) -> dict[str, Any]:
    return {"p50_ms": None, "p99_ms": None, "steps_per_s": None, "error": error}


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` atomically (tmp file + rename; ``*.tmp`` is git-ignored)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    import platform

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_1m": loadavg(),
    }
