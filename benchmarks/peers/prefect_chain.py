"""Prefect 3 peer, local ephemeral mode (the temporary API server Prefect starts itself).

Run alone: ``python -m benchmarks.peers.prefect_chain --runs 50 --seconds 20``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from . import common

PEER = "prefect"
REQUIREMENTS = ["prefect==3.9.1"]


def run(
    runs: int = 50, seconds: float = 20.0, *, concurrency: int = 8, log_dir: Path | None = None
) -> dict[str, Any]:
    res: dict[str, Any] = common.empty_result()
    try:
        py, info = common.ensure_venv(PEER, REQUIREMENTS)
    except Exception as exc:
        res["error"] = f"install failed: {exc}"
        return res
    res.update(install_s=info["install_s"], env_install_s=info["env_install_s"], env_reused=info["reused"])
    with tempfile.TemporaryDirectory(prefix="accord-prefect-") as tmp:
        tmpd = Path(tmp)
        logs = log_dir or tmpd
        env = common.peer_env(
            HOME=str(tmpd),
            PREFECT_HOME=str(tmpd / "prefect-home"),
            PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="true",
            # Default 20 s is too short on a busy 2-core machine (seen timing out).
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_API_HOST="127.0.0.1",
        )
        for k in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_PROFILE"):
            env.pop(k, None)
        t0 = time.monotonic()
        try:
            # The peer script and the ephemeral server it spawns share one process
            # group, which run_peer_script kills when the script returns.
            out = common.run_peer_script(
                py,
                "prefect_peer.py",
                ["--runs", str(runs), "--seconds", str(seconds), "--concurrency", str(concurrency)],
                timeout=180 + runs * 10 + seconds * 3,
                env=env,
                log_path=logs / "prefect-peer.log",
                cwd=tmpd,
            )
        except Exception as exc:
            res["error"] = f"{type(exc).__name__}: {exc}"
            return res
        res["total_s"] = round(time.monotonic() - t0, 1)
    res["start_s"] = out.get("first_run_s")
    res.update(common.summarize_latencies(out.pop("latencies_s")))
    res.update(out)
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=8)
    a = ap.parse_args()
    print(json.dumps(run(a.runs, a.seconds, concurrency=a.concurrency), indent=2))
