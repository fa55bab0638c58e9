"""The agent config loader: every problem at once, with its line; secrets resolved in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.errors import FileProblemsError
from team_agent.config import load_config, parse_config, resolve_token, token_follows_provider

GOOD = """\
team: payments
coordinator: 127.0.0.1:7440
token: "${secret:TOKEN}"
concurrency: 3
retry: {max_attempts: 5, initial_backoff: 500ms}
timeouts: {heartbeat: 10s, start_to_close: 2m}
implements:
  payments/refund@1:
    engine: shell
    with:
      command: ["./refund.sh"]
      env: {API_KEY: "key-${secret:API_KEY}"}
"""


def test_a_good_config_is_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("API_KEY", "k")
    loaded = parse_config(GOOD, "agent.yaml", environ={}, build_adapters=True)
    config = loaded.config
    assert config.team == "payments"
    assert config.concurrency == 3
    assert config.retry.max_attempts == 5 and config.retry.initial_backoff == 0.5
    assert config.timeouts.heartbeat == 10 and config.timeouts.start_to_close == 120
    binding = config.bindings["payments/refund@1"]
    assert (binding.contract, binding.major, binding.engine, binding.line) == (
        "payments/refund",
        1,
        "shell",
        8,
    )
    assert list(loaded.adapters) == ["payments/refund@1"]


def test_secrets_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "tok-123")
    monkeypatch.setenv("API_KEY", "s3cr3t")
    config = parse_config(GOOD, "agent.yaml").config
    assert config.token == "tok-123"
    assert config.bindings["payments/refund@1"].options["env"]["API_KEY"] == "key-s3cr3t"
    assert config.secret_values == {"tok-123", "s3cr3t"}


def test_secrets_come_from_a_mounted_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "TOKEN").write_text("tok-from-file\n")
    (tmp_path / "API_KEY").write_text("k\n\n")
    monkeypatch.delenv("TOKEN", raising=False)
    text = GOOD.replace("concurrency: 3", f"concurrency: 3\nsecrets: {{provider: file, path: {tmp_path}}}")
    config = parse_config(text, "agent.yaml").config
    assert config.token == "tok-from-file"
    assert config.bindings["payments/refund@1"].options["env"]["API_KEY"] == "key-k\n"


def test_every_problem_is_reported_at_once_with_its_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISSING_TOKEN", raising=False)
    text = """\
team: payments
token: "${secret:MISSING_TOKEN}"
concurrency: 0
retry: {max_attempts: 0}
colour: blue
implements:
  payments/charge@1:
    engine: shel
  payments/refund@1:
    engine: shell
    with: {command: "./refund.sh"}
  warehouse/reserve@2:
    engine: shell
    with: {command: [x]}
