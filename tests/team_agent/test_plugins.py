"""Finding plugins by entry point: the one helper engines and secrets providers share."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from team_agent import _plugins
from team_agent._plugins import PluginError, installed_plugins, load_plugin
from team_agent.engines.shell import ShellEngine
from team_agent.secrets import EnvSecrets


def test_a_plugin_is_loaded_by_its_name() -> None:
    assert load_plugin("accord.engines", "shell", kind="engine", kinds="engines") is ShellEngine
    assert load_plugin("accord.secrets", "env", kind="secrets provider", kinds="providers") is EnvSecrets


def test_an_unknown_name_is_misspelled_or_not_installed_and_the_installed_ones_are_listed() -> None:
    installed = ", ".join(sorted(installed_plugins("accord.engines")))
    assert "shell" in installed
    with pytest.raises(PluginError) as caught:
        load_plugin("accord.engines", "shel", kind="engine", kinds="engines")
    assert str(caught.value) == (
        f"unknown engine 'shel': it is misspelled or its package is not installed (installed engines: {installed})"
    )


def test_an_empty_group_says_none_is_installed() -> None:
    with pytest.raises(PluginError, match=r"\(installed widgets: none\)$"):
        load_plugin("accord.no-such-group", "x", kind="widget", kinds="widgets")


def test_a_plugin_that_does_not_import_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = EntryPoint(name="broken", value="accord_no_such_module:Engine", group="accord.engines")
    monkeypatch.setattr(_plugins, "installed_plugins", lambda group: {"broken": broken})
    with pytest.raises(
        PluginError, match="engine 'broken' is installed but failed to load: No module named"
    ) as caught:
        load_plugin("accord.engines", "broken", kind="engine", kinds="engines")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
