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
ansible-runner kills the playbook's process group and records the run ``canceled``. The pid of
the playbook, from its first event, is added to the run's claim file so that a later agent can
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


def main() -> int:
    import ansible_runner

    kwargs: dict[str, Any] = json.loads(sys.stdin.read())
    run_dir = Path(kwargs["private_data_dir"])
    cancelled = threading.Event()

    def cancel(signum: int, frame: object) -> None:
        cancelled.set()

    signal.signal(signal.SIGTERM, cancel)
    signal.signal(signal.SIGINT, cancel)
    seen_pid: list[int] = []

    def on_event(event: dict[str, Any]) -> bool:
        pid = event.get("pid") or (event.get("event_data") or {}).get("pid")
        if not seen_pid and isinstance(pid, int):
            seen_pid.append(pid)
            _record_playbook_pid(run_dir, pid)
        return True  # keep the event's file

    runner = ansible_runner.run(**kwargs, cancel_callback=cancelled.is_set, event_handler=on_event)
    print(json.dumps({"status": runner.status, "rc": runner.rc}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
