"""``accord admin rotate-token``: a new admin token, written to ``$ACCORD_HOME/admin.token``.

The token is made here and written (mode 0600, fsynced) beside ``admin.token`` before the
coordinator is asked to take its hash; the file is moved into place only once it has. So a failed
call changes nothing, and an answer lost on the way cannot lose the new token: it is still in the
file beside. The token is never printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from coordinator.cli._apps import admin_app
from coordinator.cli._output import command, fail


def _write_private(path: Path, text: str) -> None:
    """Create ``path`` (mode 0600, refusing to follow or reuse an existing file) with ``text``,
    flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@admin_app.command("rotate-token")
@command
def rotate_token() -> None:
    """Replace the admin token; the new one goes to $ACCORD_HOME/admin.token (mode 0600).

    The old one is refused from then on, by every coordinator on the database within a second.
    No token is printed."""
    from contracts._wire.accord.coordinator.v1 import coordinator_service_pb2 as pb
    from contracts.errors import (
        InvalidArgumentError,
        PermissionDeniedError,
        RemoteError,
        UnauthenticatedError,
    )
    from contracts.private_files import secure_directory
    from coordinator.client import Client
    from coordinator.config import accord_home
    from coordinator.tokens import hash_token, new_token

    home = accord_home()
    target = home / "admin.token"
    pending = home / f".admin.token.{os.getpid()}.new"
    token = new_token()
    try:
        secure_directory(home)
        _write_private(pending, token + "\n")
    except OSError as exc:
        raise fail(
            f"cannot write the new admin token beside {target}: {exc.strerror or exc}; nothing was changed"
            " (check that ACCORD_HOME is this machine's coordinator home and writable)"
        ) from None
    try:
        with Client() as client:
            client.coordinator.RotateAdminToken(
                pb.RotateAdminTokenRequest(new_token_sha256=hash_token(token))
            )
    except (UnauthenticatedError, PermissionDeniedError, InvalidArgumentError):
        pending.unlink(missing_ok=True)  # refused: the old token stands
        raise
    except RemoteError as exc:
        # Unreachable, or an answer lost or garbled: the coordinator may have taken the new token.
        raise fail(
            f"{exc}; the admin token may or may not have been replaced: the new one is kept in {pending}"
            f" (if the old one is refused now, mv {pending} {target})",
            code=exc.exit_code,
        ) from None
    os.replace(pending, target)
    _sync_directory(home)
    typer.echo(
        f"admin token replaced: the new one is in {target} (mode 0600); the old one is refused from now on",
        err=True,
    )
    if os.environ.get("ACCORD_TOKEN"):
        typer.echo(
            "note: ACCORD_TOKEN in this environment still holds the old admin token: unset it (the CLI"
            f" then reads {target}) or set it to the new one",
            err=True,
        )
