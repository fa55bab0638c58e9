"""One Ansible run, in a process of its own: ``python -P .../team_agent/engines/_ansible_run.py``.

A script on purpose: it imports nothing of Accord (only the standard library and
ansible-runner), so a run's process does not load the agent's gRPC and telemetry.

The ``ansible`` engine (team_agent/engines/ansible.py) starts this with the run's ansible-runner
arguments as JSON on stdin. It runs ``ansible_runner.run``, which starts ``ansible-playbook``
through pexpect: a ``fork()`` that then runs Python code in the child before ``exec``. Doing
that inside the agent, whose gRPC and OpenTelemetry threads run beside it, crashed the child
(SIGSEGV) about one run in four; this process has no other threads, so the fork is safe
(docs/engines/ansible.md, "Why a process per run").

SIGTERM (or SIGINT) cancels: the flag makes ansible-runner's ``cancel_callback`` answer true and
ansible-runner ends the playbook and records the run ``canceled``; this process then kills the
playbook's process group, so nothing it started is left running. That group (the playbook's pid,
which leads it), from the first event, is added to the run's claim file so that a later agent can
stop a playbook left behind.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

CLAIM_FILE = "accord.json"


def _record_playbook_pid(run_dir: Path, pid: int) -> None:
    claim_path = run_dir / CLAIM_FILE
    try:
        claim = json.loads(claim_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        claim = {}
    claim["playbook_pid"] = pid
    tmp = claim_path.with_name(claim_path.name + ".tmp")
    tmp.write_text(json.dumps(claim), encoding="utf-8")
    os.replace(tmp, claim_path)


def _children() -> dict[int, list[int]]:
    """Parent pid -> its children's pids, from /proc (Linux; elsewhere: none)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return children
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                data = stat.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2 :].split()  # after "pid (comm) ": state, ppid, ...
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def process_groups(root: int) -> set[int]:
    """The process groups of ``root`` and of every process under it. Ansible's workers are
    forks of ansible-playbook that start sessions of their own (and so groups of their own): a
    task's command runs in the worker's group, not the playbook's."""
    groups = {root}
    children = _children()
    stack, seen = [root], {root}
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
                try:
                    groups.add(os.getpgid(child))
                except OSError:
                    pass  # ended meanwhile
    return groups


def _become_subreaper() -> None:
    """Have the processes orphaned under this one (Ansible's workers, once ansible-playbook is
    killed) reparented to it rather than to init, so they can still be found from it (Linux's
    PR_SET_CHILD_SUBREAPER; elsewhere nothing happens)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def kill_groups(groups: set[int]) -> None:
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass  # gone already


def main() -> int:
    import ansible_runner

    kwargs: dict[str, Any] = json.loads(sys.stdin.read())
    run_dir = Path(kwargs["private_data_dir"])
    cancelled = threading.Event()

    doomed: set[int] = set()
    seen_pid: list[int] = []

    def cancel(signum: int, frame: object) -> None:
        # What runs under the playbook now, before ansible-runner ends it (its workers, reparented
        # to init once it is gone, could no longer be found from it): killed once the runner
        # has recorded the run cancelled.
        if seen_pid:
            doomed.update(process_groups(seen_pid[0]))
        cancelled.set()

    signal.signal(signal.SIGTERM, cancel)
    signal.signal(signal.SIGINT, cancel)

    def on_event(event: dict[str, Any]) -> bool:
        pid = event.get("pid") or (event.get("event_data") or {}).get("pid")
        if not seen_pid and isinstance(pid, int):
            # The event may come from a worker (a fork of ansible-playbook): what is recorded
            # is the process group ansible-playbook leads (pexpect starts it as a session
            # leader); its workers' groups are found from it (process_groups).
            try:
                group = os.getpgid(pid)
            except OSError:
                return True  # ended already; a later event names a live one
            seen_pid.append(group)
            _record_playbook_pid(run_dir, group)
        return True  # keep the event's file

    _become_subreaper()
    runner = ansible_runner.run(**kwargs, cancel_callback=cancelled.is_set, event_handler=on_event)
    if runner.status in ("canceled", "timeout"):
        # ansible-runner ends ansible-playbook, not what runs under it: a cancelled or timed-out
        # run leaves nothing behind (a task's `sleep 120` outlived both in its worker's group).
        # Everything still under this process (its orphans come here) but this process itself.
        kill_groups(doomed | (process_groups(os.getpid()) - {os.getpgid(0)}))
    print(json.dumps({"status": runner.status, "rc": runner.rc}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
