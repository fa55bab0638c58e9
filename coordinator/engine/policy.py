"""The layered retry/timeout policy of a step.

platform default < team default (from its agents) < contract < workflow step; a step may not
allow more attempts than its contract does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from contracts.model import PLATFORM_RETRY, PLATFORM_TIMEOUTS, Contract, RetryPolicy, StepSpec, Timeouts
from coordinator.store import codec


def effective_policy(
    step: StepSpec | None, contract: Contract, team_retry: RetryPolicy, team_timeouts: Timeouts
) -> tuple[RetryPolicy, Timeouts]:
    retry = contract.retry.over(team_retry.over(PLATFORM_RETRY))
    timeouts = contract.timeouts.over(team_timeouts.over(PLATFORM_TIMEOUTS))
    if step is not None:
        retry = step.retry.over(retry)
        timeouts = step.timeouts.over(timeouts)
    if contract.retry.max_attempts is not None and retry.max_attempts is not None:
        retry = replace(retry, max_attempts=min(retry.max_attempts, contract.retry.max_attempts))
    return retry, timeouts


def policy_to_json(retry: RetryPolicy, timeouts: Timeouts) -> dict[str, Any]:
    return {"retry": codec.retry_to_json(retry), "timeouts": codec.timeouts_to_json(timeouts)}


def policy_from_json(value: dict[str, Any]) -> tuple[RetryPolicy, Timeouts]:
    return codec.retry_from_json(value.get("retry")), codec.timeouts_from_json(value.get("timeouts"))
