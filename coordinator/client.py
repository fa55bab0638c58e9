"""A small gRPC client for the coordinator (asyncio and blocking), used by the CLI and tests.

Every ``grpc.RpcError`` becomes the most specific ``contracts.errors.RemoteError`` subclass
(the table is ``contracts.grpc_errors``), raised ``from`` the gRPC error; an unreachable
coordinator says where it was looked for: "cannot reach the coordinator at HOST:PORT: ...".

Where to connect: ``ACCORD_COORDINATOR`` (host:port, or several comma-separated: the client
moves on to the next when one is unreachable), else the address the local coordinator
wrote to ``$ACCORD_HOME/coordinator.json``, else 127.0.0.1:7440. Token: ``ACCORD_TOKEN``, else
``$ACCORD_HOME/admin.token`` (readable only on the coordinator's machine). TLS: the
``ACCORD_TLS*`` variables (``contracts.channels``, where the channels are opened and a failed
call's error is made).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from contracts._wire.accord.agent.v1 import agent_gateway_service_pb2_grpc as agent_grpc
from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2_grpc as pb_grpc
from contracts.channels import OVERLOAD_PATIENCE_S, Channels, OverloadRetry, TlsSettings
from contracts.endpoints import Endpoints, parse_addresses, with_request_id
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


class _Connection:
    """One channel to one coordinator, with the stubs of both services."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.stubs = {
            "coordinator": pb_grpc.CoordinatorServiceStub(channel),
            "agent": agent_grpc.AgentGatewayServiceStub(channel),
        }


