"""The team_agent package's public API is deliberate: this pins it."""

import team_agent


def test_exports() -> None:
    assert sorted(team_agent.__all__) == [
        "AgentConfig",
        "BindingConfig",
        "EngineAdapter",
        "EngineConfigError",
        "EngineFailure",
        "EnvSecrets",
        "FileSecrets",
        "Handle",
        "LoadedConfig",
        "Redactor",
        "SecretProvider",
        "SecretsConfigError",
        "TaskContext",
        "load_config",
        "load_engine",
        "parse_config",
    ]
    for name in team_agent.__all__:
        assert getattr(team_agent, name) is not None
