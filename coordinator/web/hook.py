"""Serving the UI from ``accord coordinator start --ui HOST:PORT``: a coordinator ``ServerHook``.

The UI reaches the coordinator through its own gRPC API, with each signed-in user's token: it is
just another client, so it is scoped by exactly the API's rules. It dials the coordinator over
loopback; with TLS (``--tls-cert``), over a Unix socket of the coordinator's own instead, in a
directory only its user may enter: the gRPC port may ask every client for a certificate (mutual
TLS), which the UI, inside the coordinator's process, has no use for. The UI then serves HTTPS
with the coordinator's certificate, and its session cookie is ``Secure``. Its sign-in sessions
are kept in the coordinator's store (``_sessions``), so every coordinator on one database serves
every session.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from contracts.channels import Channels
from coordinator.config import CoordinatorConfig, ui_enabled
from coordinator.web._grpc_source import GrpcSource
from coordinator.web._serve import parse_listen, serve_ui
from coordinator.web._sessions import SessionStore
from coordinator.web.app import create_app

logger = logging.getLogger(__name__)


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
        self._socket_dir: Path | None = None

    def configure(self, server: Any, coordinator: Any) -> None:
        """With TLS: a Unix socket for the UI's own calls (mkdtemp: mode 0700, a short path)."""
        if coordinator.certificates is None:
            return
        self._socket_dir = Path(tempfile.mkdtemp(prefix="accord-ui-"))
        if not server.add_insecure_port(f"unix:{self._socket_dir / 'grpc.sock'}"):
            raise OSError(f"cannot listen on the UI's socket in {self._socket_dir}")

    def _remove_socket(self) -> None:
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    async def start(self, coordinator: Any) -> Callable[[], Awaitable[None]]:
        certificates = coordinator.certificates
        if self._socket_dir is not None:
            target = f"unix:{self._socket_dir / 'grpc.sock'}"
        else:
            target = dial_address(coordinator.address)
        source = GrpcSource(target, channels=Channels())
        # Sessions live in the coordinator's store: any coordinator on it serves them.
        sessions = SessionStore(coordinator.store)
        app = create_app(source, sessions=sessions, secure_cookies=certificates is not None)
        try:
            ui = await serve_ui(
                app,
                self.host,
                self.port,
                ssl_context=certificates.ssl_context() if certificates is not None else None,
            )
        except OSError as exc:
            # The UI is a convenience: a busy port must not keep the coordinator from serving.
            logger.warning("tracing UI not started: cannot listen on %s:%s: %s", self.host, self.port, exc)
            await source.close()
            self._remove_socket()

            async def nothing() -> None:
                return None

            return nothing
        self.address = ui.address
        coordinator.ui_address = ui.address
        logger.info("tracing UI at %s", ui.url)

        async def close() -> None:
            await ui.stop()
            await source.close()
            self._remove_socket()

        return close


def ui_hook(config: CoordinatorConfig) -> UiHook | None:
    """The hook for ``config.ui_listen``, or None when the UI is turned off."""
    if not ui_enabled(config.ui_listen):
        return None
    return UiHook((config.ui_listen or "").strip())
