"""Run a real agent process from a test: ``accord agent start --config ...`` as a subprocess.

    agent = AgentProcess(config_path, env={"ACCORD_TOKEN": token}, workdir=tmp_path)
    agent.start()
    await agent.wait_for_log("registered")
    ...
    assert agent.stop() == 0          # SIGTERM, graceful

The process's stdout and stderr go to ``agent.log_path``; ``agent.log`` reads it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def accord_executable() -> str:
    """The ``accord`` script of the running interpreter's environment."""
    beside = Path(sys.executable).parent / "accord"
    if beside.exists():
        return str(beside)
    found = shutil.which("accord")
    if found is None:
        raise RuntimeError("the accord command is not installed (pip install -e .)")
    return found


class AgentProcess:
    """One agent replica in its own process, with its own state dir and log file."""

    def __init__(
        self,
        config_path: str | Path,
        *,
        workdir: str | Path,
        env: Mapping[str, str] | None = None,
        agent_id: str | None = None,
        grace: float = 5.0,
        reload_interval: float = 0.2,
        log_level: str = "debug",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.config_path = Path(config_path)
        self.agent_id = agent_id or f"test-agent-{os.getpid()}-{id(self):x}"
        self.workdir = Path(workdir)
        self.state_dir = self.workdir / f"state-{self.agent_id}"
        self.log_path = self.workdir / f"{self.agent_id}.log"
        self.env = dict(env or {})
        self.args = [
            accord_executable(),
            "agent",
            "start",
            "--config",
            str(self.config_path),
            "--state-dir",
            str(self.state_dir),
            "--agent-id",
            self.agent_id,
            "--grace",
            str(grace),
            "--reload-interval",
            str(reload_interval),
            "--log-level",
            log_level,
            *extra_args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir
            )
        return self

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def wait_for_log(self, text: str, timeout: float = 60.0, *, count: int = 1) -> None:  # noqa: ASYNC109
        """Until ``text`` appears ``count`` times in the log; fails with the log if not. The
        timeout is an upper bound, generous for a loaded machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = await asyncio.to_thread(lambda: self.log)
            if log.count(text) >= count:
                return
            if not self.running:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"{text!r} not seen {count}x in the agent log:\n{self.log[-6000:]}")

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait: the exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up (the leases must expire)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
