"""Servicer methods abort with the status code of the error they raise.

The map between errors and status codes, both directions, is ``contracts.grpc_errors``: clients
map the codes back with the same table.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from contracts.channels import RETRY_AFTER_KEY
from contracts.errors import AccordError, OverloadedError
from contracts.grpc_errors import details_of, status_of
from coordinator.api import validate

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def rpc(method: F) -> F:
    """Servicer method decorator: AccordError becomes its status code; anything else INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            validate.message(request)
            return await method(self, request, context)
        except AccordError as exc:
            if isinstance(exc, OverloadedError) and exc.retry_after_ms:
                context.set_trailing_metadata(((RETRY_AFTER_KEY, str(exc.retry_after_ms)),))
            await context.abort(status_of(exc), details_of(exc))
        except (grpc.aio.AbortError, grpc.aio.UsageError):
            raise
        except RecursionError:
            # What a caller sent nests deeper than any check before this one allowed for (a
            # recursive YAML alias, a document nested hundreds deep): the request's fault.
            logger.warning("%s refused: the request nests too deeply to process", method.__name__)
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the request nests too deeply to process (a recursive YAML alias, or a document "
                "nested hundreds of levels deep); flatten it",
            )
        except Exception as exc:
            logger.exception("%s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]
