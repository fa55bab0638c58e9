"""Serving the UI from ``accord coordinator start --ui HOST:PORT``: a coordinator ``ServerHook``.

The UI reaches the coordinator through its own gRPC API (over loopback), with each signed-in
user's token: it is just another client, so it is scoped by exactly the API's rules. Its sign-in
sessions are kept in the coordinator's store (``_sessions``), so every coordinator on one
database serves every session.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from coordinator.config import CoordinatorConfig
from coordinator.web._grpc_source import GrpcSource
from coordinator.web._serve import parse_listen, serve_ui
from coordinator.web._sessions import SessionStore
from coordinator.web.app import create_app

logger = logging.getLogger(__name__)

DISABLED = ("", "off", "none", "no", "false", "0")


def dial_address(listen: str) -> str:
    """Where a local client reaches a server listening on ``listen`` (wildcards -> loopback)."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::", "*"):
        host = "127.0.0.1"
    return f"{host}:{port}"


class UiHook:
    """Starts the UI once the gRPC server is up; records its address as ``coordinator.ui_address``."""

    def __init__(self, listen: str) -> None:
        self.host, self.port = parse_listen(listen)
        self.address = ""

    def configure(self, server: Any, coordinator: Any) -> None:
        """Nothing to add to the gRPC server."""

    async def start(self, coordinator: Any) -> Callable[[], Awaitable[None]]:
        source = GrpcSource(dial_address(coordinator.address))
        try:
            # Sessions live in the coordinator's store: any coordinator on it serves them.
            sessions = SessionStore(coordinator.store)
            ui = await serve_ui(create_app(source, sessions=sessions), self.host, self.port)
        except OSError as exc:
            # The UI is a convenience: a busy port must not keep the coordinator from serving.
            logger.warning("tracing UI not started: cannot listen on %s:%s: %s", self.host, self.port, exc)
            await source.close()

            async def nothing() -> None:
                return None

            return nothing
        self.address = ui.address
        coordinator.ui_address = ui.address
        logger.info("tracing UI at %s", ui.url)

        async def close() -> None:
            await ui.stop()
            await source.close()

        return close


def ui_hook(config: CoordinatorConfig) -> UiHook | None:
    """The hook for ``config.ui_listen``, or None when the UI is turned off."""
    listen = (config.ui_listen or "").strip()
    if listen.lower() in DISABLED:
        return None
    return UiHook(listen)
