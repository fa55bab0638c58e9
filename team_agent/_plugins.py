"""Plugins found through entry points: engine adapters (``accord.engines``) and secrets providers
(``accord.secrets``). The entry point's name is the value a team writes in its agent config, so a
team ships its own plugin in its own package without touching Accord (as opentelemetry-python
finds exporters and propagators)."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any


class PluginError(Exception):
    """A plugin that is not installed or does not load; the message says which and what to do.
    Callers re-raise it as their own config error, naming the field that held the name."""


def installed_plugins(group: str) -> dict[str, EntryPoint]:
    """Name → entry point, for every plugin of ``group`` installed in this environment."""
    return {ep.name: ep for ep in entry_points(group=group)}


def load_plugin(group: str, name: str, *, kind: str, kinds: str) -> Any:
    """The object registered under ``name`` in ``group``. ``kind``/``kinds`` name it in messages
    ("engine"/"engines"). An unknown name is misspelled or not installed: the message lists the
    installed names; one that fails to import says so with the import's error."""
    found = installed_plugins(group)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise PluginError(
            f"unknown {kind} {name!r}: it is misspelled or its package is not installed "
            f"(installed {kinds}: {known})"
        )
    try:
        return found[name].load()
    except Exception as exc:
        raise PluginError(f"{kind} {name!r} is installed but failed to load: {exc}") from exc
