"""``shell``: run a command per task. JSON input on stdin, JSON output on stdout.

    with:
      command: ["./refund.sh", "--fast"]   # argv, no shell
      env: {API_KEY: "${secret:API_KEY}"}  # added to the environment
      cwd: /opt/refunds
      inherit_env: true                    # start from the agent's environment (default),
                                           # less ACCORD_TOKEN, which no engine needs
      timeout: 10m                         # optional; the task's deadline applies anyway
      non_retryable_exit_codes: [2, 64]    # default: every non-zero exit is retryable

The command also gets TRACEPARENT, ACCORD_IDEMPOTENCY_KEY, ACCORD_RUN_ID, ACCORD_STEP_ID and
ACCORD_ATTEMPT. It runs in its own session, so cancellation kills its whole process group.
Exit code 75 (EX_TEMPFAIL) is always retryable. A failing command may print
``{"error": {"type": "CardDeclined", "message": "..."}}`` on stdout to name its error type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from contracts.durations import DurationError, parse_duration
from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext

EX_TEMPFAIL = 75
STDERR_TAIL_CHARS = 4000
KILL_GRACE_SECONDS = 2.0


def _tail(text: str, limit: int = STDERR_TAIL_CHARS) -> str:
    return text if len(text) <= limit else "..." + text[-limit:]


class ShellEngine:
    name: ClassVar[str] = "shell"

    def __init__(self, config: Mapping[str, Any]) -> None:
        problems: list[tuple[str, str]] = []
        known = {"command", "env", "cwd", "inherit_env", "timeout", "non_retryable_exit_codes"}
        problems += [(k, "unknown option for the shell engine") for k in sorted(set(config) - known)]
        command = config.get("command")
        if isinstance(command, str):
            problems.append(("command", 'must be a list (argv), e.g. ["./refund.sh", "--fast"]'))
        elif not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            problems.append(("command", "missing: the command to run, as a list of strings"))
        env = config.get("env", {})
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
            for k, v in env.items()
        ):
            problems.append(("env", "must map variable names to string values"))
        cwd = config.get("cwd")
        if cwd is not None and (not isinstance(cwd, str) or not os.path.isdir(cwd)):
            problems.append(("cwd", f"{cwd!r} is not a directory"))
        inherit = config.get("inherit_env", True)
        if not isinstance(inherit, bool):
            problems.append(("inherit_env", "must be true or false"))
        timeout = None
        if config.get("timeout") is not None:
            try:
                timeout = parse_duration(config["timeout"])
            except DurationError:
                problems.append(("timeout", "must be a duration such as 30s, 10m"))
        codes = config.get("non_retryable_exit_codes", [])
        if not isinstance(codes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) and 0 < c < 256 for c in codes
        ):
            problems.append(("non_retryable_exit_codes", "must be a list of exit codes (1-255)"))
            codes = []
        if problems:
            raise EngineConfigError(problems)
        self._command: list[str] = list(command)  # type: ignore[arg-type]
        self._env = {str(k): str(v) for k, v in env.items()}
        self._cwd: str | None = cwd
        self._inherit_env = bool(inherit)
        self._timeout = timeout
        self._non_retryable = frozenset(int(c) for c in codes if c != EX_TEMPFAIL)
        self._running: set[asyncio.subprocess.Process] = set()

    def _environment(self, task: TaskContext) -> dict[str, str]:
        env = dict(os.environ) if self._inherit_env else {"PATH": os.environ.get("PATH", os.defpath)}
        # The agent's own credential is never the engine's business: a script that leaks its
        # environment (a debug dump, a crash report) must not leak the team's coordinator token.
        env.pop("ACCORD_TOKEN", None)
        env.update(self._env)
        env.update(
            {
                "TRACEPARENT": task.traceparent,
                "ACCORD_IDEMPOTENCY_KEY": task.idempotency_key,
                "ACCORD_RUN_ID": task.run_id,
                "ACCORD_STEP_ID": task.step_id,
                "ACCORD_ATTEMPT": str(task.attempt),
                "ACCORD_CONTRACT": f"{task.contract}@{task.contract_version}",
            }
        )
        if task.trace_context.get("tracestate"):
            env["TRACESTATE"] = task.trace_context["tracestate"]
        return env

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        try:
            process = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self._cwd,
                env=self._environment(task),
                start_new_session=True,
            )
        except OSError as exc:
            raise EngineFailure(
                f"cannot start {self._command[0]!r}: {exc.strerror or exc}",
                type="CommandNotStarted",
                retryable=False,
                details={"command": self._command[0]},
            ) from None
        self._running.add(process)
        stdin = json.dumps(input).encode()
        communicate = asyncio.create_task(process.communicate(stdin))
        return Handle(
            details={"pid": process.pid, "command": self._command[0]},
            state={"process": process, "communicate": communicate, "started": time.monotonic()},
        )

    async def wait(self, handle: Handle) -> Any:
        process: asyncio.subprocess.Process = handle.state["process"]
        communicate: asyncio.Task[tuple[bytes, bytes]] = handle.state["communicate"]
        try:
            if self._timeout is None:
                stdout_b, stderr_b = await asyncio.shield(communicate)
            else:
                remaining = self._timeout - (time.monotonic() - handle.state["started"])
                try:
                    stdout_b, stderr_b = await asyncio.wait_for(
                        asyncio.shield(communicate), max(remaining, 0)
                    )
                except TimeoutError:
                    await self._kill(process)
                    raise EngineFailure(
                        f"command {self._command[0]!r} timed out after {self._timeout:g}s and was killed",
                        type="Timeout",
                        retryable=True,
                        details=handle.details,
                    ) from None
        except asyncio.CancelledError:
            await self._kill(process)
            raise
        finally:
            if process.returncode is not None:
                self._running.discard(process)
        stdout = stdout_b.decode(errors="replace")
        stderr = stderr_b.decode(errors="replace")
        code = process.returncode
        details: dict[str, Any] = {**handle.details, "exit_code": code, "stderr_tail": _tail(stderr)}
        if code != 0:
            raise self._exit_failure(code, stdout, stderr, details)
        try:
            return json.loads(stdout)
        except ValueError:
            details["stdout_head"] = stdout[:500]
            raise EngineFailure(
                f"command {self._command[0]!r} exited 0 but its stdout is not JSON "
                "(print exactly one JSON document on stdout; use stderr for logs)",
                type="InvalidOutput",
                retryable=False,
                details=details,
            ) from None

    def _exit_failure(
        self, code: int | None, stdout: str, stderr: str, details: dict[str, Any]
    ) -> EngineFailure:
        if code is not None and code < 0:
            return EngineFailure(
                f"command {self._command[0]!r} was killed by signal {-code}",
                type="Killed",
                retryable=True,
                details=details,
            )
        error_type, message = "CommandFailed", ""
        with contextlib.suppress(ValueError):
            reported = json.loads(stdout)
            if isinstance(reported, dict) and "error" in reported:
                error = reported["error"]
                if isinstance(error, dict):
                    error_type = str(error.get("type") or error_type)
                    message = str(error.get("message") or "")
                elif isinstance(error, str):
                    error_type = error
        if not message:
            last_lines = [line for line in stderr.strip().splitlines() if line.strip()]
            message = last_lines[-1].strip() if last_lines else "no output on stderr"
        retryable = code == EX_TEMPFAIL or code not in self._non_retryable
        return EngineFailure(
            f"command {self._command[0]!r} exited with code {code}: {message}",
            type=error_type,
            retryable=retryable,
            details=details,
        )

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM the whole process group, SIGKILL it if it outlives the grace period."""
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
            except TimeoutError:
                pass
        # Children may survive their parent: the group goes in any case.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), KILL_GRACE_SECONDS)
        self._running.discard(process)

    async def cancel(self, handle: Handle) -> None:
        await self._kill(handle.state["process"])

    async def close(self) -> None:
        for process in list(self._running):
            await self._kill(process)
