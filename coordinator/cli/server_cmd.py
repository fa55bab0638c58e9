"""``accord coordinator start``.

The server (grpc, the store, the engine, OpenTelemetry) is imported inside the command, so the
other commands do not pay for it.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import unquote, urlsplit, urlunsplit

import typer

from contracts.runtime import settle_runtime
from coordinator.cli._apps import coordinator_app
from coordinator.cli._output import command, fail
from coordinator.config import (
    DEFAULT_AUDIT_RETENTION,
    DEFAULT_AUTONOMY_ROWS,
    DEFAULT_CHECK_BUDGET,
    DEFAULT_EVENTS_STREAM,
    DEFAULT_LISTEN,
    DEFAULT_MAX_INFLIGHT,
    DEFAULT_METRICS,
    DEFAULT_STORE_POOL,
    DEFAULT_STORE_RETRY,
    CoordinatorConfig,
    EngineSettings,
    ServerTlsFiles,
    accord_home,
    parse_size,
    ui_enabled,
)

if TYPE_CHECKING:
    from coordinator.server import Coordinator, ServerHook

# Other packages (the web UI) append hooks here, keyed by the option that enables them; the
# factory gets the config and returns the hook (e.g. a uvicorn server on config.ui_listen).
UI_HOOK_FACTORIES: list[object] = []
DEFAULT_UI = "127.0.0.1:7441"


def _ui_hook(config: CoordinatorConfig) -> ServerHook | None:
    # Imported only to serve it, so other commands, and a coordinator with the UI off, do not
    # pay for starlette and uvicorn (~0.1 s at each start).
    if not ui_enabled(config.ui_listen):
        return None
    from coordinator.web.hook import ui_hook

    return ui_hook(config)


UI_HOOK_FACTORIES.append(_ui_hook)


def _announce(coordinator: Coordinator) -> None:
    if coordinator.admin_token_created:
        path = coordinator.config.admin_token_file
        if sys.stderr.isatty():
            typer.echo(f"admin token (written once to {path}): {coordinator.admin_token_created}", err=True)
        else:
            # Not a person at a terminal: stderr is a log that gets collected and kept, so say
            # where the token is (readable by this user only) instead of writing it there.
            logging.getLogger(__name__).warning(
                "created the admin token and wrote it to %s (mode 0600); it is not shown in logs", path
            )
    typer.echo(f"accord coordinator listening on {coordinator.address}")
    sys.stdout.flush()
    settle_runtime()  # started: what start-up made is out of the collector's sight


def parse_listen(value: str, option: str, example: str) -> tuple[str, int]:
    """ "HOST:PORT" (or "[v6]:PORT") -> (host, port); anything else fails with exit 2."""
    host, sep, port = value.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise fail(
            f"{option} {value!r}: expected HOST:PORT with a port from 0 to 65535, e.g. {example} "
            "(port 0 picks a free one)"
        )
    return host, int(port)


def check_can_listen(host: str, port: int, option: str) -> None:
    """Fail (exit 2) before anything starts when ``host:port`` cannot be bound: gRPC would only
    say "Failed to bind" from deep inside start-up, after the database and token were set up."""
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    advice = f"choose {option} HOST:PORT"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise fail(f"cannot listen on {where}: unknown host {host!r} ({exc.strerror}); {advice}") from None
    errors: list[OSError] = []
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as sock:
            # As gRPC does: a port only in TIME_WAIT is free, one with a listener is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise fail(
                        f"cannot listen on {where}: the address is in use; stop the other process or {advice}"
                    ) from None
                errors.append(exc)
    if errors and len(errors) == len(infos):
        reason = errors[0].strerror or str(errors[0])
        raise fail(f"cannot listen on {where}: {reason}; {advice}")


def _is_loopback(host: str) -> bool:
    """Whether every address ``host`` stands for is a loopback one (127.0.0.0/8, ::1)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def _server_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> ServerTlsFiles | None:
    """The TLS files of --tls-cert, --tls-key and --tls-client-ca, read once here so that a
    problem fails the start (exit 2, naming the file) before anything is touched."""
    if cert is None and key is None:
        if client_ca is not None:
            raise fail(
                "--tls-client-ca turns on mutual TLS, which needs TLS: give --tls-cert FILE and --tls-key FILE too"
            )
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if cert is not None else ("--tls-key", "--tls-cert")
        raise fail(f"{given} needs {missing}: give the certificate and its private key")
    files = ServerTlsFiles(cert=cert, key=key, client_ca=client_ca)
    from coordinator.tls import load

    load(files)  # TlsFilesError, exit 2
    return files


