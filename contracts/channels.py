"""Channels to the coordinator: the one place where clients open them and read their failures.

The CLI (``coordinator.client``), the agent (``team_agent.client``, and its span exporter) and the
UI's gRPC source open every channel through a ``Channels`` made from the process's
``TlsSettings``, and turn every failed call into an Accord error with ``Channels.error`` (or
``error_async``): the status code's error from ``contracts.grpc_errors.error_from_rpc``, or, when
the connection itself failed for a reason of TLS, a ``TlsError`` that says in one line which side
speaks TLS, or which certificate was refused, and what to set.

Where TLS comes from (``TlsSettings.from_env``; an agent config's ``tls:`` section says the same):

=========================  =============================================================
``ACCORD_TLS_CA``          a CA file: TLS, trusting the coordinators it signed
``ACCORD_TLS=1``           TLS, trusting the system's CAs
``ACCORD_TLS_CERT``,       this client's certificate and key, for a coordinator that asks
``ACCORD_TLS_KEY``         for one (``--tls-client-ca``: mutual TLS)
``ACCORD_TLS_SERVER_NAME`` the name the coordinator's certificate must have (default: the
                           host of its address)
=========================  =============================================================

gRPC says little when a connection fails during its handshake ("Socket closed"), so on such a
failure ``error`` looks once more, with Python's ``ssl``: a plaintext client checks whether the
coordinator answers a TLS handshake; a TLS client whether the coordinator closes the connection
right after a handshake with this client's certificate (mutual TLS refusing it).
"""

from __future__ import annotations

import asyncio
import random
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from contracts.errors import InvalidArgumentError, OverloadedError, RemoteError, TlsError
from contracts.grpc_errors import error_from_rpc

__all__ = ["Channels", "TlsSettings", "tls_flag"]

TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")
# How long the look after a failed handshake may take (it runs only after one).
PROBE_TIMEOUT_S = 3.0

# The failures after which a look at the handshake may tell more: the peer closed the connection.
_CLOSED = ("socket closed", "connection reset", "end of tcp stream", "connection closed", "broken pipe")
_PLAINTEXT_PEER = ("wrong_version_number", "wrong version number", "packet_length_too_long", "http_request")
_UNTRUSTED = ("certificate_verify_failed", "certificate verify failed")
_WRONG_NAME = ("hostname verification", "no match found for server name")


def tls_flag(value: str, what: str = "ACCORD_TLS") -> bool:
    """``ACCORD_TLS``'s value as a bool; anything but yes/no words is refused naming ``what``."""
    text = value.strip().lower()
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise InvalidArgumentError(f"{what}={value!r}: expected 1 (TLS) or 0 (plaintext)")


