"""The agent config file: parsed, checked and resolved in one pass.

Every problem is collected (file, line, field, what to do) and raised together as
``FileProblemsError`` before anything starts. ``${secret:NAME}`` references are resolved here,
anywhere in the file except the ``secrets:`` section itself, through the configured provider; the
resolved values are kept in ``AgentConfig.secret_values`` for the Redactor and nowhere else.

Loading also builds one engine adapter per binding, because an adapter's constructor is what
checks its ``with:`` mapping; the caller owns (and closes) the adapters it gets back.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts._yaml import Document, escape, parse_document
from contracts.channels import TlsSettings
from contracts.durations import parse_duration
from contracts.endpoints import parse_addresses
from contracts.errors import DurationError, FileProblemsError, InvalidArgumentError, Problem
from contracts.model import RetryPolicy, Timeouts
from team_agent.engines.base import EngineAdapter, EngineConfigError, load_engine
from team_agent.secrets import (
    SECRET_REFERENCE,
    SecretLookupError,
    SecretProvider,
    SecretsConfigError,
    load_provider,
)

DEFAULT_COORDINATOR = "127.0.0.1:7440"
DEFAULT_CONCURRENCY = 4
# How long the agent keeps retrying a coordinator that refuses it as overloaded before it exits 3
# (docs/agent.md, "Overload"); a supervisor then restarts it, or an operator looks.
DEFAULT_OVERLOAD_PATIENCE = 60.0
OVERLOAD_PATIENCE_RANGE = (1.0, 86_400.0)

_TOP_LEVEL = {
    "team",
    "coordinator",
    "token",
    "concurrency",
    "secrets",
    "retry",
    "timeout",
    "timeouts",
    "implements",
    "tls",
    "overrides",
    "overload_patience",
    "protocol",
}
# The agent API the agent speaks (docs/agent.md, "The wire"): v2, one stream carrying tasks and
# results in batches (falling back to v1 by itself where the coordinator serves only v1), unless
# ``protocol: v1`` asks for the unary calls.
PROTOCOLS = ("v1", "v2")
_RULE_ID = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_TLS_FIELDS = ("ca", "cert", "key", "server_name")
_NAME = r"[a-z0-9][a-z0-9_-]*"
_BINDING_KEY = re.compile(rf"^({_NAME})/({_NAME})@(\d+)$")
_TEAM = re.compile(rf"^{_NAME}$")


@dataclass(frozen=True)
class BindingConfig:
    """One contract major this agent serves, and the engine that does the work."""

    contract: str  # "team/name"
    major: int
    engine: str
    options: Mapping[str, Any]  # the ``with:`` mapping, secrets resolved
    line: int | None = None
    # sha256 (hex, first 16) of the engine and the ``with:`` mapping as written, secret references
    # unresolved: tells the coordinator the configuration changed without telling it anything
    # secret (docs/governance.md, "The autonomy report").
    fingerprint: str = ""

    @property
    def key(self) -> str:
        return f"{self.contract}@{self.major}"


@dataclass(frozen=True)
class AgentConfig:
    """A checked agent config. Built once per load, passed down explicitly."""

    source: str  # file path, for messages
    team: str
    coordinator: str
    token: str
    concurrency: int
    secrets_provider: str
    retry: RetryPolicy
    timeouts: Timeouts
    bindings: Mapping[str, BindingConfig]  # by key "team/name@MAJOR"
    # How to dial the coordinator: the ``tls:`` section, else the ACCORD_TLS* variables.
    tls: TlsSettings = field(default_factory=TlsSettings)
    secret_values: frozenset[str] = field(default=frozenset(), repr=False)
    digest: str = ""  # sha256 of the file's bytes: what the reload watcher compares
    # ``token:`` as written, when it refers to secrets ("${secret:ACCORD_TOKEN}"): what the agent
    # resolves again to follow a token rotated in the secrets provider (``resolve_token``).
    token_source: str = ""
    # Policy rule id -> reason: this agent registers although the rule is not satisfied
    # (an overridable ``require`` rule; the coordinator records it; docs/governance.md).
    overrides: Mapping[str, str] = field(default_factory=dict)
    # Seconds of continuous RESOURCE_EXHAUSTED answers to one call before the agent exits 3.
    overload_patience: float = DEFAULT_OVERLOAD_PATIENCE
    protocol: str = "v2"


@dataclass
class LoadedConfig:
    config: AgentConfig
    adapters: dict[str, EngineAdapter]  # by binding key
    # The secrets provider the config was resolved with (None when its section was broken).
    secrets: SecretProvider | None = None


def token_follows_provider(config: AgentConfig, provider: SecretProvider | None) -> bool:
    """Whether the agent re-reads its token from ``provider`` while it runs: the token comes from
    a ``${secret:...}`` reference and the provider says its values change while the agent runs
    (``rereadable``: the ``file`` provider; environment variables do not change)."""
    return bool(config.token_source) and bool(getattr(provider, "rereadable", False))


def resolve_token(config: AgentConfig, provider: SecretProvider) -> str:
    """``config.token_source`` resolved again through ``provider`` (blocking: call it off the event
    loop). Raises ``LookupError`` naming a secret that is missing or empty now."""

    def substitute(match: re.Match[str]) -> str:
        value = provider.get(match.group(1))
        if not value:
            raise LookupError(f"secret {match.group(1)!r} is {'empty' if value == '' else 'missing'}")
        return value

    return SECRET_REFERENCE.sub(substitute, config.token_source)


class _Collector:
    def __init__(self, source: str, document: Document) -> None:
        self.source = source
        self.document = document
        self.problems: list[Problem] = []

    def line(self, path: tuple[str | int, ...]) -> int | None:
        return self.document.line_of("".join(f"/{escape(str(p))}" for p in path))

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(
            Problem(
                file=self.source,
                message=message,
                line=self.line(path),
                field=".".join(str(p) for p in path),
            )
        )

    def duration(self, path: tuple[str | int, ...], value: Any, problem: str) -> float | None:
        """Seconds in ``value`` (``contracts.durations``), or None after adding ``problem``."""
        try:
            return parse_duration(value)
        except DurationError:
            self.add(path, problem)
            return None


def _resolve_secrets(
    value: Any,
    path: tuple[str | int, ...],
    provider: SecretProvider,
    found: set[str],
    problems: _Collector,
    provider_name: str,
) -> Any:
    if isinstance(value, str):
        if "${secret:" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            try:
                secret = provider.get(name)
            except SecretLookupError as exc:
                problems.add(path, str(exc))
                return ""
            if secret is None:
                problems.add(
                    path,
                    f"secret {name!r} not found by the {provider_name!r} secrets provider "
                    "(set it there, or fix the name)",
                )
                return ""
            found.add(secret)
            return secret

        if "${secret:" in SECRET_REFERENCE.sub("", value):
            problems.add(path, "malformed secret reference: write ${secret:NAME}")
        return SECRET_REFERENCE.sub(substitute, value)
    if isinstance(value, dict):
        return {
            k: _resolve_secrets(v, (*path, str(k)), provider, found, problems, provider_name)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _resolve_secrets(v, (*path, i), provider, found, problems, provider_name)
            for i, v in enumerate(value)
        ]
    return value


def _unknown_field(key: Any, known: Any) -> str:
    """'unknown field', with the field it is probably a misspelling of, else the known ones."""
    names = sorted(str(k) for k in known)
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean '{close[0]}'?"
    return f"unknown field (expected one of: {', '.join(names)})"


def _retry_policy(raw: Any, problems: _Collector) -> RetryPolicy:
    if raw is None:
        return RetryPolicy()
    if not isinstance(raw, dict):
        problems.add(("retry",), "must be a mapping such as {max_attempts: 5, initial_backoff: 1s}")
        return RetryPolicy()
    known = {"max_attempts", "initial_backoff", "backoff_coefficient", "max_backoff", "non_retryable"}
    for key in sorted(set(raw) - known):
        problems.add(("retry", key), _unknown_field(key, known))
    max_attempts = raw.get("max_attempts")
    if max_attempts is not None and (
        not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or not 1 <= max_attempts <= 1000
    ):
        problems.add(("retry", "max_attempts"), "must be an integer between 1 and 1000")
        max_attempts = None
    durations: dict[str, float | None] = {}
    for key in ("initial_backoff", "max_backoff"):
        if raw.get(key) is None:
            durations[key] = None
            continue
        durations[key] = problems.duration(
            ("retry", key), raw[key], "must be a duration such as 500ms, 1s, 2m"
        )
    coefficient = raw.get("backoff_coefficient")
    if coefficient is not None and (
        not isinstance(coefficient, int | float)
        or isinstance(coefficient, bool)
        or not 1 <= coefficient <= 100  # also refuses NaN and infinities
    ):
        problems.add(("retry", "backoff_coefficient"), "must be a number between 1 and 100")
        coefficient = None
    non_retryable = raw.get("non_retryable", [])
    if not isinstance(non_retryable, list) or not all(isinstance(x, str) for x in non_retryable):
        problems.add(("retry", "non_retryable"), "must be a list of error type names")
        non_retryable = []
    return RetryPolicy(
        max_attempts=max_attempts,
        initial_backoff=durations["initial_backoff"],
        backoff_coefficient=float(coefficient) if coefficient is not None else None,
        max_backoff=durations["max_backoff"],
        non_retryable=tuple(non_retryable),
    )


def _overload_patience(value: Any, problems: _Collector) -> float:
    if value is None:
        return DEFAULT_OVERLOAD_PATIENCE
    low, high = OVERLOAD_PATIENCE_RANGE
    problem = "must be a duration between 1s and 24h, such as 60s or 10m"
    seconds = problems.duration(("overload_patience",), value, problem)
    if seconds is None:
        return DEFAULT_OVERLOAD_PATIENCE
    if not low <= seconds <= high:
        problems.add(("overload_patience",), problem)
        return DEFAULT_OVERLOAD_PATIENCE
    return seconds


def _timeouts(data: Mapping[str, Any], problems: _Collector) -> Timeouts:
    values: dict[str, float | None] = {"schedule_to_start": None, "start_to_close": None, "heartbeat": None}
    if data.get("timeout") is not None:
        values["start_to_close"] = problems.duration(
            ("timeout",), data["timeout"], "must be a duration such as 30s, 2m (start to close)"
        )
    raw = data.get("timeouts")
    if raw is not None:
        if not isinstance(raw, dict):
            problems.add(("timeouts",), "must be a mapping of schedule_to_start, start_to_close, heartbeat")
        else:
            for key in sorted(set(raw) - set(values)):
                problems.add(("timeouts", key), _unknown_field(key, values))
            for key in values:
                if raw.get(key) is None:
                    continue
                seconds = problems.duration(("timeouts", key), raw[key], "must be a duration such as 30s, 2m")
                if seconds is None:
                    continue
                if key == "start_to_close" and data.get("timeout") is not None:
                    problems.add(("timeouts", key), "set either timeout or timeouts.start_to_close, not both")
                else:
                    values[key] = seconds
    return Timeouts(**values)


def _build_adapter(
    key: str, engine: str, options: Mapping[str, Any], problems: _Collector
) -> EngineAdapter | None:
    base = ("implements", key)
    try:
        cls = load_engine(engine)
    except EngineConfigError as exc:
        for _, message in exc.problems:
            problems.add((*base, "engine"), message)
        return None
    try:
        return cls(options)  # type: ignore[call-arg]
    except EngineConfigError as exc:
        for name, message in exc.problems:
            sub: tuple[str | int, ...] = tuple(int(p) if p.isdigit() else p for p in name.split(".") if p)
            problems.add((*base, "with", *sub), message)
    except Exception as exc:
        problems.add((*base, "with"), f"engine {engine!r} rejected its configuration: {exc}")
    return None


def _tls(raw: Any, source: str, environ: Mapping[str, str], problems: _Collector) -> TlsSettings:
    """The ``tls:`` section (``{}`` for TLS trusting the system's CAs), else the environment's."""
    if raw is None:
        try:
            settings = TlsSettings.from_env(environ)
        except InvalidArgumentError as exc:
            problems.add(("tls",), f"no tls: section, and the environment's is wrong: {exc}")
            return TlsSettings()
    elif not isinstance(raw, dict):
        problems.add(("tls",), "must be a mapping such as {ca: /etc/accord/ca.pem} ({} for the system's CAs)")
        return TlsSettings()
    else:
        for key in sorted(set(raw) - set(_TLS_FIELDS), key=str):
            problems.add(("tls", str(key)), _unknown_field(key, _TLS_FIELDS))
        values: dict[str, str] = {}
        for key in _TLS_FIELDS:
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                problems.add(
                    ("tls", key), "must be a file path" if key != "server_name" else "must be a name"
                )
                value = None
            values[key] = (value or "").strip()
        settings = TlsSettings(enabled=True, origin=source, **values)
    for name, message in settings.problems():
        if settings.origin == source:
            problems.add(("tls", name), message)
        else:
            problems.add(("tls",), f"{settings.name_of(name)}: {message}")
    return settings


def binding_fingerprint(engine: str, written: Any) -> str:
    """The fingerprint of one binding's configuration as written (see ``BindingConfig``)."""
    text = json.dumps({"engine": engine, "with": written}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check_bindings(
    raw: Any, team: str, problems: _Collector, written: Any = None
) -> dict[str, BindingConfig]:
    bindings: dict[str, BindingConfig] = {}
    if raw is None:
        problems.add(("implements",), "missing: list the contracts this agent implements")
        return bindings
    if not isinstance(raw, dict) or not raw:
        problems.add(("implements",), "must map contract majors (team/name@1) to {engine, with}")
        return bindings
    for key, spec in raw.items():
        path: tuple[str | int, ...] = ("implements", str(key))
        match = _BINDING_KEY.match(str(key))
        if not match:
            problems.add(
                path, f"{key!r} is not a contract major: write team/name@MAJOR, e.g. {team}/charge@1"
            )
            continue
        if team and match.group(1) != team:
            problems.add(path, f"an agent of team {team!r} can only implement {team}/... contracts")
        if not isinstance(spec, dict):
            problems.add(path, "must be a mapping with engine and with")
            continue
        for extra in sorted(set(spec) - {"engine", "with"}):
            problems.add((*path, extra), _unknown_field(extra, ("engine", "with")))
        engine = spec.get("engine")
        if not isinstance(engine, str) or not engine:
            problems.add((*path, "engine"), "missing: name the engine adapter (shell, python, http, ...)")
            continue
        options = spec.get("with") or {}
        if not isinstance(options, dict):
            problems.add((*path, "with"), "must be a mapping of the engine's options")
            continue
        bindings[str(key)] = BindingConfig(
            contract=f"{match.group(1)}/{match.group(2)}",
            major=int(match.group(3)),
            engine=engine,
            options=options,
            line=problems.line(path),
            fingerprint=binding_fingerprint(
                engine,
                (written.get(key) or {}).get("with")
                if isinstance(written, dict) and isinstance(written.get(key), dict)
                else None,
            ),
        )
    return bindings


def parse_config(
    text: str, source: str, *, environ: Mapping[str, str] | None = None, build_adapters: bool = True
) -> LoadedConfig:
    """Check and resolve an agent config held in ``text``; raise FileProblemsError listing every
    problem. With ``build_adapters``, also build (and so check) each binding's engine adapter."""
    environ = os.environ if environ is None else environ
    document = parse_document(text, source)
    if document.problems:
        raise FileProblemsError(document.problems)
    problems = _Collector(source, document)
    data = document.data
    if not isinstance(data, dict):
        raise FileProblemsError(
            [Problem(source, "must be a YAML mapping (team, coordinator, implements...)")]
        )

    for key in sorted(set(data) - _TOP_LEVEL, key=str):
        problems.add((str(key),), _unknown_field(key, _TOP_LEVEL))

    # Secrets first: every other field may refer to them.
    secrets_raw = data.get("secrets") or {"provider": "env"}
    provider: SecretProvider | None = None
    provider_name = "env"
    if not isinstance(secrets_raw, dict):
        problems.add(("secrets",), "must be a mapping such as {provider: env}")
    else:
        provider_name = str(secrets_raw.get("provider", "env"))
        if any(isinstance(v, str) and "${secret:" in v for v in secrets_raw.values()):
            problems.add(("secrets",), "the secrets section cannot itself use ${secret:...}")
        else:
            options = {k: v for k, v in secrets_raw.items() if k != "provider"}
            try:
                provider = load_provider(provider_name, options)
            except SecretsConfigError as exc:
                for name, message in exc.problems:
                    problems.add(tuple(name.split(".")), message)
    found: set[str] = set()
    if provider is not None:
        data = {
            k: (v if k == "secrets" else _resolve_secrets(v, (k,), provider, found, problems, provider_name))
            for k, v in data.items()
        }

    team = data.get("team")
    if not isinstance(team, str) or not _TEAM.match(team):
        problems.add(("team",), "missing or invalid: the team this agent works for (lowercase name)")
        team = ""
    coordinator_value = data.get("coordinator", environ.get("ACCORD_COORDINATOR", DEFAULT_COORDINATOR))
    try:
        # One coordinator, or the replicas of one installation (a list, or "a:7440,b:7440").
        if not isinstance(coordinator_value, (str, list)):
            raise InvalidArgumentError("coordinator")
        coordinator = ",".join(parse_addresses(coordinator_value, "coordinator"))
    except InvalidArgumentError:
        problems.add(
            ("coordinator",),
            "must be host:port, e.g. 127.0.0.1:7440, or a list of them (replicas), e.g. [a:7440, b:7440]",
        )
        coordinator = DEFAULT_COORDINATOR
    raw_token = document.data.get("token") if isinstance(document.data, dict) else None
    token_source = raw_token if isinstance(raw_token, str) and SECRET_REFERENCE.search(raw_token) else ""
    token = data.get("token", environ.get("ACCORD_TOKEN"))
    if (not isinstance(token, str) or not token) and not any(p.field == "token" for p in problems.problems):
        problems.add(("token",), 'missing: the team token, e.g. token: "${secret:ACCORD_TOKEN}"')
    if not isinstance(token, str):
        token = ""
    concurrency = data.get("concurrency", DEFAULT_CONCURRENCY)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 1024:
        problems.add(("concurrency",), "must be an integer between 1 and 1024")
        concurrency = DEFAULT_CONCURRENCY
    retry = _retry_policy(data.get("retry"), problems)
    timeouts = _timeouts(data, problems)
    tls = _tls(data.get("tls"), source, environ, problems)
    overload_patience = _overload_patience(data.get("overload_patience"), problems)
    protocol = data.get("protocol", "v2")
    if protocol not in PROTOCOLS:
        problems.add(
            ("protocol",),
            "must be v2 (the default: one stream carrying tasks and results in batches) or v1 (the unary calls)",
        )
        protocol = "v2"
    bindings = _check_bindings(data.get("implements"), team, problems, document.data.get("implements"))
    overrides = _overrides(data.get("overrides"), problems)

    config = AgentConfig(
        source=source,
        team=team,
        coordinator=coordinator,
        token=token,
        concurrency=concurrency,
        secrets_provider=provider_name,
        retry=retry,
        timeouts=timeouts,
        bindings=bindings,
        tls=tls,
        secret_values=frozenset(found),
        digest=hashlib.sha256(text.encode()).hexdigest(),
        token_source=token_source,
        overrides=overrides,
        overload_patience=overload_patience,
        protocol=protocol,
    )
    adapters: dict[str, EngineAdapter] = {}
    if build_adapters:
        for key, binding in bindings.items():
            prefix = f"implements.{key}"
            if any(p.field == prefix or p.field.startswith(prefix + ".") for p in problems.problems):
                continue
            adapter = _build_adapter(key, binding.engine, binding.options, problems)
            if adapter is not None:
                adapters[key] = adapter
    if problems.problems:
        raise FileProblemsError(sorted(problems.problems, key=lambda p: (p.line or 0, p.field)))
    return LoadedConfig(config, adapters, provider)


def _overrides(raw: Any, problems: _Collector) -> dict[str, str]:
    """``overrides: {RULE: "reason"}``: policy rules this agent's registration overrides."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        problems.add(
            ("overrides",), 'must be a mapping of policy rule ids to reasons, e.g. {max-concurrency: "why"}'
        )
        return {}
    found: dict[str, str] = {}
    for key, reason in raw.items():
        if not isinstance(key, str) or not _RULE_ID.match(key):
            problems.add(
                ("overrides", str(key)), "must be a policy rule's id (lowercase letters, digits, dashes)"
            )
        elif not isinstance(reason, str) or not reason.strip() or len(reason) > 500:
            problems.add(("overrides", key), "must be the reason, a text of 1 to 500 characters")
        else:
            found[key] = reason.strip()
    return found


def load_config(path: str | Path, **kwargs: Any) -> LoadedConfig:
    """Read and check the agent config at ``path`` (see ``parse_config``)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise FileProblemsError([Problem(source, f"cannot read the agent config: {exc.strerror}")]) from None
    return parse_config(text, source, **kwargs)