def _refuse_plaintext_off_loopback(listen: str, ui: str | None, insecure: bool) -> None:
    """Without TLS, gRPC and the UI stay on loopback unless --insecure says otherwise: tokens and
    payloads would cross the network in clear."""
    exposed = [
        (option, value)
        for option, value in (("--listen", listen), ("--ui", ui))
        if value is not None and not _is_loopback(parse_listen(value, option, DEFAULT_LISTEN)[0])
    ]
    if not exposed:
        return
    named = " and ".join(f"{option} {value}" for option, value in exposed)
    if not insecure:
        raise fail(
            f"{named}: not a loopback address, and without TLS tokens and payloads would cross the"
            " network in clear; give --tls-cert FILE --tls-key FILE (docs/production.md, TLS), or"
            " --insecure to serve plaintext anyway (a private network, a TLS proxy in front)"
        )
    logging.getLogger(__name__).warning(
        "serving %s in plaintext (--insecure): tokens and payloads cross the network in clear", named
    )


STORE_SCHEMES = ("postgresql", "postgres", "sqlite")
STORE_FORMS = "postgresql://USER@HOST:PORT/DB or sqlite:///PATH"


def _redacted(url: str) -> str:
    """``url`` with its password (if any) replaced by ***, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _store(url: str) -> tuple[str, Path | None]:
    """``--store URL`` -> (PostgreSQL URL, None) or ("", SQLite path); anything else fails with
    exit 2, naming the schemes (and never a password)."""
    scheme, sep, _ = url.strip().partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in STORE_SCHEMES:
        shown = f"unknown scheme '{scheme}'" if sep else "not a URL"
        raise fail(
            f"--store '{_redacted(url)}': {shown}; use {STORE_FORMS} (schemes: {', '.join(STORE_SCHEMES)})"
        )
    if scheme == "sqlite":
        path = unquote(urlsplit(url.strip()).path)
        if not path or path == "/":
            raise fail(
                f"--store '{url}': no file; use sqlite:///PATH, e.g. sqlite:///var/lib/accord/coordinator.db"
            )
        return "", Path(path)
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise fail(
            "--store postgresql://...: the PostgreSQL store needs psycopg, which is not installed;"
            " install Accord with its postgres extra (pip install 'accord[postgres]')"
        ) from None
    try:
        conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: libpq's words for what is wrong
        password = urlsplit(url).password
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if password:
            reason = reason.replace(password, "***")
        raise fail(f"--store '{_redacted(url)}': not a PostgreSQL URL libpq accepts: {reason}") from None
    return url.strip(), None


def _given(ctx: typer.Context, name: str) -> str:
    """Where the value of option ``name`` came from: "COMMANDLINE", "ENVIRONMENT", or "" for its
    default. (By the name of click's ParameterSource: typer may bring a click of its own.)"""
    source = getattr(ctx.get_parameter_source(name), "name", "")
    return source if source in ("COMMANDLINE", "ENVIRONMENT") else ""


def _database(ctx: typer.Context, store: str | None, db: Path | None) -> tuple[str, Path | None]:
    """(PostgreSQL URL, SQLite path) from --store and --db. Both on the command line, or both in
    the environment, is a mistake (exit 2); one on the command line wins over the other in the
    environment, as every flag does."""
    store_from, db_from = _given(ctx, "store"), _given(ctx, "db")
    if store is not None and db is not None:
        if store_from == db_from:
            names = "--store and --db" if store_from == "COMMANDLINE" else "ACCORD_STORE and ACCORD_DB"
            raise fail(
                f"{names} both name the database: give one (--db PATH is short for --store sqlite:///PATH)"
            )
        if store_from == "COMMANDLINE":
            db = None
        else:
            store = None
    if store is not None:
        return _store(store)
    return "", db


_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _events(url: str, stream: str, retention: str, creds: Path | None) -> tuple[str, float | None]:
    """The checked --events URL ("" for the in-process bus) and --events-retention in seconds
    (None when not given: the run retention applies)."""
    from contracts.durations import parse_duration

    url = url.strip()
    if url:
        for server in url.split(","):
            scheme, sep, rest = server.strip().partition("://")
            if not sep or scheme not in ("nats", "tls") or not rest.strip("/"):
                raise fail(
                    f"--events {server.strip()!r}: give a NATS server as nats://HOST:PORT (or"
                    " tls://HOST:PORT), e.g. nats://127.0.0.1:4222"
                )
    if not _STREAM_NAME.match(stream):
        raise fail(
            f"--events-stream {stream!r}: use letters, digits, '-' and '_' only (it is a JetStream"
            " stream name and the first token of its subjects), e.g. ACCORD"
        )
    retention_s = parse_duration(retention, what="--events-retention") if retention.strip() else None
    if retention_s is not None and retention_s <= 0:
        raise fail(f"--events-retention {retention!r}: give a duration above 0, e.g. 30d")
    if creds is not None and not creds.is_file():
        raise fail(f"--events-creds {creds}: no such file (a NATS credentials file, .creds)")
    return url, retention_s


def _on_off(value: str, flag: str) -> bool:
    if value.lower() not in ("on", "off"):
        raise typer.BadParameter(f"{value!r} is not on or off", param_hint=flag)
    return value.lower() == "on"


def _env(name: str) -> str:
    """The environment variable of coordinator flag ``--name``: ACCORD_ and its name in capitals."""
    return "ACCORD_" + name.upper().replace("-", "_")


@coordinator_app.command("start")
@command
def start(
    ctx: typer.Context,
    listen: Annotated[
        str, typer.Option(envvar=_env("listen"), help="gRPC address HOST:PORT (port 0 picks a free one).")
    ] = DEFAULT_LISTEN,
    store: Annotated[
        str | None,
        typer.Option(
            envvar=_env("store"),
            help=(
                "Where the state is: postgresql://USER@HOST:PORT/DB (several coordinators may share"
                " it; password and TLS the libpq way: PGPASSWORD, PGPASSFILE, ?sslmode=...) or"
                " sqlite:///PATH (one coordinator process per file). Default: the SQLite file"
                " $ACCORD_HOME/coordinator.db."
            ),
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("db"),
            help=(
                "SQLite file, short for --store sqlite:///PATH (default $ACCORD_HOME/coordinator.db);"
                " one coordinator process per file. Not together with --store."
            ),
            show_default=False,
        ),
    ] = None,
    store_pool: Annotated[
        int,
        typer.Option(
            envvar=_env("store-pool"),
            min=1,
            metavar="N",
            help="PostgreSQL: connections per coordinator at the most (1 or more).",
        ),
    ] = DEFAULT_STORE_POOL,
    replica_poll: Annotated[
        float,
        typer.Option(
            envvar=_env("replica-poll"),
            min=0.05,
            metavar="SECONDS",
            help=(
                "PostgreSQL: seconds after which a waiting agent poll or run watcher reads the store"
                " again by itself. Other coordinators' commits wake it at once (LISTEN/NOTIFY);"
                " this is the fallback should such a wake-up be lost."
            ),
        ),
    ] = EngineSettings.replica_poll_s,
    store_retry: Annotated[
        str,
        typer.Option(
            envvar=_env("store-retry"),
            help=(
                "PostgreSQL: while it cannot be reached, a call keeps trying this long (e.g. 30s, 5s)"
                " before it is answered UNAVAILABLE, so its client tries again or moves to another"
                " coordinator; health is NOT_SERVING meanwhile."
            ),
        ),
    ] = DEFAULT_STORE_RETRY,
    check_budget: Annotated[
        str,
        typer.Option(
            envvar=_env("check-budget"),
            help=(
                "How long one check of a large contract or workflow (reading it, compatibility,"
                " type-check) or of a large payload may run in a worker process before it is"
                " refused (e.g. 10s)."
            ),
        ),
    ] = DEFAULT_CHECK_BUDGET,
    log_level: Annotated[
        str, typer.Option(envvar=_env("log-level"), help="debug, info, warning, error.")
    ] = "info",
    log_format: Annotated[str, typer.Option(envvar=_env("log-format"), help="text or json.")] = "text",
    ui: Annotated[
        str,
        typer.Option(
            envvar=_env("ui"),
            help="Serve the tracing UI on HOST:PORT (port 0 picks a free one; 'off' to disable).",
        ),
    ] = DEFAULT_UI,
    span_retention: Annotated[
        str,
        typer.Option(
            envvar=_env("span-retention"),
            help=(
                "Keep spans this long (e.g. 7d, 12h, 90m; 'off': as long as their runs); older"
                " ones are pruned. Never longer than --retention: spans go with their runs."
            ),
        ),
    ] = "7d",
    retention: Annotated[
        str | None,
        typer.Option(
            envvar=_env("retention"),
            help=(
                "Delete runs that finished longer ago than this (e.g. 30d, 12h), with their steps,"
                " attempts, request records, spans and events, in small batches; 'off' keeps"
                " everything. Default: the database's own, 30d for a new one, off for one in use"
                " before retention existed (start-up says so)."
            ),
            show_default=False,
        ),
    ] = None,
    audit_retention: Annotated[
        str,
        typer.Option(
            envvar=_env("audit-retention"),
            help="Delete audit log entries older than this (e.g. 400d); 'off' keeps them all.",
        ),
    ] = DEFAULT_AUDIT_RETENTION,
    metrics: Annotated[
        str,
        typer.Option(
            envvar=_env("metrics"),
            help=(
                "Serve metrics for Prometheus on HOST:PORT at /metrics (port 0 picks a free one;"
                " 'off' to disable). OTLP export of the same metrics follows the standard"
                " OTEL_METRICS_EXPORTER / OTEL_EXPORTER_OTLP_* variables."
            ),
        ),
    ] = DEFAULT_METRICS,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("tls-cert"),
            help=(
                "Serve gRPC and the UI (HTTPS) over TLS with this certificate (PEM, with any"
                " intermediates); read again when the file changes."
            ),
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(envvar=_env("tls-key"), help="The certificate's private key (PEM).", show_default=False),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("tls-client-ca"),
            help=(
                "Mutual TLS: refuse, at the handshake, a gRPC client without a certificate signed"
                " by this CA (PEM)."
            ),
            show_default=False,
        ),
    ] = None,
    max_payload: Annotated[
        str,
        typer.Option(
            envvar=_env("max-payload"),
            help=(
                "The largest run input, event payload, task result or contract/workflow file a"
                " request may carry (bytes, or e.g. 512KiB, 1MiB); a larger one is refused"
                " INVALID_ARGUMENT naming the field, its size and this limit."
            ),
        ),
    ] = "1MiB",
    max_inflight: Annotated[
        int,
        typer.Option(
            envvar=_env("max-inflight"),
            min=1,
            metavar="N",
            help=(
                "Calls served at once (long polls and run watches have a budget of their own, 16"
                " times as large); beyond it a call is answered RESOURCE_EXHAUSTED with a retry-after-ms"
                " hint, and clients back off and retry for up to a minute."
            ),
        ),
    ] = DEFAULT_MAX_INFLIGHT,
    autonomy_rows: Annotated[
        int,
        typer.Option(
            envvar=_env("autonomy-rows"),
            min=1,
            max=1_000_000,
            metavar="N",
            help=(
                "The most audit entries, runs and run digests (each) one autonomy report reads, the"
                " newest first; a report whose period holds more covers the newest part in full and"
                " says from when."
            ),
        ),
    ] = DEFAULT_AUTONOMY_ROWS,
    agent_streams: Annotated[
        str,
        typer.Option(
            envvar=_env("agent-streams"),
            metavar="on|off",
            help=(
                "Serve the v2 agent API (accord.agent.v2: one stream per agent, tasks and results in"
                " batches) beside the v1 unary calls; off: agents use the v1 calls (they fall back by"
                " themselves)."
            ),
        ),
    ] = "on",
    events: Annotated[
        str,
        typer.Option(
            envvar=_env("events"),
            help=(
                "Where events go: a NATS JetStream server, nats://HOST:4222 (tls://HOST:4222 for TLS;"
                " several, comma-separated), shared by every coordinator of one store; default: the"
                " in-process bus (one coordinator process). A server that cannot be reached at"
                " start is exit 3."
            ),
            show_default=False,
        ),
    ] = "",
    events_stream: Annotated[
        str,
        typer.Option(
            envvar=_env("events-stream"),
            help=(
                "With --events: the JetStream stream, and the prefix of its subjects"
                " (NAME.<team>.<event>.v<major>); one per installation sharing a NATS server."
            ),
        ),
    ] = DEFAULT_EVENTS_STREAM,
    events_retention: Annotated[
        str,
        typer.Option(
            envvar=_env("events-retention"),
            help=(
                "With --events: how long the stream keeps an event (e.g. 30d, 12h); the store keeps it"
                " too. Default: as long as runs are kept (--retention; with retention off, forever)."
            ),
        ),
    ] = "",
    events_creds: Annotated[
        Path | None,
        typer.Option(
            envvar=_env("events-creds"),
            help="With --events: a NATS credentials file (a user JWT and its NKey seed) to log in with.",
            show_default=False,
        ),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            envvar=_env("insecure"),
            help=(
                "Serve plaintext on a non-loopback address anyway (without it, that is refused"
                " unless TLS is on)."
            ),
        ),
    ] = False,
) -> None:
    """Run the coordinator until SIGTERM or Ctrl-C.

    Every option can be set by an environment variable instead (shown with it below); an option
    given on the command line wins over its variable."""
    import asyncio

    from contracts.durations import parse_duration
    from contracts.private_files import private_umask
    from coordinator.server import configure_logging, serve
    from coordinator.store.retention import parse_retention

    if log_format not in ("text", "json"):
        raise fail(f"--log-format must be 'text' or 'json', not '{log_format}'")
    if log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise fail(f"--log-level must be debug, info, warning or error, not '{log_level}'")
    store_url, db_path = _database(ctx, store, db)
    # Bad or busy addresses fail here, before the database, the admin token or coordinator.json
    # are touched.
    check_can_listen(*parse_listen(listen, "--listen", DEFAULT_LISTEN), "--listen")
    ui_on = ui_enabled(ui)
    if ui_on:
        parse_listen(ui, "--ui", DEFAULT_UI)  # a busy UI port only logs a warning: the UI is a convenience
    tls = _server_tls(tls_cert, tls_key, tls_client_ca)
    if tls is None and not insecure:
        # Refused before anything else is looked at, so the refusal is the only line (with
        # --insecure the warning is logged below, once logging is set up).
        _refuse_plaintext_off_loopback(listen, ui if ui_on else None, insecure)
    store_retry_s = parse_duration(store_retry, what="--store-retry")
    if store_retry_s <= 0:
        raise fail(f"--store-retry {store_retry!r}: give a duration above 0, e.g. 30s")
    check_budget_s = parse_duration(check_budget, what="--check-budget")
    if check_budget_s <= 0:
        raise fail(f"--check-budget {check_budget!r}: give a duration above 0, e.g. 10s")
    try:
        max_payload_bytes = parse_size(max_payload, "--max-payload")
    except ValueError as exc:
        raise fail(str(exc)) from None
    if max_payload_bytes < 1024:
        raise fail(f"--max-payload {max_payload!r}: give at least 1KiB")
    # Bad values fail before anything starts.
    try:
        for value, what in (
            (span_retention, "--span-retention"),
            (retention, "--retention"),
            (audit_retention, "--audit-retention"),
        ):
            if value is not None:
                parse_retention(value, what)
    except ValueError as exc:
        raise fail(str(exc)) from None
    metrics_on = metrics.strip().lower() not in ("", "off")
    if metrics_on:
        host, port = parse_listen(metrics, "--metrics", DEFAULT_METRICS)
        if _given(ctx, "metrics"):
            check_can_listen(host, port, "--metrics")
        else:
            # The default port taken (another coordinator on this host): metrics are a
            # convenience there, as the UI is, so start without them and say so.
            try:
                with socket.create_server((host, port)):
                    pass
            except OSError as exc:
                typer.echo(
                    f"warning: not serving metrics on {metrics} ({exc.strerror or exc}): give"
                    " --metrics HOST:PORT, or off",
                    err=True,
                )
                metrics_on = False
    events_url, events_retention_s = _events(events, events_stream, events_retention, events_creds)
    config = CoordinatorConfig(
        home=accord_home(),
        listen=listen,
        db_path=db_path,
        store_url=store_url,
        store_pool=store_pool,
        store_retry_s=store_retry_s,
        check_budget_s=check_budget_s,
        log_level=log_level,
        log_format=log_format,
        ui_listen=ui,
        span_retention=span_retention,
        retention=retention,
        audit_retention=audit_retention,
        metrics_listen=metrics if metrics_on else "",
        tls=tls,
        engine=EngineSettings(replica_poll_s=replica_poll),
        max_payload=max_payload_bytes,
        max_inflight=max_inflight,
        autonomy_rows=autonomy_rows,
        agent_streams=_on_off(agent_streams, "--agent-streams"),
        events_url=events_url,
        events_stream=events_stream,
        events_retention_s=events_retention_s,
        events_credentials=events_creds,
    )
    configure_logging(config.log_level, config.log_format)
    private_umask()  # SQLite's WAL and shm, temporary files: owner-only like ACCORD_HOME
    if tls is None:
        _refuse_plaintext_off_loopback(listen, ui if ui_on else None, insecure)
    hooks: list[ServerHook] = []
    for factory in UI_HOOK_FACTORIES:
        hook = factory(config)  # type: ignore[operator]
        if hook is not None:
            hooks.append(hook)
    try:
        asyncio.run(serve(config, hooks, on_started=_announce))
    except RuntimeError as exc:
        # Lost a race for the port after the check above: gRPC says "Failed to bind to ...".
        if "bind" not in str(exc).lower():
            raise
        raise fail(
            f"cannot listen on {listen}: the address could not be bound (in use?); "
            "stop the other process or choose --listen HOST:PORT"
        ) from None
    except OSError as exc:
        raise fail(f"cannot start the coordinator on {listen}: {exc}", 3) from None
