"""The one map between Accord's errors and gRPC status codes, in both directions.

The coordinator's servicers abort a call with ``status_of(error)`` and ``details_of(error)``
(``coordinator.api.errors``); every client (the CLI's ``coordinator.client``, the web UI's data
source, the team agent's ``team_agent.client``) turns the failed call back into an error with
``error_from_rpc``. Both directions live here, side by side, so they stay each other's inverse
(``tests/contracts/test_grpc_errors.py`` checks the round trip for every error class):

=========================  ======================================  ====
error                      status code                             exit
=========================  ======================================  ====
UnauthenticatedError       UNAUTHENTICATED                         3
PermissionDeniedError      PERMISSION_DENIED                       3
NotFoundError              NOT_FOUND                               2
InvalidArgumentError       INVALID_ARGUMENT (and any other         2
                           AccordError: a file, a payload, a
                           version or a reference that is wrong)
AlreadyExistsError         ALREADY_EXISTS                          2
FailedPreconditionError    FAILED_PRECONDITION                     1
UnreachableError           UNAVAILABLE; from a client also         3
                           DEADLINE_EXCEEDED and CANCELLED
OverloadedError            RESOURCE_EXHAUSTED (clients retry it    3
                           for a minute, honouring retry-after-ms)
RemoteError                UNKNOWN; from a client any other code   3
=========================  ======================================  ====

UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED all mean the coordinator did not answer (it is down,
too slow, or went away in the middle of the call): callers retry an ``UnreachableError`` (the
agent, ``accord run --wait``) and the CLI exits 3.

The details of a status carry the explanation on their first line and one finding per line
after it; ``error_from_rpc`` splits them into ``message`` and ``details`` again.
"""

from __future__ import annotations

import grpc

from contracts.errors import (
    AccordError,
    AlreadyExistsError,
    FailedPreconditionError,
    FileProblemsError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RemoteError,
    UnauthenticatedError,
    UnreachableError,
)

__all__ = ["ERROR_OF_STATUS", "details_of", "error_class_of", "error_from_rpc", "status_of"]

# Most specific first: AlreadyExistsError is a FailedPreconditionError.
_STATUS_OF_ERROR: tuple[tuple[type[RemoteError], grpc.StatusCode], ...] = (
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (UnreachableError, grpc.StatusCode.UNAVAILABLE),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (RemoteError, grpc.StatusCode.UNKNOWN),
)

ERROR_OF_STATUS: dict[grpc.StatusCode, type[RemoteError]] = {
    **{code: error for error, code in _STATUS_OF_ERROR},
    grpc.StatusCode.DEADLINE_EXCEEDED: UnreachableError,
    grpc.StatusCode.CANCELLED: UnreachableError,
}


def status_of(exc: AccordError) -> grpc.StatusCode:
    """The status code a servicer aborts with for ``exc``."""
    for error, code in _STATUS_OF_ERROR:
        if isinstance(exc, error):
            return code
    return grpc.StatusCode.INVALID_ARGUMENT  # a problem with what the caller sent


def details_of(exc: AccordError) -> str:
    """The status details for ``exc``: the explanation, then one finding per line."""
    if isinstance(exc, RemoteError):
        return "\n".join([exc.message, *exc.details])
    if isinstance(exc, FileProblemsError):
        return "\n".join(str(p) for p in exc.problems)
    return str(exc)


def error_class_of(code: grpc.StatusCode) -> type[RemoteError]:
    """The most specific error for a status code; ``RemoteError`` for a code Accord never sends."""
    return ERROR_OF_STATUS.get(code, RemoteError)


def error_from_rpc(exc: grpc.RpcError, *, address: str = "", call: str = "") -> RemoteError:
    """The domain error for a failed call; raise it ``from exc``.

    ``address`` (the coordinator's host:port) makes an unreachable coordinator say where it was
    looked for; ``call`` ("PollTask") prefixes the message with what was being done.
    """
    code_of = getattr(exc, "code", None)
    code = code_of() if callable(code_of) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details_of_call = getattr(exc, "details", None)
    text = (details_of_call() if callable(details_of_call) else "") or ""
    first, *rest = text.split("\n")
    error = error_class_of(code)
    message = first or code.name
    if error is UnreachableError and address:
        message = f"cannot reach the coordinator at {address}: {message}"
    if call:
        message = f"{call}: {message}"
    return error(message, [line for line in rest if line])
