"""A small gRPC client for the coordinator (asyncio and blocking), used by the CLI and tests.

Every ``grpc.RpcError`` becomes the most specific ``contracts.errors.RemoteError`` subclass
(the table is ``contracts.grpc_errors``), raised ``from`` the gRPC error; an unreachable
coordinator says where it was looked for: "cannot reach the coordinator at HOST:PORT: ...".

Where to connect: ``ACCORD_COORDINATOR`` (host:port), else the address the local coordinator
wrote to ``$ACCORD_HOME/coordinator.json``, else 127.0.0.1:7440. Token: ``ACCORD_TOKEN``, else
``$ACCORD_HOME/admin.token`` (readable only on the coordinator's machine).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2_grpc as agent_grpc
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from contracts.grpc_errors import error_from_rpc
from coordinator.config import DEFAULT_LISTEN, accord_home
from coordinator.telemetry.propagation import SyncTraceContextClientInterceptor, trace_context_interceptors


def default_address(home: Path | None = None) -> str:
    env = os.environ.get("ACCORD_COORDINATOR")
    if env:
        return env
    state = (home or accord_home()) / "coordinator.json"
    try:
        return str(json.loads(state.read_text())["grpc"])
    except (OSError, ValueError, KeyError):
        return DEFAULT_LISTEN


def default_token(home: Path | None = None) -> str:
    env = os.environ.get("ACCORD_TOKEN")
    if env:
        return env.strip()
    try:
        return ((home or accord_home()) / "admin.token").read_text().strip()
    except OSError:
        return ""


class _AsyncStub:
    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...], address: str) -> None:
        self._stub = stub
        self._metadata = metadata
        self._address = address

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)
        metadata, address = self._metadata, self._address

        async def call(request: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
            try:
                return await method(request, metadata=metadata, timeout=timeout)
            except grpc.RpcError as exc:
                raise error_from_rpc(exc, address=address) from exc

        return call

    def stream(self, name: str, request: Any) -> Any:
        """Iterate a server-streaming RPC, translating errors."""
        method = getattr(self._stub, name)
        metadata, address = self._metadata, self._address

        async def iterate() -> Any:
            try:
                async for item in method(request, metadata=metadata):
                    yield item
            except grpc.RpcError as exc:
                raise error_from_rpc(exc, address=address) from exc

        return iterate()


class _SyncStub:
    def __init__(self, stub: Any, metadata: tuple[tuple[str, str], ...], address: str) -> None:
        self._stub = stub
        self._metadata = metadata
        self._address = address

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._stub, name)
        metadata, address = self._metadata, self._address

        def call(request: Any, *, timeout: float | None = None) -> Any:
            try:
                return method(request, metadata=metadata, timeout=timeout)
            except grpc.RpcError as exc:
                raise error_from_rpc(exc, address=address) from exc

        return call

    def stream(self, name: str, request: Any, *, timeout: float | None = None) -> Any:
        """Iterate a server-streaming RPC, translating errors. With ``timeout``, the stream
        ends quietly after that many seconds (a watch the caller renews)."""
        method = getattr(self._stub, name)
        try:
            yield from method(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as exc:
            if timeout is not None and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return
            raise error_from_rpc(exc, address=self._address) from exc


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


class AsyncClient:
    """``client.coordinator.GetRun(req)`` / ``client.agent.PollTask(req)`` with domain errors."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        home: Path | None = None,
        options: list[tuple[str, Any]] | None = None,
    ) -> None:
        self.address = address or default_address(home)
        self.token = token if token is not None else default_token(home)
        self._channel = grpc.aio.insecure_channel(
            self.address, options=options, interceptors=trace_context_interceptors()
        )
        meta = _metadata(self.token)
        self.coordinator: Any = _AsyncStub(pb_grpc.CoordinatorServiceStub(self._channel), meta, self.address)
        self.agent: Any = _AsyncStub(agent_grpc.AgentGatewayServiceStub(self._channel), meta, self.address)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Client:
    """Blocking twin of AsyncClient, for the CLI."""

    def __init__(
        self, address: str | None = None, token: str | None = None, home: Path | None = None
    ) -> None:
        self.address = address or default_address(home)
        self.token = token if token is not None else default_token(home)
        self._channel = grpc.intercept_channel(
            grpc.insecure_channel(self.address), SyncTraceContextClientInterceptor()
        )
        meta = _metadata(self.token)
        self.coordinator: Any = _SyncStub(pb_grpc.CoordinatorServiceStub(self._channel), meta, self.address)
        self.agent: Any = _SyncStub(agent_grpc.AgentGatewayServiceStub(self._channel), meta, self.address)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
