"""A moto server (``moto[server]``, pinned in the ``dev`` extra) for the ``stepfunctions`` tests, in
a subprocess of its own on 127.0.0.1, port 0, with moto's state machine interpreter on.

What moto really executes (moto 5.2, ``{"stepfunctions": {"execute_state_machine": true}}``, set
through the server's ``POST /moto-api/config``): without that setting an execution is a record
that never runs (it stays RUNNING; ``SF_EXECUTION_HISTORY_TYPE`` only picks the canned history it
shows). With it, moto's "parser" backend (a port of LocalStack's ASL interpreter) runs the
definition in a thread: Pass, Wait, Choice, Succeed, Fail, Parallel and Map states, intrinsic
functions, Retry/Catch, execution-level TimeoutSeconds, StopExecution (ABORTED), the event
history, and Task states of service integrations it can call back into itself, such as
``arn:aws:states:::sqs:sendMessage.waitForTaskToken`` with ``SendTaskSuccess`` /
``SendTaskFailure`` (the callback pattern the example's worker uses). Activities
(``GetActivityTask``) are not implemented, and Lambda tasks would need Docker.

Run as a script, it serves moto's own WSGI app (what ``moto_server`` serves) through werkzeug on
port 0 and prints the address; it sets ``MOTO_PORT`` to the real port first, because the
interpreter's service integrations call the server back at ``localhost:$MOTO_PORT``, which
``moto_server -p 0`` would leave at 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/accord-stepfunctions-test"
# moto accepts any credentials; these are never real ones.
CREDENTIALS = {"access_key_id": "AKIDACCORDTEST", "secret_access_key": "accord-test-secret"}


def serve() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler)
    os.environ["MOTO_PORT"] = str(server.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"moto listening on http://127.0.0.1:{server.port}", flush=True)
    server.serve_forever()


class MotoServer:
    """One moto server process; ``url`` once started."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.log_path = workdir / "moto.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._clients: dict[str, Any] = {}

    def start(self, timeout: float = 60.0) -> MotoServer:
        import httpx

        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve())],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + timeout
        while not self.url:
            for line in self.log_path.read_text(errors="replace").splitlines():
                if line.startswith("moto listening on "):
                    self.url = line.split()[-1]
            if self.url:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto did not start; its log:\n{self.log()}")
            time.sleep(0.05)
        # Run the definitions (moto's interpreter), not just record the executions.
        reply = httpx.post(
            f"{self.url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10
        )
        reply.raise_for_status()
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def client(self, service: str = "stepfunctions") -> Any:
        """A boto3 client of this server (one per service: they are thread-safe)."""
        import boto3

        if service in self._clients:
            return self._clients[service]
        self._clients[service] = boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=CREDENTIALS["access_key_id"],
            aws_secret_access_key=CREDENTIALS["secret_access_key"],
        )
        return self._clients[service]

    def create_state_machine(self, name: str, definition: dict[str, Any], **extra: Any) -> str:
        """Create (or replace) state machine ``name``; its ARN."""
        sfn = self.client()
        arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
        with contextlib.suppress(Exception):  # none of that name yet
            sfn.delete_state_machine(stateMachineArn=arn)
        created = sfn.create_state_machine(
            name=name, definition=json.dumps(definition), roleArn=ROLE_ARN, **extra
        )
        return str(created["stateMachineArn"])

    def binding(self, state_machine_arn: str, **extra: Any) -> dict[str, Any]:
        """The ``with:`` mapping of a binding to ``state_machine_arn`` on this server."""
        return {
            "state_machine_arn": state_machine_arn,
            "endpoint_url": self.url,
            **CREDENTIALS,
            "poll_interval": "50ms",
            "max_poll_interval": "200ms",
            "timeout": "10s",
            **extra,
        }


if __name__ == "__main__":
    serve()
