"""The error ↔ status-code map is one table: every error survives the trip to the wire and back."""

from __future__ import annotations

import importlib
import pkgutil

import grpc
import pytest

import contracts
from contracts import errors
from contracts.errors import (
    AccordError,
    AlreadyExistsError,
    FileProblemsError,
    InvalidArgumentError,
    Problem,
    RemoteError,
    UnreachableError,
)
from contracts.grpc_errors import details_of, error_from_rpc, status_of


class _FailedCall(grpc.RpcError):
    """What a stub raises: a status code and its details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _subclasses(cls: type[AccordError]) -> list[type[AccordError]]:
    found: list[type[AccordError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def _every_error_class() -> list[type[AccordError]]:
    """Every error class of the shared library (what both sides of a call know)."""
    for module in pkgutil.iter_modules(contracts.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"contracts.{module.name}")
    found = {cls for cls in _subclasses(AccordError) if cls.__module__.startswith("contracts.")}
    return sorted({AccordError, *found}, key=lambda c: c.__qualname__)


def _instance(cls: type[AccordError]) -> AccordError:
    if issubclass(cls, RemoteError):
        return cls("it went wrong", ["first finding", "second finding"])
    if issubclass(cls, FileProblemsError):
        return cls([Problem("c.yaml", "it went wrong", 3, "timeout"), Problem("c.yaml", "and this", 4)])
    if cls.__name__ == "ValidationFailed":
        return cls("the run input", [errors.Violation("$.order_id", "is required")])
    return cls("it went wrong")


def _round_trip(exc: AccordError) -> RemoteError:
    return error_from_rpc(_FailedCall(status_of(exc), details_of(exc)))


def test_the_contracts_errors_are_all_found() -> None:
    names = {cls.__name__ for cls in _every_error_class()}
    assert {
        "RemoteError",
        "UnreachableError",
        "AlreadyExistsError",
        "FileProblemsError",
        "DurationError",
    } <= names


# Errors a client makes itself from what its connection did, which no server ever sends.
CLIENT_MADE = {errors.TlsError}


@pytest.mark.parametrize(
    "cls", [c for c in _every_error_class() if c not in CLIENT_MADE], ids=lambda cls: cls.__name__
)
def test_every_error_survives_the_round_trip(cls: type[AccordError]) -> None:
    exc = _instance(cls)
    back = _round_trip(exc)
    if issubclass(cls, RemoteError):
        assert type(back) is cls, f"{cls.__name__} → {status_of(exc).name} → {type(back).__name__}"
        assert (back.message, back.details) == (exc.message, exc.details)
    else:
        # A local error is a problem with what the caller sent: bad input, exit 2 on both sides.
        assert type(back) is InvalidArgumentError
        assert back.exit_code == exc.exit_code == 2
        assert str(back) == details_of(exc)


def test_already_exists_keeps_its_own_class_and_exit_code() -> None:
    back = _round_trip(AlreadyExistsError("team payments already exists"))
    assert isinstance(back, AlreadyExistsError) and back.exit_code == 2


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED]
)
def test_a_coordinator_that_does_not_answer_is_unreachable(code: grpc.StatusCode) -> None:
    error = error_from_rpc(_FailedCall(code, ""), address="127.0.0.1:1")
    assert type(error) is UnreachableError and error.exit_code == 3
    assert str(error) == f"cannot reach the coordinator at 127.0.0.1:1: {code.name}"


def test_a_code_accord_never_sends_is_a_remote_error() -> None:
    error = error_from_rpc(_FailedCall(grpc.StatusCode.INTERNAL, "internal error: KeyError: 'x'"))
    assert type(error) is RemoteError and error.exit_code == 3
    assert error.message == "internal error: KeyError: 'x'"


def test_the_call_prefixes_the_message_and_findings_stay_lines() -> None:
    error = error_from_rpc(
        _FailedCall(grpc.StatusCode.FAILED_PRECONDITION, "refused\nstep a: breaks\n\nstep b: breaks"),
        call="RegisterContract",
    )
    assert error.message == "RegisterContract: refused"
    assert error.details == ["step a: breaks", "step b: breaks"]


def test_an_rpc_error_without_a_status_is_a_remote_error() -> None:
    error = error_from_rpc(grpc.RpcError())
    assert type(error) is RemoteError and error.message == "UNKNOWN"