class _AsyncStub:
    """Calls one service on the coordinator in use, moving on to the next one listed when it is
    unreachable (the same request, with the same request id: a mutating request sent without
    one is given one before its first attempt, ``contracts.endpoints.with_request_id``)."""

    def __init__(
        self,
        endpoints: Endpoints[_Connection],
        channels: Channels,
        service: str,
        metadata: tuple[tuple[str, str], ...],
        overload_patience: float = OVERLOAD_PATIENCE_S,
    ) -> None:
        self._endpoints = endpoints
        self._channels = channels
        self._service = service
        self._metadata = metadata
        self._patience = overload_patience

    def __getattr__(self, name: str) -> Callable[..., Any]:
        endpoints, channels, service, metadata, patience = (
            self._endpoints,
            self._channels,
            self._service,
            self._metadata,
            self._patience,
        )

        async def call(request: Any, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
            request = with_request_id(request)  # once: every attempt below carries the same id
            overload = OverloadRetry(patience)
            attempt = 0
            while attempt < len(endpoints.addresses):
                address = endpoints.address
                method = getattr(endpoints.current.stubs[service], name)
                try:
                    return await method(request, metadata=metadata, timeout=timeout)
                except grpc.RpcError as exc:
                    wait = overload.wait(exc)
                    if wait is not None:  # overloaded: the same call again after its hint
                        await asyncio.sleep(wait)
                        continue
                    if overload.exhausted:
                        raise overload.error(address) from exc
                    error = await channels.error_async(exc, address=address)
                    if endpoints.try_next(address, error, len(endpoints.addresses) - 1 - attempt):
                        attempt += 1
                        continue
                    raise error from exc
            raise AssertionError("unreachable")

        return call

    def stream(self, name: str, request: Any) -> Any:
        """Iterate a server-streaming RPC, translating errors (an unreachable coordinator moves
        the client on to the next one for the caller's next call). A stream the coordinator
        refuses as overloaded before its first message is opened again after each hint, as a
        unary call is, until the patience is spent (then ``OverloadedError``, exit 3)."""
        endpoints, channels, metadata = self._endpoints, self._channels, self._metadata
        address = endpoints.address
        method = getattr(endpoints.current.stubs[self._service], name)
        overload = OverloadRetry(self._patience)

        async def iterate() -> Any:
            received = False
            while True:
                try:
                    async for item in method(request, metadata=metadata):
                        received = True
                        yield item
                    return
                except grpc.RpcError as exc:
                    wait = None if received else overload.wait(exc)
                    if wait is not None:  # refused at admission: nothing was sent yet
                        await asyncio.sleep(wait)
                        continue
                    if overload.exhausted:
                        raise overload.error(address) from exc
                    error = await channels.error_async(exc, address=address)
                    endpoints.try_next(address, error, 1)  # the caller's next call goes to the next one
                    raise error from exc

        return iterate()


class _SyncStub:
    """Blocking twin of ``_AsyncStub``."""

    def __init__(
        self,
        endpoints: Endpoints[_Connection],
        channels: Channels,
        service: str,
        metadata: tuple[tuple[str, str], ...],
        overload_patience: float = OVERLOAD_PATIENCE_S,
    ) -> None:
        self._endpoints = endpoints
        self._channels = channels
        self._service = service
        self._metadata = metadata
        self._patience = overload_patience

    def __getattr__(self, name: str) -> Callable[..., Any]:
        endpoints, channels, service, metadata, patience = (
            self._endpoints,
            self._channels,
            self._service,
            self._metadata,
            self._patience,
        )

        def call(request: Any, *, timeout: float | None = None) -> Any:
            request = with_request_id(request)  # once: every attempt below carries the same id
            overload = OverloadRetry(patience)
            attempt = 0
            while attempt < len(endpoints.addresses):
                address = endpoints.address
                method = getattr(endpoints.current.stubs[service], name)
                try:
                    return method(request, metadata=metadata, timeout=timeout)
                except grpc.RpcError as exc:
                    wait = overload.wait(exc)
                    if wait is not None:  # overloaded: the same call again after its hint
                        time.sleep(wait)
                        continue
                    if overload.exhausted:
                        raise overload.error(address) from exc
                    error = channels.error(exc, address=address)
                    if endpoints.try_next(address, error, len(endpoints.addresses) - 1 - attempt):
                        attempt += 1
                        continue
                    raise error from exc
            raise AssertionError("unreachable")

        return call

    def stream(self, name: str, request: Any, *, timeout: float | None = None) -> Any:
        """Iterate a server-streaming RPC, translating errors. With ``timeout``, the stream
        ends quietly after that many seconds (a watch the caller renews). A stream refused as
        overloaded before its first message is opened again after each hint (with a whole
        ``timeout`` from then) until the patience is spent: then ``OverloadedError`` (exit 3),
        so a renewed watch does not start its patience anew."""
        endpoints = self._endpoints
        address = endpoints.address
        method = getattr(endpoints.current.stubs[self._service], name)
        overload = OverloadRetry(self._patience)
        received = False
        while True:
            try:
                for item in method(request, metadata=self._metadata, timeout=timeout):
                    received = True
                    yield item
                return
            except grpc.RpcError as exc:
                if timeout is not None and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return
                wait = None if received else overload.wait(exc)
                if wait is not None:  # refused at admission: nothing was sent yet
                    time.sleep(wait)
                    continue
                if overload.exhausted:
                    raise overload.error(address) from exc
                error = self._channels.error(exc, address=address)
                endpoints.try_next(address, error, 1)  # the caller's next call goes to the next one
                raise error from exc


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def default_tls() -> TlsSettings:
    """The ``ACCORD_TLS*`` variables' settings (plaintext when none is set)."""
    return TlsSettings.from_env(os.environ)


class AsyncClient:
    """``client.coordinator.GetRun(req)`` / ``client.agent.PollTask(req)`` with domain errors.
    ``address`` may list several coordinators (``a:7440,b:7440``): see ``contracts.endpoints``.
    ``tls`` default: ``default_tls()``."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        home: Path | None = None,
        options: list[tuple[str, Any]] | None = None,
        tls: TlsSettings | None = None,
        overload_patience: float = OVERLOAD_PATIENCE_S,
    ) -> None:
        self.address = address or default_address(home)
        self.token = token if token is not None else default_token(home)
        self.channels = Channels(tls if tls is not None else default_tls())
        self._endpoints: Endpoints[_Connection] = Endpoints(
            parse_addresses(self.address),
            lambda where: _Connection(
                self.channels.aio(where, options=options, interceptors=trace_context_interceptors())
            ),
        )
        meta = _metadata(self.token)
        self.coordinator: Any = _AsyncStub(
            self._endpoints, self.channels, "coordinator", meta, overload_patience
        )
        self.agent: Any = _AsyncStub(self._endpoints, self.channels, "agent", meta, overload_patience)

    async def close(self) -> None:
        for connection in self._endpoints.connections():
            await connection.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Client:
    """Blocking twin of AsyncClient, for the CLI."""

    def __init__(
        self,
        address: str | None = None,
        token: str | None = None,
        home: Path | None = None,
        tls: TlsSettings | None = None,
        overload_patience: float = OVERLOAD_PATIENCE_S,
    ) -> None:
        self.address = address or default_address(home)
        self.token = token if token is not None else default_token(home)
        self.channels = Channels(tls if tls is not None else default_tls())
        self._endpoints: Endpoints[_Connection] = Endpoints(
            parse_addresses(self.address),
            lambda where: _Connection(
                grpc.intercept_channel(self.channels.sync(where), SyncTraceContextClientInterceptor())
            ),
        )
        meta = _metadata(self.token)
        self.coordinator: Any = _SyncStub(
            self._endpoints, self.channels, "coordinator", meta, overload_patience
        )
        self.agent: Any = _SyncStub(self._endpoints, self.channels, "agent", meta, overload_patience)

    def close(self) -> None:
        for connection in self._endpoints.connections():
            connection.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_watched(current: Any, response: Any) -> Any:
    """The run after a WatchRun message (``WatchRunResponse``): the message's run itself, or for
    a partial one (``changes_only``) the run it describes, built from ``current`` (the run as
    last known) with the steps and fields it carries. Returns a new ``Run``."""
    if not response.partial:
        return response.run
    run = type(current)()
    run.CopyFrom(response.run)
    run.input_json = current.input_json
    known = {step.id: step for step in current.steps}
    known.update((step.id, step) for step in response.run.steps)
    del run.steps[:]
    run.steps.extend(known[step_id] for step_id in response.step_ids if step_id in known)
    return run
