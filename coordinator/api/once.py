"""Mutating RPCs applied once per request id (docs/production.md, "Which calls are safe to retry").

Clients give every mutating request an id, made once before its first attempt
(``contracts.endpoints.with_request_id``), and send the same request with the same id again when
an answer is lost: perhaps to another coordinator on the same database. ``once`` makes such a
repeat do nothing more than the first call did:

- The first call runs the method with a ``RequestMark`` set for its task. Every audit entry made
  meanwhile carries it, and the store writes it to the request records (scope
  ``rpc:METHOD:CALLER``, the request id) in the same transaction as the change the entry
  records. So a change is committed together with the mark that it was applied; of two calls
  applying the same request at once (two replicas), the store lets one through and refuses the
  other (``RequestConflict``, nothing written). When the method returns, its answer replaces the
  mark (``Store.answer_request``, which never replaces another call's record: a call that found
  nothing to do because another applied the request meanwhile answers as that one did).
- A repeat finds the record: same request (a digest of every field but the id): the stored
  answer, or the stored error; a request record still without an answer (the first call is
  between its commit and its answer, or its coordinator died there) is waited for, and past
  ``ANSWER_WAIT_S`` answered FAILED_PRECONDITION saying it was applied and not applied again.
  Another request under the same id: INVALID_ARGUMENT.
- An answer holding a secret (a new token) is never stored: a repeat is told that the token was
  made and shown only with the lost answer, and what to run instead (``lost_secret``).

What remains: a change that writes no audit entry in its own transaction (pausing a schedule
writes the schedule, then its entry) is marked only with that later write or with the answer, so
a coordinator that dies between the two leaves a retry free to apply it again. Those changes set
a value (paused, a limit), so applying them twice leaves the same state.
Records go with retention like the others (``Store.purge_requests``).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from contracts.errors import AccordError, FailedPreconditionError, InvalidArgumentError
from contracts.grpc_errors import details_of, status_of
from coordinator.api.auth import current_principal
from coordinator.principal import Principal
from coordinator.store.base import Store
from coordinator.store.records import (
    RequestConflict,
    RequestMark,
    reset_applying_request,
    set_applying_request,
)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# How long a repeat waits for the answer of a first call that has applied the request but not
# answered yet (it commits the change, then writes its answer: milliseconds apart, unless its
# coordinator died between the two).
ANSWER_WAIT_S = 10.0


def request_digest(request: Any) -> str:
    """A digest of every field of ``request`` but its ``request_id``: the same request sent
    again has the same digest."""
    bare = type(request)()
    bare.CopyFrom(request)
    bare.ClearField("request_id")
    return hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()


def once(
    response_type: type[Any],
    *,
    secret: str = "",
    lost_secret: Callable[[Any, Principal], str] | None = None,
) -> Callable[[F], F]:
    """Servicer method decorator (under ``@rpc``): the method is applied once per (caller,
    method, request id); see the module's docstring. ``secret``: the response field holding a
    secret (a token); when it is set in an answer, the answer is not stored and a repeat gets
    ``lost_secret(request, principal)`` as a FAILED_PRECONDITION. A request without an id, or a
    dry run, is simply run."""

    def decorate(method: F) -> F:
        name = method.__name__

        @functools.wraps(method)
        async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            request_id = request.request_id
            if not request_id or getattr(request, "dry_run", False):
                return await method(self, request, context)
            store: Store = self._store
            principal = current_principal()
            scope = f"rpc:{name}:{principal.actor}"
            digest = request_digest(request)

            def lost() -> str:
                if lost_secret is None:
                    return f"request {request_id} made a secret shown only with its lost answer"
                return lost_secret(request, principal)

            async def repeat(stored: Any) -> Any:
                return await _repeat(
                    store, context, scope, request_id, digest, stored, name, response_type, secret, lost
                )

            stored = await store.get_request(scope, request_id)
            if stored is not None:
                return await repeat(stored)
            mark = RequestMark(scope, request_id, {"digest": digest, "by": uuid.uuid4().hex})
            token = set_applying_request(mark)
            try:
                response = await method(self, request, context)
            except RequestConflict:  # another call applied this request first
                return await repeat(await store.get_request(scope, request_id))
            except Exception as exc:
                stored = await store.get_request(scope, request_id)
                if stored is not None and _by(stored) != mark.by:
                    # Refused because another call applied the request meanwhile (the team it
                    # creates exists now, say): answered as that call was.
                    return await repeat(stored)
                if stored is not None and isinstance(exc, AccordError):
                    # This call marked the request (an audited step) before it failed: a repeat
                    # gets the same error rather than a half-applied request again.
                    error = {"code": status_of(exc).name, "details": details_of(exc)}
                    await store.answer_request(scope, request_id, {**mark.value, "error": error})
                raise
            finally:
                reset_applying_request(token)
            answer: dict[str, Any] = dict(mark.value)
            if secret and getattr(response, secret):
                answer["secret"] = True  # never stored: a repeat is told what to do instead
            else:
                answer["answer"] = base64.b64encode(response.SerializeToString()).decode()
            stored = await store.answer_request(scope, request_id, answer)
            if _by(stored) != mark.by:
                # Another call applied the request while this one found nothing left to do (the
                # contract it registers was there already, say): answered as that call was.
                return await repeat(stored)
            return response

        return wrapper  # type: ignore[return-value]

    return decorate


def _by(stored: Any) -> str:
    return str(stored.get("by", "")) if isinstance(stored, dict) else ""


async def _repeat(
    store: Store,
    context: grpc.aio.ServicerContext,
    scope: str,
    request_id: str,
    digest: str,
    stored: Any,
    name: str,
    response_type: type[Any],
    secret: str,
    lost: Callable[[], str],
) -> Any:
    """The answer to a request whose id has a record: the first call's answer or error."""
    waited = 0.0
    pause = 0.05
    while True:
        if not isinstance(stored, dict):
            raise FailedPreconditionError(
                f"request_id {request_id} names a request this coordinator cannot read back;"
                " send a new request id"
            )
        if stored.get("digest") != digest:
            raise InvalidArgumentError(
                f"request_id {request_id} was already used for another {name} request (its fields"
                " differ); a request id names one request: send a new id for a new request"
            )
        if stored.get("secret") or (secret and "answer" not in stored and "error" not in stored):
            raise FailedPreconditionError(lost())
        if "answer" in stored:
            return response_type.FromString(base64.b64decode(stored["answer"]))
        if "error" in stored:
            error = stored["error"]
            await context.abort(grpc.StatusCode[error["code"]], error["details"])
        if waited >= ANSWER_WAIT_S:
            raise FailedPreconditionError(
                f"this {name} request (id {request_id}) was already applied by a coordinator that"
                " has not answered it (it may have stopped just after applying it); it was not"
                " applied again: `accord audit` shows what it did"
            )
        await asyncio.sleep(pause)
        waited += pause
        pause = min(pause * 2, 0.5)
        stored = await store.get_request(scope, request_id)
        if stored is None:  # pruned meanwhile (retention): nothing left to compare with
            raise FailedPreconditionError(
                f"the record of request {request_id} is gone (retention); send a new request id"
            )


__all__ = ["ANSWER_WAIT_S", "once", "request_digest"]
