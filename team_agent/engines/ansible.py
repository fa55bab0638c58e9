"""The ``ansible`` engine: runs a task as one run of an Ansible playbook, through ansible-runner.

ansible-runner (the library AWX and teams' own tools use to drive Ansible from a program) runs
``ansible-playbook`` as a subprocess on a pseudo-terminal and records the run in a *private data
dir*: the extra vars and environment it was given (``env/``), and under ``artifacts/<ident>/``
its ``status``, ``rc``, ``stdout`` and one JSON file per Ansible event (``job_events/``). It runs
in a small process of its own per run (team_agent/engines/_ansible_run.py: pexpect's fork is not
safe in the agent's threaded process), which the agent awaits without blocking its loop. One
task is one run:

1. The run's private data dir is ``<runs_dir>/<hash of the idempotency key>-<generation>``,
   claimed with an atomic ``mkdir``: a re-delivered task finds it and attaches to that run (its
   runner's exit, or its ``status`` file), never starting a second playbook run. A later
   attempt after a failed run moves on to the next generation.
2. The extra vars are the task input's top-level fields, ``accord_input`` (the whole input),
   the binding's ``extra_vars`` and ``accord_idempotency_key``, ``accord_traceparent``... The
   environment carries ``TRACEPARENT`` too (and never the agent's ``ACCORD_TOKEN``).
3. On ``successful`` the output is a ``set_stats`` value, a host's fact (``set_fact``) or a JSON
   file the playbook wrote; on ``failed`` the error is Ansible's own message for the failed or
   unreachable hosts. Cancel SIGTERMs the runner, whose ``cancel_callback`` then answers true:
   ansible-runner kills the playbook's process group.
4. The run's plays and tasks become spans, from its events.

``with:`` keys (docs/engines/ansible.md)::

    project_dir: /srv/ansible/payments      # required: the playbook's directory (its cwd)
    playbook: charge.yml                    # required: relative to project_dir
    inventory: inventory/hosts.ini          # optional: file or directory, relative to project_dir
    output: {stat: payment}                 # or {fact: payment_ref, host: localhost} or {file: out.json}
    extra_vars: {currency: EUR}             # optional, added to every run
    envvars: {ANSIBLE_FORCE_COLOR: "0"}     # optional, the playbook's environment
    limit: payments_hosts                   # optional: --limit
    tags: charge                            # optional: --tags
    skip_tags: slow                         # optional: --skip-tags
    verbosity: 0                            # -v count, 0-4
    task_failure: non_retryable             # or retryable
    timeout: 30m                            # optional: ansible-runner's job timeout
    runs_dir: ~/.accord/ansible-runs        # where the runs' private data dirs live
    keep_runs: 7d                           # finished runs older than this are removed
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from opentelemetry import trace

from team_agent.engines._ansible_run import kill_groups, process_groups
from team_agent.engines._http_util import Backoff, ConfigReader, outgoing_trace_context
from team_agent.engines.base import EngineConfigError, EngineFailure, Handle, TaskContext

logger = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)

IDENT = "run"  # the ansible-runner ident of every run: one run per private data dir
CLAIM_FILE = "accord.json"  # who claimed a run dir: the runner's pid, the playbook's once known
RUNNER_LOG = "runner.log"  # the runner process's own stderr
# Run as a script, not as team_agent.engines._ansible_run: importing the team_agent package
# would load gRPC and the rest of the agent into every run's process.
RUNNER_SCRIPT = Path(__file__).with_name("_ansible_run.py")
_FINAL = ("successful", "failed", "canceled", "timeout")
_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_PREFIXES = ("accord_", "ansible_")
_KNOWN_KEYS = {
    "project_dir",
    "playbook",
    "inventory",
    "output",
    "extra_vars",
    "envvars",
    "limit",
    "tags",
    "skip_tags",
    "verbosity",
    "task_failure",
    "timeout",
    "runs_dir",
    "keep_runs",
    "poll_interval",
    "max_poll_interval",
}
INSTALL_HINT = "install it with the agent's extra: pip install 'accord[ansible]'"


def default_runs_dir() -> Path:
    return Path(os.environ.get("ACCORD_HOME") or Path.home() / ".accord") / "ansible-runs"


def _find_ansible_playbook() -> str | None:
    """``ansible-playbook`` beside this Python (the agent's virtual environment), else on PATH.
    ansible-runner starts it by name, so its directory goes first on the run's PATH."""
    here = str(Path(sys.executable).parent)
    return shutil.which("ansible-playbook", path=os.pathsep.join([here, os.environ.get("PATH", "")]))


@dataclass(frozen=True)
class AnsibleConfig:
    project_dir: Path
    playbook: Path
    inventory: Path | None
    output_kind: str | None  # "stat", "fact", "file" or None (the run's summary)
    output_name: str
    output_host: str | None
    extra_vars: Mapping[str, Any]
    envvars: Mapping[str, str]
    limit: str | None
    tags: str | None
    skip_tags: str | None
    verbosity: int
    task_failure_retryable: bool
    timeout: float | None
    runs_dir: Path
    keep_runs: float
    poll_interval: float
    max_poll_interval: float
    ansible_playbook: str = field(default="")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> AnsibleConfig:
        r = ConfigReader("ansible", config, _KNOWN_KEYS)
        project_dir = Path(".")
        raw_project = r.string("project_dir", required=True)
        if raw_project:
            project_dir = Path(raw_project).expanduser().absolute()
            if not project_dir.is_dir():
                r.problem(
                    "project_dir",
                    f"{project_dir} is not a directory (the directory holding the playbook and its roles)",
                )
        playbook = Path(".")
        raw_playbook = r.string("playbook", required=True)
        if raw_playbook:
            playbook = project_dir / Path(raw_playbook).expanduser()
            if project_dir.is_dir() and not playbook.is_file():
                r.problem("playbook", f"{playbook} does not exist (a path relative to project_dir)")
        inventory = None
        raw_inventory = r.string("inventory")
        if raw_inventory:
            inventory = project_dir / Path(raw_inventory).expanduser()
            if project_dir.is_dir() and not inventory.exists():
                r.problem(
                    "inventory",
                    f"{inventory} does not exist (an inventory file or directory, relative to project_dir)",
                )
        kind, name, host = _output(r)
        extra_vars: Mapping[str, Any] = {}
        raw_vars = r.config.get("extra_vars")
        if raw_vars is not None:
            if not isinstance(raw_vars, Mapping) or not all(isinstance(k, str) for k in raw_vars):
                r.problem("extra_vars", "must map variable names to values, e.g. {currency: EUR}")
            else:
                for key in raw_vars:
                    if key.startswith("accord_"):
                        r.problem(f"extra_vars.{key}", "is reserved: the agent sets accord_* itself")
                extra_vars = dict(raw_vars)
        envvars: dict[str, str] = {}
        raw_env = r.config.get("envvars")
        if raw_env is not None:
            if not isinstance(raw_env, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str | int | float) and not isinstance(v, bool)
                for k, v in raw_env.items()
            ):
                r.problem("envvars", "must map environment variable names to string values")
            else:
                envvars = {k: str(v) for k, v in raw_env.items()}
        runs_dir = Path(r.string("runs_dir") or default_runs_dir()).expanduser().absolute()
        # The runs hold their extra vars (and any secret in them): the directory is the agent
        # user's alone. An existing one is never chmod-ed (runs_dir: /tmp must not close /tmp).
        try:
            if not runs_dir.exists():
                runs_dir.mkdir(parents=True, mode=0o700)
            elif not runs_dir.is_dir():
                r.problem("runs_dir", f"{runs_dir} is not a directory")
            elif runs_dir.stat().st_mode & 0o077:
                r.problem(
                    "runs_dir",
                    f"{runs_dir} is open to other users (mode {runs_dir.stat().st_mode & 0o777:o}); "
                    "the runs keep their extra vars there: name a directory of the agent's own "
                    f"(it is made 0700), or chmod 700 {runs_dir}",
                )
        except OSError as exc:
            r.problem("runs_dir", f"cannot create {runs_dir}: {exc.strerror or exc}")
        ansible_playbook = _find_ansible_playbook()
        if ansible_playbook is None:
            r.problem("", f"the ansible engine needs ansible-playbook (ansible-core); {INSTALL_HINT}")
        verbosity = r.integer("verbosity", 0, minimum=0)
        if verbosity > 4:
            r.problem("verbosity", f"must be between 0 and 4, got {verbosity}")
        cfg = cls(
            project_dir=project_dir,
            playbook=playbook,
            inventory=inventory,
            output_kind=kind,
            output_name=name,
            output_host=host,
            extra_vars=extra_vars,
            envvars=envvars,
            limit=r.string("limit"),
            tags=r.string("tags"),
            skip_tags=r.string("skip_tags"),
            verbosity=verbosity,
            task_failure_retryable=r.choice("task_failure", ("non_retryable", "retryable"), "non_retryable")
            == "retryable",
            timeout=r.duration("timeout", None),
            runs_dir=runs_dir,
            keep_runs=r.duration("keep_runs", 7 * 86400.0) or 7 * 86400.0,
            poll_interval=r.duration("poll_interval", 0.5) or 0.5,
            max_poll_interval=r.duration("max_poll_interval", 5.0) or 5.0,
            ansible_playbook=ansible_playbook or "",
        )
        r.raise_if_problems()
        return cfg


