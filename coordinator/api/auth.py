"""Authentication: ``authorization: Bearer <token>`` metadata → a Principal for the call.

Tokens are random 32-byte strings; only their sha256 is stored (``coordinator.tokens``). An expired
token is refused on the call that comes after its expiry, whatever the cache last read. The
interceptor wraps every handler of the Accord services so the servicer runs with the caller's
principal in a context variable; health checking and reflection stay open (load balancers and
grpcurl need them).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from contracts.errors import UnreachableError
from coordinator.principal import Principal
from coordinator.tokens import TokenAuthority

__all__ = ["AuthInterceptor", "bearer_token", "current_principal"]

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
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                _current.set(await authenticate(context))
                async for item in inner_us(request, context):
                    yield item

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
