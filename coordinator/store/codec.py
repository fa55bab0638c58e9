"""JSON forms of domain objects the Store keeps (shared by every Store implementation)."""

from __future__ import annotations

from typing import Any

from contracts.model import Contract, Deprecation, RetryPolicy, Timeouts


def retry_to_json(policy: RetryPolicy) -> dict[str, Any]:
    return {
        "max_attempts": policy.max_attempts,
        "initial_backoff": policy.initial_backoff,
        "backoff_coefficient": policy.backoff_coefficient,
        "max_backoff": policy.max_backoff,
        "non_retryable": list(policy.non_retryable),
    }


def retry_from_json(value: dict[str, Any] | None) -> RetryPolicy:
    value = value or {}
    return RetryPolicy(
        max_attempts=value.get("max_attempts"),
        initial_backoff=value.get("initial_backoff"),
        backoff_coefficient=value.get("backoff_coefficient"),
        max_backoff=value.get("max_backoff"),
        non_retryable=tuple(value.get("non_retryable") or ()),
    )


def timeouts_to_json(timeouts: Timeouts) -> dict[str, Any]:
    return {
        "schedule_to_start": timeouts.schedule_to_start,
        "start_to_close": timeouts.start_to_close,
        "heartbeat": timeouts.heartbeat,
    }


def timeouts_from_json(value: dict[str, Any] | None) -> Timeouts:
    value = value or {}
    return Timeouts(
        schedule_to_start=value.get("schedule_to_start"),
        start_to_close=value.get("start_to_close"),
        heartbeat=value.get("heartbeat"),
    )


def deprecation_to_json(value: Deprecation | None) -> dict[str, Any] | None:
    return None if value is None else {"sunset": value.sunset, "replacement": value.replacement}


def deprecation_from_json(value: dict[str, Any] | None) -> Deprecation | None:
    return None if not value else Deprecation(value["sunset"], value.get("replacement", ""))


def contract_to_json(contract: Contract) -> dict[str, Any]:
    """Parsed fields (without source text or deprecation, which are stored beside)."""
    return {
        "name": contract.name,
        "version": contract.version,
        "description": contract.description,
        "input_schema": contract.input_schema,
        "output_schema": contract.output_schema,
        "timeouts": timeouts_to_json(contract.timeouts),
        "retry": retry_to_json(contract.retry),
        "idempotent": contract.idempotent,
        "visibility": contract.visibility,
        "sensitive": list(contract.sensitive),
        "kind": contract.kind,
        "source_name": contract.source_name,
    }


def contract_from_json(
    value: dict[str, Any], source_text: str, deprecated: dict[str, Any] | None
) -> Contract:
    return Contract(
        name=value["name"],
        version=value["version"],
        input_schema=value["input_schema"],
        output_schema=value["output_schema"],
        description=value.get("description", ""),
        timeouts=timeouts_from_json(value.get("timeouts")),
        retry=retry_from_json(value.get("retry")),
        idempotent=bool(value.get("idempotent")),
        visibility=value.get("visibility", "public"),
        sensitive=tuple(value.get("sensitive") or ()),
        deprecated=deprecation_from_json(deprecated),
        kind=value.get("kind", "task"),
        source_text=source_text,
        source_name=value.get("source_name", ""),
    )


def version_key(version: str) -> tuple[int, int, int]:
    """Sort key of an exact MAJOR.MINOR.PATCH version."""
    parts = [*version.split("-", 1)[0].split("."), "0", "0", "0"][:3]
    try:
        return (int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return (0, 0, 0)
