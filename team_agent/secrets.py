"""Secret providers: where ``${secret:NAME}`` references in an agent config are resolved.

Providers are found through the entry-point group ``accord.secrets`` (the name is the config's
``secrets.provider``), so a team can plug in its own vault client. Resolved values stay inside
the agent: every one of them is handed to the ``Redactor`` before anything is sent or logged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from contracts.errors import AccordError
from team_agent._plugins import PluginError, load_plugin

ENTRY_POINT_GROUP = "accord.secrets"

# ``${secret:NAME}``; NAME is what the provider looks up (an env var, a file name, a Vault
# ``path#key``, ``path@version#key``: docs/secrets-vault.md).
SECRET_REFERENCE = re.compile(r"\$\{secret:([A-Za-z0-9_.\-/#@]+)\}")


class SecretsConfigError(AccordError):
    """The ``secrets:`` section is wrong; ``problems`` are (field, message) pairs."""

    exit_code = 2

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in problems))


class SecretLookupError(LookupError):
    """A provider could not look a secret up (its store unreachable, access refused...): the
    message names the secret and what to do, never a value or a credential. The config loader
    reports it at the field that refers to the secret."""


@runtime_checkable
class SecretProvider(Protocol):
    """Built with the ``secrets:`` mapping (minus ``provider``); raise SecretsConfigError.

    A provider whose values change while the agent runs, and which is cheap to ask, may say so
    with a class attribute ``rereadable = True``: the agent then reads its token from it again
    every ``--reload-interval`` (a rotated token is picked up without a restart; docs/agent.md,
    "Token rotation")."""

    def get(self, name: str) -> str | None:
        """The secret's value, or None when it does not exist; may raise SecretLookupError."""
        ...


class EnvSecrets:
    """Secrets from environment variables (optionally under a ``prefix``)."""

    def __init__(self, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
        unknown = sorted(set(options) - {"prefix"})
        if unknown:
            raise SecretsConfigError([(f"secrets.{k}", "unknown option for provider env") for k in unknown])
        prefix = options.get("prefix", "")
        if not isinstance(prefix, str):
            raise SecretsConfigError([("secrets.prefix", "must be a string")])
        self._prefix = prefix
        self._environ = environ if environ is not None else os.environ

    def get(self, name: str) -> str | None:
        return self._environ.get(self._prefix + name)


class FileSecrets:
    """Secrets from a directory of files, as Kubernetes mounts them: the file name is the
    secret's name, its content the value (one trailing newline stripped). Files change while the
    agent runs (a rotated token written to its file): ``rereadable``."""

    rereadable = True

    def __init__(self, options: Mapping[str, Any]) -> None:
        problems: list[tuple[str, str]] = []
        unknown = sorted(set(options) - {"path"})
        problems += [(f"secrets.{k}", "unknown option for provider file") for k in unknown]
        path = options.get("path")
        if not isinstance(path, str) or not path:
            problems.append(("secrets.path", "provider file needs path: the directory holding the secrets"))
        elif not Path(path).is_dir():
            problems.append(("secrets.path", f"{path} is not a directory"))
        if problems:
            raise SecretsConfigError(problems)
        self._dir = Path(str(path))

    def get(self, name: str) -> str | None:
        if "/" in name or name in {".", ".."}:
            return None
        try:
            text = (self._dir / name).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            return None
        if text.endswith("\r\n"):
            return text[:-2]
        if text.endswith("\n"):
            return text[:-1]
        return text


def load_provider(name: str, options: Mapping[str, Any]) -> SecretProvider:
    """Build the provider registered under ``name``; unknown names list the installed ones."""
    try:
        cls = load_plugin(ENTRY_POINT_GROUP, name, kind="secrets provider", kinds="providers")
    except PluginError as exc:
        raise SecretsConfigError([("secrets.provider", str(exc))]) from exc
    provider: SecretProvider = cls(options)
    return provider
