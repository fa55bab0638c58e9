"""Authentication: ``authorization: Bearer <token>`` metadata → a Principal for the call.

Tokens are random 32-byte strings; only their sha256 is stored (``coordinator.tokens``). An expired
token is refused on the call that comes after its expiry, whatever the cache last read. The
interceptor wraps every handler of the Accord services so the servicer runs with the caller's
principal in a context variable; health checking and reflection stay open (load balancers and
grpcurl need them).

A call that stays open (a run watch, a long poll, an agent's stream) is checked again while it is:
once its token is revoked, rotated away or expired, it ends with UNAUTHENTICATED within about a
second (``until_refused``, ``OpenCallGuard``; docs/production.md, "Tokens").
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar

import grpc

from contracts.errors import UnauthenticatedError, UnreachableError
from coordinator.principal import Principal
from coordinator.tokens import TokenAuthority, hash_token

__all__ = [
    "TOKEN_RECHECK_S",
    "AuthInterceptor",
    "OpenCallGuard",
    "bearer_token",
    "current_principal",
    "until_refused",
]

T = TypeVar("T")

_OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("accord_principal")


def current_principal() -> Principal:
    """The principal of the RPC being served (set by the interceptor)."""
    return _current.get()


def bearer_token(metadata: Any) -> str:
    for key, value in metadata or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text.lower().startswith("bearer "):
                return text[7:].strip()
    return ""


_REREAD_GAP_S = 0.1
# An open call's token is checked again at least this often (seconds), besides at every change of
# the tokens known: expiry is not a change of the tokens.
TOKEN_RECHECK_S = 1.0


async def until_refused(authority: TokenAuthority, token: str) -> str:
    """Return once ``token``, accepted when its call opened, is refused; returns the refusal's
    line. Checked again at every change of the tokens known (a revocation or rotation here, or
    one read from the store every ``cache_refresh_s``, so one made through another coordinator
    too) and every ``TOKEN_RECHECK_S`` (expiry, a rotated token's overlap ending). An agent's
    stream watches its token so (coordinator/api/agent_stream.py); the other open calls (run
    watches, long polls, a start waiting for its run) through ``OpenCallGuard``, whose tokens one
    task checks the same way for all of them."""
    changed = asyncio.Event()
    stop = authority.on_change(changed.set)
    token_hash = hash_token(token)
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), TOKEN_RECHECK_S)
            changed.clear()
            if authority.authenticate_again(token_hash) is None:
                return authority.refusal(token)
    finally:
        stop()


class _OpenCalls:
    """The guards of the calls open with one authority's tokens, checked again by one task of
    their own: at every change of the tokens known and every ``TOKEN_RECHECK_S`` (as
    ``until_refused`` checks one token), rather than by a task per call. The task runs while a
    guard is open and ends with the last one."""

    def __init__(self, authority: TokenAuthority) -> None:
        self.authority = authority
        self.loop = asyncio.get_running_loop()
        self._guards: dict[str, set[OpenCallGuard]] = {}  # token hash -> the guards of its calls
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def add(self, guard: OpenCallGuard) -> None:
        self._guards.setdefault(guard.token_hash, set()).add(guard)
        if self._task is None:
            self._task = self.loop.create_task(self._watch(), name="open-call-tokens")

    def discard(self, guard: OpenCallGuard) -> None:
        guards = self._guards.get(guard.token_hash)
        if guards is not None:
            guards.discard(guard)
            if not guards:
                del self._guards[guard.token_hash]

    async def _watch(self) -> None:
        stop = self.authority.on_change(self._changed.set)
        try:
            while self._guards:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), TOKEN_RECHECK_S)
                self._changed.clear()
                for token_hash, guards in list(self._guards.items()):
                    if self.authority.authenticate_again(token_hash) is None:
                        for guard in list(guards):
                            guard.refuse()
        finally:
            stop()
            self._task = None


# One _OpenCalls per authority (a coordinator's), made on its event loop when a call first opens.
_open_calls: weakref.WeakKeyDictionary[TokenAuthority, _OpenCalls] = weakref.WeakKeyDictionary()


class OpenCallGuard:
    """Ends what an open call awaits once its token is refused: ``wait`` awaits a step of the
    call (a long poll, a watch's next message, a start waiting for its run's end) and raises
    UnauthenticatedError instead once the token is refused; ``check`` is the last look before an
    answer goes out. Use it as ``async with``: leaving it stops the watching.

    The tokens of all open calls are checked by one task per authority (``_OpenCalls``), at every
    change of the tokens known and every ``TOKEN_RECHECK_S``, as ``until_refused`` does for one;
    a refusal cancels the task awaiting the step, which ``wait`` turns into UnauthenticatedError.
    A guard costs a call no task of its own.
    """

    def __init__(self, authority: TokenAuthority, token: str, call: str) -> None:
        self._authority = authority
        self._token = token
        self.token_hash = hash_token(token)
        self._call = call
        self._refusal: str | None = None
        self._waiting: asyncio.Task[Any] | None = None  # the task in ``wait``, cancelled on refusal
        self._cancelled = False  # whether this guard cancelled it
        calls = _open_calls.get(authority)
        if calls is None or calls.loop is not asyncio.get_running_loop():
            calls = _open_calls[authority] = _OpenCalls(authority)
        self._calls: _OpenCalls | None = calls
        calls.add(self)

    def refuse(self) -> None:
        """The token is refused (``_OpenCalls`` found it so): end the step awaited, if any."""
        if self._refusal is None:
            self._refusal = self._authority.refusal(self._token)
        if self._waiting is not None and not self._cancelled:
            self._cancelled = True
            self._waiting.cancel()

    def _error(self, refusal: str) -> UnauthenticatedError:
        return UnauthenticatedError(f"{self._call} ended: {refusal}")

    async def wait(self, step: Awaitable[T]) -> T:
        """``step``'s result; or, should the token be refused first, ``step`` cancelled and
        UnauthenticatedError (``<call> ended: <why the token is refused>``) raised."""
        if self._refusal is not None:
            if inspect.iscoroutine(step):
                step.close()  # never started
            raise self._error(self._refusal)
        task = asyncio.current_task()
        assert task is not None, "OpenCallGuard.wait runs in a task"
        self._waiting, self._cancelled = task, False
        try:
            result = await step
        except asyncio.CancelledError:
            if not self._cancelled or self._refusal is None:
                raise  # the call itself was cancelled
            task.uncancel()
            raise self._error(self._refusal) from None
        finally:
            self._waiting = None
        if self._cancelled:
            task.uncancel()  # the step took the cancellation and ended all the same
        # A step that ends before the refusal could stop it gives its result: the caller decides
        # (``check``).
        return result

    def check(self) -> None:
        """UnauthenticatedError if the token is refused now (before an answer goes out: the guard
        notices a change a moment after it)."""
        if self._authority.authenticate_again(self.token_hash) is None:
            raise self._error(self._authority.refusal(self._token))

    async def close(self) -> None:
        if self._calls is not None:
            self._calls.discard(self)
            self._calls = None

    async def __aenter__(self) -> OpenCallGuard:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


_END = object()


async def _next(items: AsyncIterator[Any]) -> Any:
    try:
        return await anext(items)
    except StopAsyncIteration:
        return _END


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self, authority: TokenAuthority, reread: Callable[[], Awaitable[object]] | None = None
    ) -> None:
        """``reread``: read the token hashes from the store again, for a token not known here
        (made through another coordinator sharing the store a moment ago). Concurrent callers
        share one read, and reads are at least ``_REREAD_GAP_S`` apart, so a flood of bad tokens
        costs the store little."""
        self._authority = authority
        self._reread = reread
        self._rereading: asyncio.Task[object] | None = None
        self._last_reread = 0.0

    async def _known_after_reread(self, token: str) -> Principal | None:
        if self._reread is None:
            return None
        loop = asyncio.get_running_loop()
        if self._rereading is None or self._rereading.done():
            if loop.time() - self._last_reread < _REREAD_GAP_S:
                return None
            self._last_reread = loop.time()
            self._rereading = asyncio.ensure_future(self._reread())
        try:
            await asyncio.shield(self._rereading)
        except UnreachableError:
            raise  # not known here, and the store cannot say: the caller tries again
        except Exception:
            return None
        return self._authority.authenticate(token)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_OPEN_SERVICES):
            return handler
        authority = self._authority
        known_after_reread = self._known_after_reread

        async def authenticate(context: grpc.aio.ServicerContext) -> Principal:
            token = bearer_token(context.invocation_metadata())
            if not token:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "missing token: set ACCORD_TOKEN (metadata 'authorization: Bearer <token>')",
                )
            try:
                principal = authority.authenticate(token) or await known_after_reread(token)
            except UnreachableError as exc:
                await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            if principal is None:
                # "unknown or revoked token", or which token expired when
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, authority.refusal(token))
            assert principal is not None
            return principal

        if handler.unary_unary is not None:
            inner_uu = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                _current.set(await authenticate(context))
                return await inner_uu(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            # A run watch: it ends with UNAUTHENTICATED once its token is refused, whatever it
            # waits for then (the run's next change may be hours away).
            inner_us = handler.unary_stream
            call = method.rsplit("/", 1)[-1]

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                _current.set(await authenticate(context))
                items = inner_us(request, context)
                guard = OpenCallGuard(authority, bearer_token(context.invocation_metadata()), call)
                try:
                    while True:
                        try:
                            item = await guard.wait(_next(items))
                        except UnauthenticatedError as exc:
                            await context.abort(grpc.StatusCode.UNAUTHENTICATED, exc.message)
                        if item is _END:
                            return
                        yield item
                finally:
                    await guard.close()
                    await items.aclose()

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            # An agent's v2 stream: the token is checked when it opens; the servicer closes it
            # should the token be revoked or expire later (coordinator/api/agent_stream.py).
            inner_ss = handler.stream_stream

            async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                _current.set(await authenticate(context))
                async for item in inner_ss(requests, context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(
                stream_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            inner_su = handler.stream_unary

            async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                _current.set(await authenticate(context))
                return await inner_su(requests, context)

            return grpc.stream_unary_rpc_method_handler(
                stream_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