def _output(r: ConfigReader) -> tuple[str | None, str, str | None]:
    output = r.config.get("output")
    if output is None:
        return None, "", None
    example = "{stat: payment}, {fact: payment_ref, host: localhost} or {file: output.json}"
    if not isinstance(output, Mapping):
        r.problem("output", f"must be a mapping: {example}")
        return None, "", None
    kinds = [k for k in ("stat", "fact", "file") if k in output]
    for extra in sorted(set(output) - {"stat", "fact", "file", "host"}, key=str):
        r.problem(f"output.{extra}", "unknown key (known keys: fact, file, host, stat)")
    if len(kinds) != 1:
        r.problem("output", f"give exactly one of stat, fact or file: {example}")
        return None, "", None
    kind = kinds[0]
    name = output[kind]
    if not isinstance(name, str) or not name:
        r.problem(f"output.{kind}", f"must be a non-empty string, got {name!r}")
        return None, "", None
    if kind == "file" and (Path(name).is_absolute() or ".." in Path(name).parts):
        r.problem(
            "output.file",
            f"must be a file name inside the run's directory, got {name!r}; the playbook writes it "
            "at {{ accord_output_file }}",
        )
    host = output.get("host")
    if host is not None and (kind != "fact" or not isinstance(host, str) or not host):
        r.problem("output.host", "names the host whose fact is the output; only with output.fact")
        host = None
    return kind, name, host


