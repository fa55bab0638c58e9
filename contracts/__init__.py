"""Accord contracts: the language coordinator and agents share.

The public API is re-exported here, imported lazily on first use (PEP 562): importing
``contracts.errors`` from a command line must not pay for JSON Schema and the compatibility
checker. The modules behind it are

* :mod:`contracts.model`        frozen dataclasses: Contract, Workflow, StepSpec, Trigger, ...
* :mod:`contracts.errors`       the error hierarchy, rooted at AccordError
* :mod:`contracts.loader`       reading contract and workflow files (YAML or JSON)
* :mod:`contracts.validation`   payload validation against JSON Schema 2020-12
* :mod:`contracts.versions`     semantic versions and version ranges
* :mod:`contracts.durations`    durations (``1m30s``), one grammar for every file and option
* :mod:`contracts.refs`         the ``${...}`` reference language
* :mod:`contracts.compat`       schema compatibility (input widens, output narrows)
* :mod:`contracts.composition`  type-checking workflows against contracts; consumer reads

Not re-exported, because they need gRPC: :mod:`contracts.grpc_errors` (the one map between
errors and gRPC status codes, both directions), :mod:`contracts.channels` (the one place clients
open channels to the coordinator, with their TLS settings) and the generated wire code,
``contracts._wire``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from contracts.compat import (
        Finding,
        check_contract_compat,
        check_input_compat,
        check_output_compat,
        check_subschema,
        is_breaking,
    )
    from contracts.composition import (
        CompositionResult,
        ConsumerImpact,
        ContractCatalog,
        ContractResolver,
        Read,
        check_workflow,
        consumer_impacts,
        reads_of,
    )
    from contracts.durations import parse_duration
    from contracts.errors import (
        AccordError,
        CompositionError,
        DurationError,
        FailedPreconditionError,
        FileProblemsError,
        InvalidArgumentError,
        InvalidSchemaError,
        NotFoundError,
        PermissionDeniedError,
        Problem,
        ReferenceError_,
        RemoteError,
        TlsError,
        UnauthenticatedError,
        UnreachableError,
        ValidationFailed,
        VersionError,
        Violation,
    )
    from contracts.loader import (
        load_contract,
        load_contract_dir,
        load_workflow,
        parse_contract_text,
        parse_workflow_text,
    )
    from contracts.model import (
        PLATFORM_RETRY,
        PLATFORM_TIMEOUTS,
        Contract,
        Deprecation,
        RetryPolicy,
        StepSpec,
        Timeouts,
        Trigger,
        Workflow,
    )
    from contracts.refs import Ref, evaluate, find_references, format_path, parse_path, truthy
    from contracts.validation import (
        canonical_json,
        check_schema,
        compiled_validator,
        ensure_valid,
        validate_payload,
    )
    from contracts.versions import (
        VersionRange,
        is_version,
        majors_of,
        parse_range,
        parse_version,
        resolve,
        single_major,
        split_ref,
    )

__all__ = [
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

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "PLATFORM_RETRY": "contracts.model",
    "PLATFORM_TIMEOUTS": "contracts.model",
    "AccordError": "contracts.errors",
    "CompositionError": "contracts.errors",
    "CompositionResult": "contracts.composition",
    "ConsumerImpact": "contracts.composition",
    "Contract": "contracts.model",
    "ContractCatalog": "contracts.composition",
    "ContractResolver": "contracts.composition",
    "Deprecation": "contracts.model",
    "DurationError": "contracts.errors",
    "FailedPreconditionError": "contracts.errors",
    "FileProblemsError": "contracts.errors",
    "Finding": "contracts.compat",
    "InvalidArgumentError": "contracts.errors",
    "InvalidSchemaError": "contracts.errors",
    "NotFoundError": "contracts.errors",
    "PermissionDeniedError": "contracts.errors",
    "Problem": "contracts.errors",
    "Read": "contracts.composition",
    "Ref": "contracts.refs",
    "ReferenceError_": "contracts.errors",
    "RemoteError": "contracts.errors",
    "RetryPolicy": "contracts.model",
    "StepSpec": "contracts.model",
    "Timeouts": "contracts.model",
    "TlsError": "contracts.errors",
    "Trigger": "contracts.model",
    "UnauthenticatedError": "contracts.errors",
    "UnreachableError": "contracts.errors",
    "ValidationFailed": "contracts.errors",
    "VersionError": "contracts.errors",
    "VersionRange": "contracts.versions",
    "Violation": "contracts.errors",
    "Workflow": "contracts.model",
    "canonical_json": "contracts.validation",
    "check_contract_compat": "contracts.compat",
    "check_input_compat": "contracts.compat",
    "check_output_compat": "contracts.compat",
    "check_schema": "contracts.validation",
    "check_subschema": "contracts.compat",
    "check_workflow": "contracts.composition",
    "compiled_validator": "contracts.validation",
    "consumer_impacts": "contracts.composition",
    "ensure_valid": "contracts.validation",
    "evaluate": "contracts.refs",
    "find_references": "contracts.refs",
    "format_path": "contracts.refs",
    "is_breaking": "contracts.compat",
    "is_version": "contracts.versions",
    "load_contract": "contracts.loader",
    "load_contract_dir": "contracts.loader",
    "load_workflow": "contracts.loader",
    "majors_of": "contracts.versions",
    "parse_contract_text": "contracts.loader",
    "parse_duration": "contracts.durations",
    "parse_path": "contracts.refs",
    "parse_range": "contracts.versions",
    "parse_version": "contracts.versions",
    "parse_workflow_text": "contracts.loader",
    "reads_of": "contracts.composition",
    "resolve": "contracts.versions",
    "single_major": "contracts.versions",
    "split_ref": "contracts.versions",
    "truthy": "contracts.refs",
    "validate_payload": "contracts.validation",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'contracts' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
