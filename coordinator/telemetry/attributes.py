"""Span attribute names Accord's spans carry (coordinator and agents use the same names).

The coordinator's run/step/attempt spans carry the run, workflow, step, contract, attempt and
agent; failed spans carry the error type and message. Visibility rules read the owner of a span
from these (see ``visibility.py``), and the OTLP receiver reads ``accord.run_id``.
"""

from __future__ import annotations

RUN_ID = "accord.run_id"
WORKFLOW = "accord.workflow"  # "team/name"
WORKFLOW_VERSION = "accord.workflow_version"
STEP_ID = "accord.step_id"
CONTRACT = "accord.contract"  # "team/name"
CONTRACT_VERSION = "accord.contract_version"  # exact pinned version
TEAM = "accord.team"  # owner of the contract (step/attempt) or workflow (run)
TASK_ID = "accord.task_id"
ATTEMPT = "accord.attempt"  # 1-based attempt number (retry number = attempt - 1)
ATTEMPT_ID = "accord.attempt_id"
AGENT_ID = "accord.agent_id"
QUEUE_WAIT_MS = "accord.queue_wait_ms"  # attempt: from scheduled until an agent took it (or it ended)
STARTED_UNIX_MS = "accord.started_unix_ms"  # attempt: when an agent took it
ERROR_TYPE = "error.type"  # OTel semantic convention
ERROR_MESSAGE = "error.message"
EVENT_ID = "accord.event_id"
REDACTED = "accord.redacted"
# step: a call to a retired major served through a migration adapter, "team/name@1 via 2.0.0"
ADAPTED = "accord.adapted"
# run: what the caller should know about the versions it pinned (deprecations, overrides)
WARNINGS = "accord.warnings"

# The attributes a contract-level box keeps for a viewer of another team.
BOX_ATTRIBUTES = (CONTRACT, CONTRACT_VERSION, ADAPTED)
