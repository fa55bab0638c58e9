"""Domain errors → gRPC status codes, for every servicer method.

The message carries the explanation and then one finding per line, so a client can print it as
it is. Clients map the codes back (coordinator/client.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from contracts.errors import (
    AccordError,
    AlreadyExistsError,
    FailedPreconditionError,
    FileProblemsError,
    NotFoundError,
    PermissionDeniedError,
    RemoteError,
    UnauthenticatedError,
    UnreachableError,
)

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def status_of(exc: AccordError) -> grpc.StatusCode:
    if isinstance(exc, UnauthenticatedError):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(exc, PermissionDeniedError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, AlreadyExistsError):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(exc, FailedPreconditionError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, UnreachableError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INVALID_ARGUMENT


def message_of(exc: AccordError) -> str:
    if isinstance(exc, RemoteError):
        return "\n".join([exc.message, *exc.details])
    if isinstance(exc, FileProblemsError):
        return "\n".join(str(p) for p in exc.problems)
    return str(exc)


def rpc(method: F) -> F:
    """Servicer method decorator: AccordError becomes its status code; anything else INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await method(self, request, context)
        except AccordError as exc:
            await context.abort(status_of(exc), message_of(exc))
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except Exception as exc:
            logger.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]
