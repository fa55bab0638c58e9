"""The agent process's entry point: build every object once, run, shut down.

Only this module configures process-wide things (logging, the OTel SDK, signal handlers).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from contracts.channels import Channels
from contracts.metrics import MetricsServer
from contracts.private_files import secure_directory
from contracts.runtime import settle_runtime
from team_agent.agent import Agent, AgentOptions
from team_agent.client import GatewayClient
from team_agent.config import LoadedConfig, load_config
from team_agent.logs import configure_logging
from team_agent.metrics import BUCKETS
from team_agent.redact import Redactor
from team_agent.tracing import build_tracer_provider

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartOptions:
    config_path: Path
    log_level: str = "info"
    log_format: str = "text"
    state_dir: Path | None = None
    agent_id: str | None = None
    grace: float = 30.0
    reload_interval: float = 1.0
    export_traces: bool = True
    metrics: str = "off"  # HOST:PORT to serve /metrics on for Prometheus; "off": none


def default_state_dir(team: str) -> Path:
    home = Path(os.environ.get("ACCORD_HOME") or Path.home() / ".accord")
    return home / f"agent-{team}"


def default_agent_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class _TokenInUse:
    """The token every call uses: the running agent's, which changes when its config, or the
    secret file its token comes from, changes; before the agent exists, the one loaded at start."""

    def __init__(self, loaded: str) -> None:
        self._loaded = loaded
        self.agent: Agent | None = None

    def __call__(self) -> str:
        return self.agent.config.token if self.agent is not None else self._loaded


def start(options: StartOptions) -> None:
    """Check the config (raises FileProblemsError listing every problem), then run until
    SIGTERM/SIGINT."""
    loaded = load_config(options.config_path)
    redactor = Redactor(loaded.config.secret_values)
    configure_logging(options.log_level, options.log_format, redactor)
    channels = Channels(loaded.config.tls)  # the files were checked with the config
    token = _TokenInUse(loaded.config.token)
    provider = build_tracer_provider(
        team=loaded.config.team,
        coordinator=loaded.config.coordinator,
        token=token,
        redactor=redactor,
        export=options.export_traces,
        channels=channels,
    )
    # Adapters a team ships may create their own child spans through the global API.
    trace.set_tracer_provider(provider)
    try:
        asyncio.run(_serve(loaded, options, redactor, provider, channels, token))
    finally:
        provider.shutdown()


async def _serve(
    loaded: LoadedConfig,
    options: StartOptions,
    redactor: Redactor,
    provider: TracerProvider,
    channels: Channels,
    token: _TokenInUse,
) -> None:
    config = loaded.config
    state_dir = options.state_dir or default_state_dir(config.team)
    # Undelivered results hold outputs in clear: the state directory (and ACCORD_HOME when it is
    # the default place) is owner-only. No umask here: the engine's own tasks inherit it.
    await asyncio.to_thread(secure_directory, state_dir if options.state_dir else state_dir.parent)
    agent_options = AgentOptions(
        agent_id=options.agent_id or default_agent_id(),
        state_dir=state_dir,
        grace=options.grace,
        reload_interval=options.reload_interval,
    )
    client = GatewayClient(
        config.coordinator, token, redactor, channels=channels, overload_patience=config.overload_patience
    )
    # Metrics (docs/production.md, "Metrics"): /metrics for Prometheus, OTLP by OTEL_*.
    metrics = MetricsServer(f"accord-agent-{config.team}", options.metrics, os.environ, BUCKETS)
    if metrics.address:
        logger.info("serving metrics for Prometheus on http://%s/metrics", metrics.address)
    agent = Agent(
        loaded,
        config_path=options.config_path,
        options=agent_options,
        client=client,
        tracer=provider.get_tracer("team_agent"),
        redactor=redactor,
        meter=metrics.meter("team_agent") if metrics.exporting else None,
    )
    token.agent = agent
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settle_runtime()  # configured and its engines loaded: out of the collector's sight from now on
    try:
        await agent.run(stop)
    finally:
        await client.close()
        await asyncio.to_thread(metrics.close)