@dataclass(frozen=True)
class TlsSettings:
    """How a client dials the coordinator. ``enabled`` False: plaintext.

    ``origin`` names where the settings came from in messages: ``"env"`` (the ``ACCORD_TLS_*``
    variables) or an agent config file's path (its ``tls:`` section)."""

    enabled: bool = False
    ca: str = ""  # PEM file of the CA(s) to trust; "" for the system's
    cert: str = ""  # PEM file of this client's certificate (chain)
    key: str = ""  # PEM file of its private key
    server_name: str = ""  # the name to check in the coordinator's certificate
    origin: str = "env"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TlsSettings:
        """The settings of the ``ACCORD_TLS*`` variables in ``environ``."""
        ca = environ.get("ACCORD_TLS_CA", "").strip()
        enabled = bool(ca) or tls_flag(environ.get("ACCORD_TLS", ""))
        return cls(
            enabled=enabled,
            ca=ca,
            cert=environ.get("ACCORD_TLS_CERT", "").strip(),
            key=environ.get("ACCORD_TLS_KEY", "").strip(),
            server_name=environ.get("ACCORD_TLS_SERVER_NAME", "").strip(),
        )

    def name_of(self, field: str, *, with_file: bool = True) -> str:
        """How a user sets ``field`` (ca, cert, key, server_name, or "on") where these settings
        came from, for messages: ``ACCORD_TLS_CA``, or ``tls.ca in agent.yaml``."""
        if self.origin == "env":
            return {
                "ca": "ACCORD_TLS_CA",
                "cert": "ACCORD_TLS_CERT",
                "key": "ACCORD_TLS_KEY",
                "server_name": "ACCORD_TLS_SERVER_NAME",
                "on": "ACCORD_TLS=1",
            }[field]
        name = "tls: {}" if field == "on" else f"tls.{field}"
        return f"{name} in {self.origin}" if with_file else name

    def problems(self) -> list[tuple[str, str]]:
        """(field, what is wrong) for each file that cannot be used; [] when all are fine."""
        if not self.enabled:
            return []
        found: list[tuple[str, str]] = []
        if bool(self.cert) != bool(self.key):
            missing = "key" if self.cert else "cert"
            given = "cert" if self.cert else "key"
            found.append(
                (
                    missing,
                    f"missing: {self.name_of(given, with_file=False)} is set, so"
                    f" {self.name_of(missing, with_file=False)} must be too",
                )
            )
        for name in ("ca", "cert", "key"):
            path = getattr(self, name)
            if path:
                problem = _unreadable(path)
                if problem:
                    found.append((name, f"{path}: {problem}"))
        if not found and self.cert:
            try:
                ssl.create_default_context().load_cert_chain(self.cert, self.key)
            except ssl.SSLError as exc:
                found.append(("key", f"{self.key} is not the private key of {self.cert} ({exc.reason})"))
        if not found and self.ca:
            try:
                ssl.create_default_context(cafile=self.ca)
            except ssl.SSLError as exc:
                found.append(("ca", f"{self.ca}: not a PEM certificate file ({exc.reason})"))
        return found

    def check(self) -> None:
        """Raise ``InvalidArgumentError`` (exit 2) naming the first setting that cannot be used."""
        problems = self.problems()
        if problems:
            name, message = problems[0]
            raise InvalidArgumentError(f"{self.name_of(name)}: {message}")

    def credentials(self) -> grpc.ChannelCredentials:
        """gRPC channel credentials of these settings (reads the files: ``check`` first)."""
        root = Path(self.ca).read_bytes() if self.ca else _system_roots()
        key = Path(self.key).read_bytes() if self.cert else None
        chain = Path(self.cert).read_bytes() if self.cert else None
        return grpc.ssl_channel_credentials(root_certificates=root, private_key=key, certificate_chain=chain)

    def channel_options(self) -> list[tuple[str, Any]]:
        """gRPC channel options these settings add (the name to check in the certificate)."""
        if self.enabled and self.server_name:
            return [("grpc.ssl_target_name_override", self.server_name)]
        return []


def _unreadable(path: str) -> str:
    try:
        with open(path, "rb"):
            return ""
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"