def _unsafe(value: Any) -> Any:
    """``value`` with every string marked unsafe for Ansible (``{"__ansible_unsafe": s}``, which
    its JSON loader reads as ``!unsafe``): extra vars are templated when used, so a task input of
    ``"{{ lookup('pipe', 'id') }}"`` would otherwise run on the agent's machine."""
    if isinstance(value, str):
        return {"__ansible_unsafe": value}
    if isinstance(value, Mapping):
        return {k: _unsafe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsafe(v) for v in value]
    return value


def run_dir_name(idempotency_key: str, generation: int = 1) -> str:
    """The private data dir's name for a step's idempotency key: the same key always gives the
    same directory, so a re-delivered task finds its run; ``generation`` > 1 names the runs of
    later attempts started after earlier ones failed."""
    return f"accord-{hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]}-{generation}"


def _ns(value: Any) -> int | None:
    """An ansible-runner timestamp (ISO 8601, UTC) as ns since the epoch."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000) * 1_000


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Run:
    """A run this process started: the process running ansible-runner for it
    (team_agent/engines/_ansible_run.py)."""

    def __init__(self, run_dir: Path, process: asyncio.subprocess.Process) -> None:
        self.run_dir = run_dir
        self.process = process

    def alive(self) -> bool:
        return self.process.returncode is None


# The runs this process started and has not reaped, by run dir. Process-wide on purpose: a
# re-delivered task can reach another adapter of the same binding (a reloaded config builds a new
# one while the old one finishes its tasks), and it must await the runner that is already there.
_LIVE: dict[Path, _Run] = {}


class AnsibleEngine:
    """Engine adapter for Ansible playbooks run by ansible-runner (see the module docstring)."""

    name: ClassVar[str] = "ansible"

    def __init__(self, config: Mapping[str, Any]) -> None:
        if importlib.util.find_spec("ansible_runner") is None:
            raise EngineConfigError(
                [("", f"ansible: the ansible engine needs the ansible-runner library; {INSTALL_HINT}")]
            )
        self.config = AnsibleConfig.from_mapping(config)
        self._started: set[Path] = set()  # the runs this adapter started (close() stops them)
        self._lock = asyncio.Lock()
        self._last_prune = 0.0

    # -- the adapter interface --------------------------------------------------------------

    async def submit(self, task: TaskContext, input: Any) -> Handle:
        cfg = self.config
        span = trace.get_current_span()
        span.set_attribute("ansible.playbook", str(cfg.playbook))
        carrier = outgoing_trace_context(task)
        with tracer.start_as_current_span("ansible.start") as start_span:
            async with self._lock:
                await self._prune()
                generation = 1
                while True:
                    run_dir = cfg.runs_dir / run_dir_name(task.idempotency_key, generation)
                    if await asyncio.to_thread(self._claim, run_dir, task):
                        await self._start(run_dir, task, input, carrier)
                        attached = False
                        break
                    state = await asyncio.to_thread(self._state_on_disk, run_dir)
                    if state not in ("running", "successful") and generation < task.attempt:
                        generation += 1  # that run was an earlier, failed attempt
                        continue
                    attached = True
                    logger.info(
                        "attached to the existing Ansible run",
                        extra={"run_dir": str(run_dir), "state": state, "task_id": task.task_id},
                    )
                    break
            start_span.set_attribute("ansible.run_dir", str(run_dir))
            start_span.set_attribute("ansible.attached", attached)
        span.set_attribute("ansible.run_dir", str(run_dir))
        return Handle(
            details={
                "engine": "ansible",
                "playbook": str(cfg.playbook),
                "run_dir": str(run_dir),
                "generation": generation,
            },
            state={"run_dir": run_dir, "attached": attached},
        )

    async def wait(self, handle: Handle) -> Any:
        run_dir: Path = handle.state["run_dir"]
        run = _LIVE.get(run_dir)
        if run is not None:
            await self._wait_in_process(run)
            if not run.alive():
                _LIVE.pop(run_dir, None)  # its status file speaks for it from now on
        else:
            await self._wait_on_disk(run_dir)
        status, rc, events, stdout = await asyncio.to_thread(self._read_run, run_dir)
        self._trace(run_dir, status, rc, events)
        if status != "successful":
            raise self._failure(run_dir, status, rc, events, stdout)
        with tracer.start_as_current_span("ansible.fetch_output") as out_span:
            out_span.set_attribute("ansible.output", self.config.output_kind or "summary")
            return await asyncio.to_thread(self._output, run_dir, rc, events)

    async def cancel(self, handle: Handle) -> None:
        run_dir: Path = handle.state["run_dir"]
        run = _LIVE.get(run_dir)
        if run is not None:
            await self._stop(run)
            logger.info("cancelled the Ansible run", extra={"run_dir": str(run_dir)})
            return
        # A run another process started (an agent before a restart, or a second agent sharing
        # runs_dir): stop its runner, which stops the playbook.
        claim = await asyncio.to_thread(_read_json, run_dir / CLAIM_FILE)
        if isinstance(claim, dict) and _signal(claim.get("runner_pid"), signal.SIGTERM):
            backoff = Backoff(0.05, 0.5)
            deadline = time.monotonic() + 30
            while _pid_alive(claim.get("runner_pid")) and time.monotonic() < deadline:
                await backoff.sleep()
            _kill_group(claim.get("playbook_pid"))
            logger.info("cancelled the Ansible run of another process", extra={"run_dir": str(run_dir)})

    async def _stop(self, run: _Run) -> None:
        """SIGTERM the run's runner: its cancel_callback then answers true, and ansible-runner
        kills the playbook's process group and records ``canceled``."""
        if run.alive():
            with contextlib.suppress(ProcessLookupError):
                run.process.send_signal(signal.SIGTERM)
        await self._wait_in_process(run, within=30)
        if run.alive():  # the runner did not stop: stop both by force
            claim = await asyncio.to_thread(_read_json, run.run_dir / CLAIM_FILE)
            _kill_group(claim.get("playbook_pid") if isinstance(claim, dict) else None)
            _kill_group(run.process.pid)
            await self._wait_in_process(run, within=5)

    async def close(self) -> None:
        for path, run in list(_LIVE.items()):
            if path in self._started and run.alive():
                await self._stop(run)

    # -- starting ---------------------------------------------------------------------------

    def _claim(self, run_dir: Path, task: TaskContext) -> bool:
        """Make ``run_dir`` this task's run, atomically; False if it exists already."""
        try:
            run_dir.mkdir(mode=0o700)
        except FileExistsError:
            return False
        _write_json(
            run_dir / CLAIM_FILE,
            {
                "idempotency_key": task.idempotency_key,
                "task_id": task.task_id,
                "attempt": task.attempt,
                "agent_pid": os.getpid(),
                "claimed_at": time.time(),
            },
        )
        return True

    def _extra_vars(
        self, run_dir: Path, task: TaskContext, input: Any, carrier: Mapping[str, str]
    ) -> dict[str, Any]:
        cfg = self.config
        extra: dict[str, Any] = {}
        input = _unsafe(input)
        if isinstance(input, Mapping):
            # Top-level fields become variables, except names Ansible could read as its own
            # connection settings (ansible_*) or ours; all of them are in accord_input. The
            # binding's extra_vars win over them: the caller does not get to move the team's paths.
            extra.update(
                {
                    k: v
                    for k, v in input.items()
                    if isinstance(k, str) and _IDENTIFIER.match(k) and not k.startswith(_RESERVED_PREFIXES)
                }
            )
        extra.update(cfg.extra_vars)
        extra.update(
            {
                "accord_input": input,
                "accord_idempotency_key": _unsafe(task.idempotency_key),
                "accord_traceparent": _unsafe(carrier.get("traceparent", "")),
                "accord_tracestate": _unsafe(carrier.get("tracestate", "")),
                "accord_run_id": task.run_id,
                "accord_step_id": task.step_id,
                "accord_task_id": task.task_id,
                "accord_attempt": task.attempt,
                "accord_contract": f"{task.contract}@{task.contract_version}",
                "accord_run_dir": str(run_dir),
            }
        )
        if cfg.output_kind == "file":
            extra["accord_output_file"] = str(run_dir / cfg.output_name)
        return extra

    async def _start(self, run_dir: Path, task: TaskContext, input: Any, carrier: Mapping[str, str]) -> None:
        cfg = self.config
        envvars = {
            **cfg.envvars,
            "PATH": os.pathsep.join([str(Path(cfg.ansible_playbook).parent), os.environ.get("PATH", "")]),
            "TRACEPARENT": carrier.get("traceparent", ""),
            "ACCORD_IDEMPOTENCY_KEY": task.idempotency_key,
        }
        if carrier.get("tracestate"):
            envvars["TRACESTATE"] = carrier["tracestate"]
        kwargs: dict[str, Any] = {
            "private_data_dir": str(run_dir),
            "project_dir": str(cfg.project_dir),
            "playbook": str(cfg.playbook),
            "ident": IDENT,
            "extravars": self._extra_vars(run_dir, task, input, carrier),
            "envvars": envvars,
            "quiet": True,  # the playbook's output goes to the run's stdout file only
            # How often the runner's loop asks cancel_callback (ansible-runner's default: 5 s).
            "settings": {"pexpect_timeout": 0.25},
        }
        if cfg.inventory is not None:
            kwargs["inventory"] = str(cfg.inventory)
        for key in ("limit", "tags", "skip_tags"):
            if getattr(cfg, key):
                kwargs[key] = getattr(cfg, key)
        if cfg.verbosity:
            kwargs["verbosity"] = cfg.verbosity
        if cfg.timeout:
            kwargs["timeout"] = max(int(cfg.timeout), 1)
        # The agent's own credential is never the playbook's business (ansible-runner starts
        # the playbook with its environment).
        environment = {k: v for k, v in os.environ.items() if k != "ACCORD_TOKEN"}
        log = await asyncio.to_thread(open, run_dir / RUNNER_LOG, "ab")
        try:
            # A session of its own: the run goes on if the agent is killed, and its status file
            # tells a restarted agent how it ended.
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # run the script without putting its directory (this package) on sys.path
                str(RUNNER_SCRIPT),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env=environment,
                start_new_session=True,
            )
        except OSError as exc:
            await asyncio.to_thread(_write_text, run_dir / "artifacts" / IDENT / "status", "failed")
            raise EngineFailure(
                f"could not start ansible-runner for playbook {cfg.playbook.name}: {exc.strerror or exc}",
                type="RunnerError",
                retryable=True,
                details={"run_dir": str(run_dir)},
            ) from None
        finally:
            log.close()
        run = _Run(run_dir, process)
        _LIVE[run_dir] = run
        self._started.add(run_dir)
        claim = await asyncio.to_thread(_read_json, run_dir / CLAIM_FILE)
        await asyncio.to_thread(
            _write_json, run_dir / CLAIM_FILE, {**(claim or {}), "runner_pid": process.pid}
        )
        assert process.stdin is not None
        process.stdin.write(json.dumps(kwargs).encode())
        with contextlib.suppress(ConnectionError):
            await process.stdin.drain()
        process.stdin.close()
        logger.info(
            "started Ansible playbook",
            extra={"playbook": str(cfg.playbook), "run_dir": str(run_dir), "task_id": task.task_id},
        )

    # -- waiting ----------------------------------------------------------------------------

    async def _wait_in_process(self, run: _Run, within: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run.process.wait()), within)

    async def _wait_on_disk(self, run_dir: Path) -> None:
        """Wait for a run another process started: its runner writes ``status`` at the end."""
        backoff = Backoff(self.config.poll_interval, self.config.max_poll_interval)
        while True:
            state = await asyncio.to_thread(self._state_on_disk, run_dir)
            if state != "running":
                return
            await backoff.sleep()

    def _state_on_disk(self, run_dir: Path) -> str:
        """``running``, a final ansible-runner status, or ``interrupted``: claimed, no status,
        and neither this process nor the claiming one runs it any more."""
        status = _read_text(run_dir / "artifacts" / IDENT / "status")
        if status in _FINAL:
            return status
        run = _LIVE.get(run_dir)
        if run is not None:
            return "running" if run.alive() else "interrupted"
        claim = _read_json(run_dir / CLAIM_FILE) or {}
        if _pid_alive(claim.get("runner_pid")):
            return "running"  # by another agent process, or one before a restart
        if "runner_pid" not in claim and time.time() - float(claim.get("claimed_at") or 0) < 30:
            return "running"  # claimed by another agent process this instant, its runner starting
        # Whoever ran it is gone; a playbook left behind (it ignores SIGHUP) is stopped so that
        # the retry does not race it.
        _kill_group(claim.get("playbook_pid"))
        return "interrupted"

    def _read_run(self, run_dir: Path) -> tuple[str, int | None, list[dict[str, Any]], str]:
        artifacts = run_dir / "artifacts" / IDENT
        status = self._state_on_disk(run_dir)
        rc_text = _read_text(artifacts / "rc")
        rc = int(rc_text) if rc_text and rc_text.lstrip("-").isdigit() else None
        events: list[dict[str, Any]] = []
        events_dir = artifacts / "job_events"
        if events_dir.is_dir():
            for path in events_dir.glob("*.json"):
                if path.name.endswith("-partial.json"):
                    continue
                event = _read_json(path)
                if isinstance(event, dict):
                    events.append(event)
        events.sort(key=lambda e: int(e.get("counter") or 0))
        stdout = _ANSI.sub("", _read_text(artifacts / "stdout", strip=False) or "").replace("\r", "")
        return status, rc, events, stdout

    # -- outcome ----------------------------------------------------------------------------

    def _failure(
        self, run_dir: Path, status: str, rc: int | None, events: list[dict[str, Any]], stdout: str
    ) -> EngineFailure:
        name = self.config.playbook.name
        lines = [line for line in stdout.splitlines() if line.strip()]
        details: dict[str, Any] = {
            "run_dir": str(run_dir),
            "status": status,
            "rc": rc,
            "stdout_tail": "\n".join(lines[-40:])[-6000:],
        }
        if status == "interrupted":
            runner_log = [
                line.strip()
                for line in (_read_text(run_dir / RUNNER_LOG, strip=False) or "").splitlines()
                if line.strip()
            ]
            details["runner_log_tail"] = "\n".join(runner_log[-20:])
            why = f": {runner_log[-1][:500]}" if runner_log else " (killed, or the machine restarted)"
            return EngineFailure(
                f"Ansible run of {name} ended without a result: its runner stopped before the "
                f"playbook finished{why}",
                type="PlaybookInterrupted",
                retryable=True,
                details=details,
            )
        if status == "canceled":
            return EngineFailure(
                f"Ansible run of {name} was cancelled",
                type="PlaybookCancelled",
                retryable=True,
                details=details,
            )
        if status == "timeout":
            return EngineFailure(
                f"Ansible run of {name} passed the binding's timeout and was killed",
                type="PlaybookTimeout",
                retryable=True,
                details=details,
            )
        failed: list[str] = []
        unreachable: list[str] = []
        for event in events:
            kind = _RESULT_EVENTS.get(str(event.get("event")))
            data = event.get("event_data") or {}
            if kind == "failed" and not data.get("ignore_errors"):
                failed.append(self._describe(data, "failed"))
            elif kind == "unreachable" and not data.get("ignore_unreachable"):
                unreachable.append(self._describe(data, "unreachable"))
        details["failed_hosts"] = sorted(
            {
                str((e.get("event_data") or {}).get("host"))
                for e in events
                if e.get("event") == "runner_on_failed"
            }
        )
        details["unreachable_hosts"] = sorted(
            {
                str((e.get("event_data") or {}).get("host"))
                for e in events
                if e.get("event") == "runner_on_unreachable"
            }
        )
        if failed:
            message = f"Ansible playbook {name} failed: " + "; ".join(failed + unreachable)
            return EngineFailure(
                message[:4000],
                type="TaskFailed",
                retryable=self.config.task_failure_retryable,
                details=details,
            )
        if unreachable:
            message = f"Ansible playbook {name} could not reach its hosts: " + "; ".join(unreachable)
            return EngineFailure(message[:4000], type="HostUnreachable", retryable=True, details=details)
        # No task failed: Ansible refused the playbook (a syntax error, a missing role...).
        errors = [line.strip() for line in lines if re.match(r"^\s*(\[ERROR\]|ERROR!)", line)]
        last = errors[-1] if errors else (lines[-1].strip() if lines else "no output")
        return EngineFailure(
            f"Ansible playbook {name} failed (rc {rc}): {last[:1500]}",
            type="PlaybookError",
            retryable=False,
            details=details,
        )

    @staticmethod
    def _describe(data: Mapping[str, Any], kind: str) -> str:
        res = data.get("res") or {}
        msg = str(res.get("msg") or "").strip() if isinstance(res, Mapping) else ""
        stderr = str(res.get("stderr") or "").strip() if isinstance(res, Mapping) else ""
        if stderr and stderr not in msg:
            msg = f"{msg}: {stderr.splitlines()[-1]}" if msg else stderr.splitlines()[-1]
        return f"task {data.get('task')!r} {kind} on {data.get('host')}: {msg or 'no message'}"

    def _output(self, run_dir: Path, rc: int | None, events: list[dict[str, Any]]) -> Any:
        cfg = self.config
        name = cfg.playbook.name
        details = {"run_dir": str(run_dir)}
        stats = next((e for e in reversed(events) if e.get("event") == "playbook_on_stats"), None)
        stats_data = (stats or {}).get("event_data") or {}
        if cfg.output_kind is None:
            return {
                "status": "successful",
                "rc": rc,
                "stats": {
                    key: stats_data.get(key) or {}
                    for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")
                },
            }
        if cfg.output_kind == "stat":
            custom = stats_data.get("artifact_data") or {}
            if cfg.output_name not in custom:
                raise EngineFailure(
                    f"Ansible playbook {name} succeeded but set no stat {cfg.output_name!r}; end it with "
                    f"a set_stats task: data: {{{cfg.output_name}: ...}}, per_host: false",
                    type="OutputMissing",
                    retryable=False,
                    details={**details, "stats": sorted(custom)},
                )
            return custom[cfg.output_name]
        if cfg.output_kind == "fact":
            found: dict[str, Any] = {}
            for event in events:
                data = event.get("event_data") or {}
                res = data.get("res") or {}
                facts = res.get("ansible_facts") if isinstance(res, Mapping) else None
                if event.get("event") == "runner_on_ok" and isinstance(facts, Mapping):
                    if cfg.output_name in facts:
                        found[str(data.get("host"))] = facts[cfg.output_name]
            if cfg.output_host is not None:
                found = {h: v for h, v in found.items() if h == cfg.output_host}
            if not found:
                where = f" on host {cfg.output_host}" if cfg.output_host else ""
                raise EngineFailure(
                    f"Ansible playbook {name} succeeded but set no fact {cfg.output_name!r}{where} "
                    "(set_fact it in a task that runs)",
                    type="OutputMissing",
                    retryable=False,
                    details=details,
                )
            if len(found) > 1:
                raise EngineFailure(
                    f"Ansible playbook {name} set fact {cfg.output_name!r} on several hosts "
                    f"({', '.join(sorted(found))}); name the one in the binding's output.host",
                    type="OutputAmbiguous",
                    retryable=False,
                    details=details,
                )
            return next(iter(found.values()))
        path = run_dir / cfg.output_name
        if not path.is_file():
            raise EngineFailure(
                f"Ansible playbook {name} succeeded but wrote no {cfg.output_name!r}; write the output "
                "as JSON to {{ accord_output_file }} (e.g. ansible.builtin.copy: content: "
                '"{{ result | to_json }}", dest: "{{ accord_output_file }}")',
                type="OutputMissing",
                retryable=False,
                details=details,
            )
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise EngineFailure(
                f"{cfg.output_name!r} written by Ansible playbook {name} is not JSON: {exc}",
                type="OutputNotJson",
                retryable=False,
                details=details,
            ) from exc

    # -- tracing ----------------------------------------------------------------------------

    def _trace(self, run_dir: Path, status: str, rc: int | None, events: list[dict[str, Any]]) -> None:
        """Spans of the run, its plays and each task's result on each host, from the run's events
        (their ``created`` times; a task result's own ``start`` and ``end``), under the current
        span (the agent's engine span) (docs/engines/ansible.md, "Tracing"). Never fails the task."""
        times = [t for t in (_ns(e.get("created")) for e in events) if t is not None]
        if not times:
            return
        start, end = min(times), max(times)
        run_span = tracer.start_span(
            f"ansible.playbook {self.config.playbook.name}",
            start_time=start,
            attributes={
                "ansible.playbook": str(self.config.playbook),
                "ansible.status": status,
                "ansible.rc": rc if rc is not None else -1,
                "ansible.run_dir": str(run_dir),
            },
        )
        if status != "successful":
            run_span.set_status(trace.Status(trace.StatusCode.ERROR, f"playbook {status}"))
        run_context = trace.set_span_in_context(run_span)
        plays = [e for e in events if e.get("event") == "playbook_on_play_start"]
        play_spans: dict[str, trace.Span] = {}
        play_ends: dict[str, int] = {}
        for i, play in enumerate(plays):
            data = play.get("event_data") or {}
            play_start = _ns(play.get("created")) or start
            play_end = _ns(plays[i + 1].get("created")) if i + 1 < len(plays) else end
            span = tracer.start_span(
                f"ansible.play {data.get('play') or data.get('name') or ''}".rstrip(),
                context=run_context,
                start_time=play_start,
                attributes={
                    "ansible.play": str(data.get("play") or ""),
                    "ansible.play.pattern": str(data.get("play_pattern") or ""),
                },
            )
            key = str(data.get("play_uuid") or data.get("uuid") or i)
            play_spans[key] = span
            play_ends[key] = max(play_end or play_start, play_start)
        for event in events:
            result = _RESULT_EVENTS.get(str(event.get("event")))
            if result is None:
                continue
            data = event.get("event_data") or {}
            task_start = _ns(data.get("start")) or _ns(event.get("created"))
            if task_start is None:
                continue
            task_end = _ns(data.get("end")) or task_start
            parent = play_spans.get(str(data.get("play_uuid")))
            res: Mapping[str, Any] = data["res"] if isinstance(data.get("res"), Mapping) else {}
            span = tracer.start_span(
                f"ansible.task {data.get('task') or ''}".rstrip(),
                context=trace.set_span_in_context(parent) if parent is not None else run_context,
                start_time=task_start,
                attributes={
                    "ansible.task": str(data.get("task") or ""),
                    "ansible.task.action": str(data.get("task_action") or ""),
                    "ansible.task.path": str(data.get("task_path") or ""),
                    "ansible.host": str(data.get("host") or ""),
                    "ansible.task.status": result,
                    "ansible.task.changed": bool(res.get("changed")),
                },
            )
            if result in ("failed", "unreachable") and not data.get("ignore_errors"):
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(res.get("msg") or result)[:500]))
            span.end(end_time=max(task_end, task_start))
        for key, span in play_spans.items():
            span.end(end_time=play_ends[key])
        run_span.end(end_time=end)

    # -- housekeeping -----------------------------------------------------------------------

    async def _prune(self) -> None:
        """Remove finished runs older than ``keep_runs`` (at most once an hour)."""
        if time.monotonic() - self._last_prune < min(3600.0, self.config.keep_runs):
            return
        self._last_prune = time.monotonic()
        await asyncio.to_thread(self._prune_now)

    def _prune_now(self) -> None:
        horizon = time.time() - self.config.keep_runs
        with contextlib.suppress(OSError):
            for run_dir in self.config.runs_dir.glob("accord-*"):
                status = run_dir / "artifacts" / IDENT / "status"
                with contextlib.suppress(OSError):
                    if run_dir not in _LIVE and status.stat().st_mtime < horizon:
                        shutil.rmtree(run_dir, ignore_errors=True)


def _signal(pid: Any, signum: int) -> bool:
    if not isinstance(pid, int) or not _pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
    return True


def _kill_group(pid: Any) -> bool:
    """SIGKILL a process group and the groups of every process under its leader: a playbook's
    (ansible-runner starts it as a session leader; its workers start sessions of their own, where
    a task's command runs) or a runner's. False if not running."""
    if not isinstance(pid, int) or not _pid_alive(pid):
        return False
    kill_groups(process_groups(pid))
    return True


def _read_text(path: Path, *, strip: bool = True) -> str | None:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return text.strip() if strip else text


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(text, encoding="utf-8")


def _read_json(path: Path) -> Any:
    text = _read_text(path, strip=False)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _write_json(path: Path, value: Any) -> None:
    """Written whole or not at all (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value), encoding="utf-8")
    os.replace(tmp, path)
