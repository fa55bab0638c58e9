"""Private state directories: ``ACCORD_HOME`` and what coordinator, CLI and agents keep in it.

The database, its WAL, the admin token and undelivered results hold payloads and secrets in
clear, so the directory is 0700 and every file in it 0600 (docs/production.md, "Files and
permissions"). Not re-exported from :mod:`contracts`: only process entry points call it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Bits that let anyone but the owner read, write or enter.
_OTHERS = stat.S_IRWXG | stat.S_IRWXO


def private_umask() -> None:
    """Files this process creates from now on are readable by its user only (SQLite's WAL and
    shared-memory files, temporary files, anything a library creates beside the database)."""
    os.umask(0o077)


def secure_directory(directory: Path) -> list[Path]:
    """Create ``directory`` 0700 or tighten it, and every file and directory in it, to owner only.

    Returns what was tightened (empty when everything was already private) and logs one line
    saying so. Symbolic links are not followed: what they point to is not ours to change.
    """
    tightened: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if directory.stat().st_mode & _OTHERS:
        directory.chmod(PRIVATE_DIR_MODE)
        tightened.append(directory)
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in dirs + files:
            path = Path(root) / name
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue  # removed meanwhile (a temporary file)
            if stat.S_ISLNK(info.st_mode) or not info.st_mode & _OTHERS:
                continue
            mode = PRIVATE_DIR_MODE if stat.S_ISDIR(info.st_mode) else PRIVATE_FILE_MODE
            try:
                path.chmod(mode)
            except FileNotFoundError:
                continue
            except OSError as exc:  # another user's file in a shared home: say so, go on
                logger.warning("cannot make %s owner-only: %s", path, exc.strerror or exc)
                continue
            tightened.append(path)
    if tightened:
        logger.warning(
            "%s: %d entr%s readable by other users made owner-only (directories 0700, files 0600)",
            directory,
            len(tightened),
            "y" if len(tightened) == 1 else "ies",
        )
    return tightened