def _system_roots() -> bytes | None:
    """The system's CA bundle (what ``ACCORD_TLS=1`` trusts); None leaves gRPC its own roots."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate).read_bytes()
    return None


class Channels:
    """Opens channels to the coordinator with one process's TLS settings, and reads their
    failures. ``tls`` None: plaintext."""

    def __init__(self, tls: TlsSettings | None = None) -> None:
        self.tls = tls or TlsSettings()
        self._credentials: grpc.ChannelCredentials | None = None
        if self.tls.enabled:
            self.tls.check()
            self._credentials = self.tls.credentials()

    @property
    def credentials(self) -> grpc.ChannelCredentials | None:
        """The channel credentials (None for plaintext), for clients that make their own
        channel (the agent's OTLP span exporter)."""
        return self._credentials

    def options(self, options: Sequence[tuple[str, Any]] | None = None) -> list[tuple[str, Any]]:
        given = [*(options or ())]
        if not any(name == "grpc.max_receive_message_length" for name, _ in given):
            # No receive limit of the client's own: an answer is as large as the coordinator
            # makes it (payloads are bounded by its --max-payload, lists by their pages), and a
            # limit here would break a team's listing for a payload another team sent.
            given.append(("grpc.max_receive_message_length", -1))
        return [*given, *self.tls.channel_options()]

    def aio(
        self,
        target: str,
        *,
        options: Sequence[tuple[str, Any]] | None = None,
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
    ) -> grpc.aio.Channel:
        """An asyncio channel to ``target`` (one coordinator's host:port, or ``unix:PATH``)."""
        every = self.options(options)
        if self._credentials is None:
            return grpc.aio.insecure_channel(target, options=every, interceptors=interceptors)
        return grpc.aio.secure_channel(target, self._credentials, options=every, interceptors=interceptors)

    def sync(self, target: str, *, options: Sequence[tuple[str, Any]] | None = None) -> grpc.Channel:
        """A blocking channel to ``target``."""
        every = self.options(options)
        if self._credentials is None:
            return grpc.insecure_channel(target, options=every)
        return grpc.secure_channel(target, self._credentials, options=every)

    # ---------- failures

    def error(self, exc: grpc.RpcError, *, address: str = "", call: str = "") -> RemoteError:
        """The error for a failed call to ``address`` (raise it ``from exc``). May take a look
        at the handshake (blocking, ``PROBE_TIMEOUT_S`` at the most): use ``error_async`` on an
        event loop."""
        found = self._explained(exc, address)
        if found is not None:
            return found
        if self._needs_probe(exc, address):
            found = self._probe(address)
        return found or error_from_rpc(exc, address=address, call=call)

    async def error_async(self, exc: grpc.RpcError, *, address: str = "", call: str = "") -> RemoteError:
        """``error`` for callers on an event loop: the look at the handshake runs in a thread."""
        found = self._explained(exc, address)
        if found is not None:
            return found
        if self._needs_probe(exc, address):
            found = await asyncio.to_thread(self._probe, address)
        return found or error_from_rpc(exc, address=address, call=call)

    def _text(self, exc: grpc.RpcError) -> str:
        details = getattr(exc, "details", None)
        return str((details() if callable(details) else "") or "").lower()

    def _unavailable(self, exc: grpc.RpcError) -> bool:
        code = getattr(exc, "code", None)
        return callable(code) and code() == grpc.StatusCode.UNAVAILABLE

    def _explained(self, exc: grpc.RpcError, address: str) -> TlsError | None:
        """What gRPC's own words already tell (only a TLS client's handshake says much)."""
        if not self.tls.enabled or not self._unavailable(exc) or not address:
            return None
        text = self._text(exc)
        if any(word in text for word in _PLAINTEXT_PEER):
            return self._plaintext_coordinator(address)
        if any(word in text for word in _UNTRUSTED):
            trusted = f"the CA in {self.tls.ca}" if self.tls.ca else "the system's CAs"
            return TlsError(
                f"the coordinator at {address} has a certificate this client does not trust (not signed"
                f" by {trusted}): set {self.tls.name_of('ca')} to the CA file that signed it"
            )
        if any(word in text for word in _WRONG_NAME):
            name = self.tls.server_name or _host(address)
            return TlsError(
                f"the certificate of the coordinator at {address} is not for {name!r}: dial it by a name"
                f" its certificate has, or set {self.tls.name_of('server_name')} to one"
            )
        return None

    def _needs_probe(self, exc: grpc.RpcError, address: str) -> bool:
        return bool(address) and self._unavailable(exc) and any(w in self._text(exc) for w in _CLOSED)

    def _plaintext_coordinator(self, address: str) -> TlsError:
        return TlsError(
            f"the coordinator at {address} speaks plaintext and this client TLS: unset"
            f" {_off(self.tls)}, or start the coordinator with --tls-cert and --tls-key"
        )

    def _probe(self, address: str) -> TlsError | None:
        """Look at a TLS handshake with ``address``: a TlsError that says what is wrong, or None
        when it tells nothing (the coordinator is down, or accepts this client)."""
        host, port = _split(address)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # Only a look at the handshake, sending nothing: whose certificate it is does not matter.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        if self.tls.enabled and self.tls.cert:
            try:
                context.load_cert_chain(self.tls.cert, self.tls.key)
            except (OSError, ssl.SSLError):
                return None
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as raw:
                sni = self.tls.server_name or host
                with context.wrap_socket(raw, server_hostname=sni) as conn:
                    conn.settimeout(PROBE_TIMEOUT_S)
                    try:
                        answered = conn.recv(1) != b""
                    except ssl.SSLError:
                        answered = False  # an alert after the handshake: this client was refused
        except ssl.SSLError as exc:
            if "ALERT" not in str(exc.reason or "").upper():
                return None  # no TLS there (it answered something else): nothing more to say
            answered = False  # a TLS peer that refused the handshake with an alert
        except OSError:
            return None  # down, refused, too slow
        if not self.tls.enabled:
            return TlsError(
                f"the coordinator at {address} speaks TLS and this client plaintext: set"
                f" {self.tls.name_of('ca')} to the CA file that signed its certificate"
                f" (or {self.tls.name_of('on')} to trust the system's CAs)"
            )
        if answered:
            return None
        if not self.tls.cert:
            return TlsError(
                f"the coordinator at {address} asks for a client certificate (mutual TLS) and this"
                f" client has none: set {self.tls.name_of('cert')} and {self.tls.name_of('key')} to a"
                " certificate signed by the CA the coordinator trusts"
            )
        return TlsError(
            f"the coordinator at {address} refused this client's certificate ({self.tls.cert}):"
            " it accepts only certificates signed by the CA it trusts (its --tls-client-ca)"
        )


def _off(tls: TlsSettings) -> str:
    if tls.origin == "env":
        return "ACCORD_TLS and ACCORD_TLS_CA"
    return f"the tls: section of {tls.origin}"


def _host(address: str) -> str:
    return _split(address)[0]


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else 0


# How long a client keeps retrying a call the coordinator refuses as overloaded.
OVERLOAD_PATIENCE_S = 60.0
RETRY_AFTER_KEY = "retry-after-ms"


class OverloadRetry:
    """Retries of one call the coordinator refused as overloaded (RESOURCE_EXHAUSTED with a
    ``retry-after-ms`` hint in its trailing metadata): ``wait(exc)`` is how long to sleep before
    sending it again, None when ``exc`` is no such refusal or the patience is spent."""

    def __init__(self, patience_s: float = OVERLOAD_PATIENCE_S) -> None:
        self.patience_s = patience_s
        self._deadline: float | None = None
        self.exhausted = False

    def wait(self, exc: grpc.RpcError) -> float | None:
        hint = retry_after_s(exc)
        if hint is None:
            return None
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.patience_s
        delay = hint * random.uniform(0.5, 1.5)  # spread: the refused callers do not all come back at once
        if now + delay > self._deadline:
            self.exhausted = True
            return None
        return delay

    def error(self, address: str) -> OverloadedError:
        return OverloadedError(
            f"the coordinator at {address} is overloaded: it still refused the call after "
            f"{self.patience_s:g}s of retries; try again later"
        )


def retry_after_s(exc: grpc.RpcError) -> float | None:
    """The retry hint of a RESOURCE_EXHAUSTED answer from the coordinator's admission control
    (seconds, 0.01 to 5), or None."""
    code = getattr(exc, "code", None)
    if not callable(code) or code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    trailing = getattr(exc, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == RETRY_AFTER_KEY:
            try:
                return min(max(int(value) / 1000, 0.01), 5.0)
            except (TypeError, ValueError):
                return 0.5
    return None
