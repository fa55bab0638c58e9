"""The fingerprint an agent reports for each binding (docs/governance.md, "The autonomy report"):
it follows the configuration as written, never a secret's value; and the ``overrides:`` key."""

from __future__ import annotations

import pytest

from contracts.errors import FileProblemsError
from team_agent.config import parse_config

CONFIG = """\
team: payments
token: "${secret:TOKEN}"
implements:
  payments/refund@1:
    engine: shell
    with:
      command: ["./refund.sh"]
      env: {API_KEY: "${secret:API_KEY}"}
  payments/charge@1:
    engine: shell
    with: {command: ["./charge.sh"]}
"""


@pytest.fixture(autouse=True)
def _secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("API_KEY", "k")


def _fingerprints(monkeypatch: pytest.MonkeyPatch, text: str, api_key: str) -> dict[str, str]:
    monkeypatch.setenv("API_KEY", api_key)
    config = parse_config(text, "agent.yaml", build_adapters=False).config
    return {key: b.fingerprint for key, b in config.bindings.items()}


def test_the_fingerprint_follows_the_configuration_as_written_not_secret_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = _fingerprints(monkeypatch, CONFIG, "secret-one")
    assert first == _fingerprints(monkeypatch, CONFIG, "secret-two")  # a rotated secret: no change
    assert all(len(f) == 16 for f in first.values()) and len(set(first.values())) == 2
    changed = _fingerprints(monkeypatch, CONFIG.replace("./refund.sh", "./refund-v2.sh"), "secret-one")
    assert changed["payments/refund@1"] != first["payments/refund@1"]
    assert changed["payments/charge@1"] == first["payments/charge@1"]


def test_overrides_in_the_agent_config() -> None:
    text = CONFIG + 'overrides: {agent-concurrency: "batch agent"}\n'
    config = parse_config(text, "agent.yaml", build_adapters=False).config
    assert dict(config.overrides) == {"agent-concurrency": "batch agent"}
    with pytest.raises(FileProblemsError) as bad:
        parse_config(CONFIG + 'overrides: {Bad: ""}\n', "agent.yaml", build_adapters=False)
    assert [p.field for p in bad.value.problems] == ["overrides.Bad"]
