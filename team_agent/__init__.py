"""Accord team agent: serves a team's contracts on its own engines, beside them.

The process entry point is ``accord agent start`` (``team_agent.main``). What a team writing its
own engine adapter or secrets provider needs is re-exported here.
"""

from team_agent.config import AgentConfig, BindingConfig, LoadedConfig, load_config, parse_config
from team_agent.engines.base import (
    EngineAdapter,
    EngineConfigError,
    EngineFailure,
    Handle,
    TaskContext,
    load_engine,
)
from team_agent.redact import Redactor
from team_agent.secrets import EnvSecrets, FileSecrets, SecretProvider, SecretsConfigError

__all__ = [
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
