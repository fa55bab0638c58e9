"""Accord's error hierarchy. Every error a user can meet derives from ``AccordError``.

AccordError
├── FileProblemsError        a contract/workflow/config file has problems (all listed)
├── ValidationFailed         a payload does not match a schema (every violation listed)
├── InvalidSchemaError       a JSON Schema that is not valid 2020-12 (e.g. given to the checker)
├── CompositionError         a workflow does not type-check against its contracts
├── VersionError             a version or range that does not parse or resolve
├── DurationError            a duration that does not parse (also a ValueError)
├── ReferenceError_          a ``${...}`` reference that cannot be evaluated
└── RemoteError              raised by clients for a refused or failed call
    ├── UnreachableError     the coordinator cannot be reached
    ├── OverloadedError      the coordinator kept refusing the call as overloaded (exit 3)
    ├── TlsError             client and coordinator do not agree on TLS (made by the client)
    ├── UnauthenticatedError missing or wrong token
    ├── PermissionDeniedError another team's object
    ├── NotFoundError
    ├── InvalidArgumentError
    └── FailedPreconditionError  refused by a rule (exit 1)
        └── AlreadyExistsError   it exists already (exit 2)
"""

from __future__ import annotations

from dataclasses import dataclass, field


class AccordError(Exception):
    """Root of every error Accord raises on purpose. ``exit_code`` is the command line's exit
    code for it (docs/troubleshooting.md, "Exit codes")."""

    exit_code: int = 2


@dataclass(frozen=True)
class Problem:
    """One problem in a file: where it is and what to do about it."""

    file: str
    message: str
    line: int | None = None
    field: str = ""  # dotted path ("steps.charge.contract") or JSON pointer

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class FileProblemsError(AccordError):
    """A file has one or more problems; ``problems`` lists all of them."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass(frozen=True)
class Violation:
    """One schema violation of a payload, at a JSON path such as ``$.items[0].sku``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ValidationFailed(AccordError):
    """A payload does not match its schema; ``violations`` lists every one."""

    exit_code = 2

    def __init__(self, what: str, violations: list[Violation]) -> None:
        self.what = what
        self.violations = violations
        lines = "; ".join(str(v) for v in violations)
        super().__init__(f"{what} does not match its schema: {lines}")


class InvalidSchemaError(AccordError):
    """A JSON Schema that is not a valid JSON Schema 2020-12 (``problems`` lists each, at its
    JSON path inside the schema); the compatibility checker refuses to reason about it."""

    exit_code = 2

    def __init__(self, what: str, problems: list[Violation] | None = None) -> None:
        self.what = what
        self.problems = list(problems or [])
        if not self.problems:
            super().__init__(what)
            return
        listed = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{what} is not a valid JSON Schema 2020-12: {listed}{more}; fix the schema")


class CompositionError(AccordError):
    exit_code = 2


class VersionError(AccordError):
    exit_code = 2


class DurationError(AccordError, ValueError):
    """A duration (``30s``, ``1m30s``) that does not parse; a ValueError too, for callers that
    read many kinds of values and catch that."""

    exit_code = 2


class ReferenceError_(AccordError):  # trailing underscore: avoid shadowing the builtin
    exit_code = 2


@dataclass
class RemoteError(AccordError):
    """A call to the coordinator failed; ``message`` is the server's explanation."""

    message: str = ""
    details: list[str] = field(default_factory=list)
    exit_code = 3

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return "\n".join([self.message, *self.details])


class UnreachableError(RemoteError):
    exit_code = 3


class OverloadedError(RemoteError):
    """The coordinator answered RESOURCE_EXHAUSTED (too many calls at once, or a team's start
    rate); clients retry it for up to a minute (``contracts.channels.OverloadRetry``) before they
    raise it. ``retry_after_ms``, set by the coordinator, goes out as the ``retry-after-ms`` hint."""

    exit_code = 3
    retry_after_ms = 0


class TlsError(RemoteError):
    """The connection failed for a reason of TLS: one side speaks it and the other not, or a
    certificate was refused. Made by the client from what the handshake did
    (``contracts.channels``), never sent by a server; retrying does not help."""

    exit_code = 3


class UnauthenticatedError(RemoteError):
    exit_code = 3


class PermissionDeniedError(RemoteError):
    exit_code = 3


class NotFoundError(RemoteError):
    exit_code = 2


class InvalidArgumentError(RemoteError):
    exit_code = 2


class FailedPreconditionError(RemoteError):
    """The call was understood but refused by a rule (e.g. a breaking contract change)."""

    exit_code = 1


class AlreadyExistsError(FailedPreconditionError):
    """What the call would create exists already (e.g. a team): bad input, exit 2."""

    exit_code = 2