"""
    with pytest.raises(FileProblemsError) as caught:
        parse_config(text, "agent.yaml", environ={})
    found = {(p.line, p.field) for p in caught.value.problems}
    assert found == {
        (2, "token"),
        (3, "concurrency"),
        (4, "retry.max_attempts"),
        (5, "colour"),
        (8, "implements.payments/charge@1.engine"),
        (11, "implements.payments/refund@1.with.command"),
        (12, "implements.warehouse/reserve@2"),
    }
    messages = "\n".join(str(p) for p in caught.value.problems)
    assert "MISSING_TOKEN" in messages and "agent.yaml:2: token:" in messages
    assert "installed engines:" in messages and "shell" in messages


def test_an_unknown_secrets_provider_lists_the_installed_ones() -> None:
    text = GOOD.replace("concurrency: 3", "concurrency: 3\nsecrets: {provider: hashivault}")
    with pytest.raises(FileProblemsError) as caught:
        parse_config(text, "agent.yaml", environ={})
    assert any("installed providers: env, file, vault" in p.message for p in caught.value.problems)


def test_not_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("team: payments\nimplements: [\n")
    with pytest.raises(FileProblemsError) as caught:
        load_config(path)
    assert caught.value.problems[0].line is not None
    assert caught.value.problems[0].file == str(path)


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(FileProblemsError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_agent_durations_read_like_contract_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    """One duration language (contracts.durations): what a contract file accepts, an agent config
    accepts too, and a bare number of seconds."""
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("API_KEY", "k")
    text = GOOD.replace("initial_backoff: 500ms", "initial_backoff: 2.5").replace(
        "start_to_close: 2m", "start_to_close: 1m30s"
    )
    config = parse_config(text, "agent.yaml").config
    assert config.retry.initial_backoff == 2.5
    assert config.timeouts.start_to_close == 90.0


def test_a_bad_agent_duration_names_its_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("API_KEY", "k")
    with pytest.raises(FileProblemsError) as caught:
        parse_config(GOOD.replace("heartbeat: 10s", "heartbeat: soon").replace("500ms}", "-1}"), "agent.yaml")
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("retry.initial_backoff", "must be a duration such as 500ms, 1s, 2m"),
        ("timeouts.heartbeat", "must be a duration such as 30s, 2m"),
    ]


def test_a_token_from_a_secret_file_is_followed_and_read_again(tmp_path: Path) -> None:
    (tmp_path / "TOKEN").write_text("first\n")
    (tmp_path / "API_KEY").write_text("k")
    text = GOOD.replace("concurrency: 3", f"concurrency: 3\nsecrets: {{provider: file, path: {tmp_path}}}")
    loaded = parse_config(text, "agent.yaml")
    config, provider = loaded.config, loaded.secrets
    assert config.token == "first" and config.token_source == "${secret:TOKEN}"
    assert provider is not None and token_follows_provider(config, provider)
    (tmp_path / "TOKEN").write_text("second\n")
    assert resolve_token(config, provider) == "second"
    (tmp_path / "TOKEN").write_text("")
    with pytest.raises(LookupError, match="secret 'TOKEN' is empty"):
        resolve_token(config, provider)
    (tmp_path / "TOKEN").unlink()
    with pytest.raises(LookupError, match="secret 'TOKEN' is missing"):
        resolve_token(config, provider)


def test_a_token_from_the_environment_or_written_out_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("API_KEY", "k")
    from_env = parse_config(GOOD, "agent.yaml")  # the env provider: variables do not change
    assert from_env.config.token_source == "${secret:TOKEN}"
    assert not token_follows_provider(from_env.config, from_env.secrets)
    (tmp_path / "API_KEY").write_text("k")
    literal = GOOD.replace('token: "${secret:TOKEN}"', "token: plain-token").replace(
        "concurrency: 3", f"concurrency: 3\nsecrets: {{provider: file, path: {tmp_path}}}"
    )
    written_out = parse_config(literal, "agent.yaml")
    assert written_out.config.token_source == ""
    assert not token_follows_provider(written_out.config, written_out.secrets)


@pytest.mark.parametrize("coefficient", [".nan", ".inf", "-.inf", "0.5", "1000"])
def test_a_backoff_coefficient_is_a_finite_number_from_1_to_100(
    monkeypatch: pytest.MonkeyPatch, coefficient: str
) -> None:
    """Issue 15, finding 3: a NaN coefficient used to pass (NaN < 1 is false) and stuck runs."""
    monkeypatch.setenv("TOKEN", "t")
    monkeypatch.setenv("API_KEY", "k")
    text = GOOD.replace(
        "initial_backoff: 500ms", f"initial_backoff: 500ms, backoff_coefficient: {coefficient}"
    )
    with pytest.raises(FileProblemsError) as caught:
        parse_config(text, "agent.yaml")
    assert [(p.field, p.message) for p in caught.value.problems] == [
        ("retry.backoff_coefficient", "must be a number between 1 and 100")
    ]


def test_misspelled_fields_get_did_you_mean() -> None:
    text = """\
team: payments
coordinater: 127.0.0.1:7440
token: t
retry: {max_atempts: 5}
timeouts: {hartbeat: 10s}
implements:
  payments/refund@1:
    engine: shell
    wiht: {command: ["./refund.sh"]}
"""
    with pytest.raises(FileProblemsError) as caught:
        parse_config(text, "agent.yaml", environ={}, build_adapters=False)
    lines = str(caught.value).splitlines()
    assert "agent.yaml:2: coordinater: unknown field; did you mean 'coordinator'?" in lines
    assert "agent.yaml:4: retry.max_atempts: unknown field; did you mean 'max_attempts'?" in lines
    assert "agent.yaml:5: timeouts.hartbeat: unknown field; did you mean 'heartbeat'?" in lines
    assert any(line.endswith("wiht: unknown field; did you mean 'with'?") for line in lines), lines


def test_overload_patience_is_a_bounded_duration() -> None:
    base = "team: payments\ntoken: t\nimplements:\n  payments/refund@1: {engine: shell, with: {command: [cat]}}\n"
    assert parse_config(base, "agent.yaml", environ={}, build_adapters=False).config.overload_patience == 60.0
    loaded = parse_config(base + "overload_patience: 10m\n", "agent.yaml", environ={}, build_adapters=False)
    assert loaded.config.overload_patience == 600.0
    for bad in ("0s", "2d", "soon", "[1]"):
        with pytest.raises(FileProblemsError) as caught:
            parse_config(base + f"overload_patience: {bad}\n", "agent.yaml", environ={}, build_adapters=False)
        assert [(p.field, p.line) for p in caught.value.problems] == [("overload_patience", 5)], bad
        assert "between 1s and 24h" in str(caught.value)
    with pytest.raises(FileProblemsError) as caught:
        parse_config(base + "overload_patiense: 10m\n", "agent.yaml", environ={}, build_adapters=False)
    assert "did you mean 'overload_patience'?" in str(caught.value)
