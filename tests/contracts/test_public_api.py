"""The public API of ``contracts`` is deliberate: this list changes only on purpose."""

from __future__ import annotations

import contracts

EXPECTED = [
    "PLATFORM_RETRY",
    "PLATFORM_TIMEOUTS",
    "AccordError",
    "CompositionError",
    "CompositionResult",
    "ConsumerImpact",
    "Contract",
    "ContractCatalog",
    "ContractResolver",
    "Deprecation",
    "DurationError",
    "FailedPreconditionError",
    "FileProblemsError",
    "Finding",
    "InvalidArgumentError",
    "InvalidSchemaError",
    "NotFoundError",
    "PermissionDeniedError",
    "Problem",
    "Read",
    "Ref",
    "ReferenceError_",
    "RemoteError",
    "RetryPolicy",
    "StepSpec",
    "Timeouts",
    "TlsError",
    "Trigger",
    "UnauthenticatedError",
    "UnreachableError",
    "ValidationFailed",
    "VersionError",
    "VersionRange",
    "Violation",
    "Workflow",
    "canonical_json",
    "check_contract_compat",
    "check_input_compat",
    "check_output_compat",
    "check_schema",
    "check_subschema",
    "check_workflow",
    "compiled_validator",
    "consumer_impacts",
    "ensure_valid",
    "evaluate",
    "find_references",
    "format_path",
    "is_breaking",
    "is_version",
    "load_contract",
    "load_contract_dir",
    "load_workflow",
    "majors_of",
    "parse_contract_text",
    "parse_duration",
    "parse_path",
    "parse_range",
    "parse_version",
    "parse_workflow_text",
    "reads_of",
    "resolve",
    "single_major",
    "split_ref",
    "truthy",
    "validate_payload",
]


def test_export_list_is_pinned() -> None:
    assert contracts.__all__ == EXPECTED


def test_every_export_exists_and_is_documented() -> None:
    for name in contracts.__all__:
        value = getattr(contracts, name)
        # the error and model modules document their classes as a whole (tree, module docstring)
        if callable(value) and value.__module__ not in ("contracts.errors", "contracts.model"):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_star_import_gives_exactly_the_exports() -> None:
    namespace: dict[str, object] = {}
    exec("from contracts import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(EXPECTED)
