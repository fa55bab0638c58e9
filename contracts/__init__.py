"""Accord contracts: the language coordinator and agents share.

The public API is re-exported here; the modules behind it are

* :mod:`contracts.model`        frozen dataclasses: Contract, Workflow, StepSpec, Trigger, ...
* :mod:`contracts.errors`       the error hierarchy, rooted at AccordError
* :mod:`contracts.loader`       reading contract and workflow files (YAML or JSON)
* :mod:`contracts.validation`   payload validation against JSON Schema 2020-12
* :mod:`contracts.versions`     semantic versions and version ranges
* :mod:`contracts.refs`         the ``${...}`` reference language
* :mod:`contracts.compat`       schema compatibility (input widens, output narrows)
* :mod:`contracts.composition`  type-checking workflows against contracts; consumer reads
"""

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
from contracts.errors import (
    AccordError,
    CompositionError,
    FailedPreconditionError,
    FileProblemsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    Problem,
    ReferenceError_,
    RemoteError,
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
    parse_duration,
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
    "FailedPreconditionError",
    "FileProblemsError",
    "Finding",
    "InvalidArgumentError",
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
