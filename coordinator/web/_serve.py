"""Serving the UI with uvicorn inside the coordinator process, on its event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Generator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

logger = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class UiServer:
    """A running UI server. ``address`` is "host:port" with the port actually bound."""

    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int
    https: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.https else 'http'}://{host}:{self.port}"

    async def stop(self, timeout_s: float = 5.0) -> None:
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout_s)
        except TimeoutError:
            self.server.force_exit = True
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def serve_ui(
    app: ASGIApp, host: str, port: int, *, ssl_context: ssl.SSLContext | None = None
) -> UiServer:
    """Start serving ``app`` on ``host:port`` (port 0 picks a free one) and return once it is
    accepting connections; over HTTPS with ``ssl_context``. Raises ``OSError`` when the address
    cannot be bound."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
    if ssl_context is not None:
        # Our own context, not uvicorn's files: it hands every handshake the newest certificate
        # (coordinator.tls), so a replaced certificate is served without a restart.
        config.load()
        config.ssl = ssl_context
    server = _EmbeddedServer(config)
    # Bind here, not in uvicorn: uvicorn answers a bind error with sys.exit(), which would take
    # the whole coordinator down from inside a task.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=512)
    # Accepted connections inherit this: without it, a keep-alive response written in two parts
    # (headers, body) waits ~40 ms for the client's delayed ACK (Nagle).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    bound_port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"accord-ui {host}:{bound_port}")
    while not server.started:
        if task.done():
            sock.close()
            raise OSError(f"the UI could not start on {host}:{bound_port}") from task.exception()
        await asyncio.sleep(0.01)
    logger.info("ui listening", extra={"address": f"{host}:{bound_port}"})
    return UiServer(server=server, task=task, host=host, port=bound_port, https=ssl_context is not None)


def parse_listen(value: str) -> tuple[str, int]:
    """ "HOST:PORT" (or "[v6]:PORT") -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--ui: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)
