"""The ``vault`` secrets provider: ``${secret:NAME}`` read from a HashiCorp Vault KV v2 mount
(docs/secrets-vault.md).

``NAME`` is ``PATH#KEY`` (the key ``KEY`` of the secret at ``PATH`` under the mount),
``PATH@VERSION#KEY`` (a pinned version), or ``PATH`` alone for a secret holding exactly one key.
Reads are ``GET /v1/{mount}/data/{path}[?version=N]`` with ``X-Vault-Token`` and, for Vault
Enterprise / HCP namespaces, ``X-Vault-Namespace``.

``secrets:`` options::

    provider: vault
    address: https://vault.example:8200   # required (or VAULT_ADDR)
    namespace: teams/payments             # optional (or VAULT_NAMESPACE)
    mount: secret                         # the KV v2 mount
    auth: token                           # or approle
    token_env: VAULT_TOKEN                # token auth: the token from this variable ...
    token_file: /run/vault/token          # ... or this file (read again when it changes)
    approle_mount: approle                # approle auth: the auth mount
    role_id_env: VAULT_ROLE_ID            # role_id_file instead
    secret_id_env: VAULT_SECRET_ID        # secret_id_file instead
    cache_ttl: 60s                        # how long a read secret is reused (0: never)
    timeout: 10s                          # per HTTP request
    ca_cert: /etc/ssl/vault-ca.pem        # optional: the CA that signed Vault's certificate

The provider is blocking (``httpx.Client``): the agent calls it while loading its config (before
its event loop runs, and in a thread on a reload) and in a thread when it re-reads its token.
Values are never logged or put in messages; neither is a token, role_id or secret_id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from contracts.durations import DurationError, parse_duration
from team_agent.secrets import SecretLookupError, SecretsConfigError

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^(?P<path>[A-Za-z0-9_.\-/]+?)(?:@(?P<version>[0-9]+))?(?:#(?P<key>[A-Za-z0-9_.\-/]+))?$")
_KNOWN = {
    "address",
    "namespace",
    "mount",
    "auth",
    "token_env",
    "token_file",
    "approle_mount",
    "role_id_env",
    "role_id_file",
    "secret_id_env",
    "secret_id_file",
    "cache_ttl",
    "timeout",
    "ca_cert",
}
# Renew (or log in again) once this share of a login token's lease has passed.
_RENEW_AT = 2 / 3


class VaultUnavailable(SecretLookupError):
    """Vault could not be reached, or answered that it cannot serve now (sealed, 5xx)."""


def parse_name(name: str) -> tuple[str, int | None, str | None]:
    """``PATH[@VERSION][#KEY]`` as (path, version, key); ValueError when malformed."""
    match = _NAME.match(name)
    if not match or match.group("path").startswith("/") or "//" in match.group("path"):
        raise ValueError(name)
    version = match.group("version")
    return match.group("path").strip("/"), int(version) if version else None, match.group("key")


def _errors(response: httpx.Response) -> str:
    """Vault's ``{"errors": [...]}`` as text (empty on a plain 404)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    found = body.get("errors") if isinstance(body, Mapping) else None
    if isinstance(found, list):
        return "; ".join(str(e) for e in found)[:300]
    return ""


class VaultSecrets:
    """Secrets from a Vault KV v2 mount (see the module docstring). ``rereadable``: a token
    ``${secret:...}`` rotated in Vault is picked up within ``cache_ttl``."""

    rereadable = True

    def __init__(self, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
        env = environ if environ is not None else os.environ
        self._env = env
        problems: list[tuple[str, str]] = []
        for key in sorted(set(options) - _KNOWN):
            problems.append(
                (f"secrets.{key}", f"unknown option for provider vault (known: {', '.join(sorted(_KNOWN))})")
            )

        def text(key: str, default: str | None = None) -> str | None:
            value = options.get(key, default)
            if value is not None and (not isinstance(value, str) or not value):
                problems.append((f"secrets.{key}", "must be a non-empty string"))
                return default
            return value

        address = text("address") or env.get("VAULT_ADDR", "")
        if not address:
            problems.append(
                ("secrets.address", "provider vault needs address: Vault's URL, e.g. https://vault:8200")
            )
        elif not re.match(r"^https?://[^/\s]+", address):
            problems.append(("secrets.address", f"must be an http:// or https:// URL, got {address!r}"))
        self.address = address.rstrip("/")
        self.namespace = (text("namespace") or env.get("VAULT_NAMESPACE", "")).strip("/")
        self.mount = (text("mount", "secret") or "secret").strip("/")
        self.auth = options.get("auth", "token")
        if self.auth not in ("token", "approle"):
            problems.append(("secrets.auth", f"must be token or approle, got {self.auth!r}"))
        self.approle_mount = (text("approle_mount", "approle") or "approle").strip("/")
        self.cache_ttl = self._duration(options, "cache_ttl", 60.0, problems, zero=True)
        self.timeout = self._duration(options, "timeout", 10.0, problems)
        ca_cert = text("ca_cert")
        if ca_cert and not Path(ca_cert).is_file():
            problems.append(("secrets.ca_cert", f"{ca_cert} is not a file"))

        # Where the credentials come from: (option, "env"|"file", variable name or path).
        self._sources: dict[str, tuple[str, str, str]] = {}
        if self.auth == "token":
            self._source("token", "VAULT_TOKEN", options, problems, text)
            for key in ("role_id_env", "role_id_file", "secret_id_env", "secret_id_file"):
                if key in options:
                    problems.append((f"secrets.{key}", "is for auth: approle"))
        elif self.auth == "approle":
            self._source("role_id", "VAULT_ROLE_ID", options, problems, text)
            self._source("secret_id", "VAULT_SECRET_ID", options, problems, text)
            for key in ("token_env", "token_file"):
                if key in options:
                    problems.append((f"secrets.{key}", "is for auth: token"))
        if problems:
            raise SecretsConfigError(problems)
        credentials = {what: self._credential(what) for what in self._sources}
        missing = [(self._field(w), self._missing(w)) for w, v in credentials.items() if not v]
        if missing:
            raise SecretsConfigError(missing)

        self._client = httpx.Client(
            base_url=self.address,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
            verify=ca_cert or True,
        )
        # A reloaded config builds a new provider: the old one's connections close with it.
        weakref.finalize(self, self._client.close)
        self._lock = threading.RLock()
        self._cache: dict[tuple[str, int | None], tuple[float, dict[str, Any]]] = {}
        self._token = credentials.get("token") or ""
        self._lease: tuple[float, float] | None = None  # (obtained at, lease seconds) of a login token
        try:
            self._authenticate()
        except SecretLookupError as exc:
            refused = self._field("token" if self.auth == "token" else "secret_id")
            field = "secrets.address" if isinstance(exc, VaultUnavailable) else refused
            raise SecretsConfigError([(field, str(exc))]) from None

    # -- options -----------------------------------------------------------------------------

    @staticmethod
    def _duration(
        options: Mapping[str, Any],
        key: str,
        default: float,
        problems: list[tuple[str, str]],
        zero: bool = False,
    ) -> float:
        if options.get(key) is None:
            return default
        try:
            seconds = parse_duration(options[key])
        except DurationError as exc:
            problems.append((f"secrets.{key}", str(exc)))
            return default
        if seconds < 0 or (seconds == 0 and not zero):
            problems.append((f"secrets.{key}", f"must be a positive duration, got {options[key]!r}"))
            return default
        return seconds

    def _source(
        self,
        what: str,
        default_env: str,
        options: Mapping[str, Any],
        problems: list[tuple[str, str]],
        text: Any,
    ) -> None:
        env_name, file_name = text(f"{what}_env"), text(f"{what}_file")
        if env_name and file_name:
            problems.append((f"secrets.{what}_env", f"give {what}_env or {what}_file, not both"))
        elif file_name:
            self._sources[what] = (f"{what}_file", "file", file_name)
        else:
            self._sources[what] = (f"{what}_env", "env", env_name or default_env)

    def _field(self, what: str) -> str:
        return f"secrets.{self._sources[what][0]}"

    def _where(self, what: str) -> str:
        _, kind, where = self._sources[what]
        return f"environment variable {where}" if kind == "env" else f"file {where}"

    def _missing(self, what: str) -> str:
        return f"the Vault {what} is missing or empty: set the {self._where(what)}"

    def _credential(self, what: str) -> str:
        """A credential read now (a token file is read again on every login and lookup, so a
        token rotated by Vault Agent is picked up)."""
        _, kind, where = self._sources[what]
        if kind == "env":
            return self._env.get(where, "").strip()
        try:
            return Path(where).read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    # -- HTTP --------------------------------------------------------------------------------

    def _headers(self, token: str | None = None) -> dict[str, str]:
        headers = {"X-Vault-Request": "true"}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        if token:
            headers["X-Vault-Token"] = token
        return headers

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
            raise VaultUnavailable(
                f"{what}: Vault at {self.address} {kind} ({type(exc).__name__}); check secrets.address "
                "and that Vault is up and reachable from this machine"
            ) from None

    def _in_namespace(self) -> str:
        return f" in namespace {self.namespace!r}" if self.namespace else ""

    # -- auth --------------------------------------------------------------------------------

    def _authenticate(self) -> None:
        if self.auth == "approle":
            self._login()
            return
        self._token = self._credential("token") or self._token
        response = self._send(
            "GET",
            "/v1/auth/token/lookup-self",
            "checking the Vault token",
            headers=self._headers(self._token),
        )
        if response.status_code == 200:
            return
        if response.status_code == 403:
            raise SecretLookupError(
                f"Vault refused the token from {self._where('token')}{self._in_namespace()} (HTTP 403 "
                f"{_errors(response) or 'permission denied'}): it is invalid or expired, or belongs to "
                "another namespace (check secrets.namespace)"
            )
        if response.status_code >= 500:
            raise VaultUnavailable(
                f"Vault at {self.address} is unavailable (HTTP {response.status_code} {_errors(response)}); "
                "unseal it or wait for it, then start the agent again"
            )
        raise SecretLookupError(
            f"checking the Vault token failed with HTTP {response.status_code}: {_errors(response)}"
        )

    def _login(self) -> None:
        role_id, secret_id = self._credential("role_id"), self._credential("secret_id")
        response = self._send(
            "POST",
            f"/v1/auth/{quote(self.approle_mount)}/login",
            "logging in with AppRole",
            headers=self._headers(),
            json={"role_id": role_id, "secret_id": secret_id},
        )
        if response.status_code >= 500:
            raise VaultUnavailable(
                f"Vault at {self.address} is unavailable (HTTP {response.status_code} {_errors(response)}); "
                "unseal it or wait for it, then start the agent again"
            )
        if response.status_code != 200:
            raise SecretLookupError(
                f"Vault refused the AppRole login at auth/{self.approle_mount}{self._in_namespace()} (HTTP "
                f"{response.status_code} {_errors(response)}): check the role_id ({self._where('role_id')}), "
                f"the secret_id ({self._where('secret_id')}), secrets.approle_mount and secrets.namespace"
            )
        self._take_auth(response.json().get("auth") or {})
        logger.info(
            "vault: logged in with AppRole%s (token lease %ss)",
            self._in_namespace(),
            self._lease and self._lease[1],
        )

    def _take_auth(self, auth: Mapping[str, Any]) -> None:
        self._token = str(auth.get("client_token") or self._token)
        lease = float(auth.get("lease_duration") or 0)
        self._lease = (time.monotonic(), lease) if lease > 0 else None

    def _fresh_token(self) -> str:
        """The token to use now: a login token is renewed (or, when renewing fails or its max TTL
        is near, replaced by a new login) once ``_RENEW_AT`` of its lease has passed."""
        if self.auth == "token":
            self._token = self._credential("token") or self._token
            return self._token
        if self._lease is not None:
            obtained, lease = self._lease
            if time.monotonic() - obtained >= lease * _RENEW_AT:
                response = self._send(
                    "POST",
                    "/v1/auth/token/renew-self",
                    "renewing the Vault token",
                    headers=self._headers(self._token),
                    json={},
                )
                auth = response.json().get("auth") if response.status_code == 200 else None
                if auth and float(auth.get("lease_duration") or 0) > lease * (1 - _RENEW_AT):
                    self._take_auth(auth)
                else:  # not renewable any more (max TTL reached, revoked): log in again
                    self._login()
        return self._token

    # -- reads -------------------------------------------------------------------------------

    def _read(self, name: str, path: str, version: int | None) -> dict[str, Any]:
        """The secret's data (key → value), from the cache while it is fresh."""
        with self._lock:
            cached = self._cache.get((path, version))
            if cached is not None and time.monotonic() - cached[0] < self.cache_ttl:
                return cached[1]
            api = f"/v1/{quote(self.mount)}/data/{quote(path)}"
            params = {"version": str(version)} if version else None
            what = f"secret {name!r}"
            response = self._send("GET", api, what, headers=self._headers(self._fresh_token()), params=params)
            if response.status_code == 403 and self.auth == "approle":
                self._login()  # the login token was revoked or expired early: once more
                response = self._send("GET", api, what, headers=self._headers(self._token), params=params)
            where = f"{self.mount}/data/{path}{self._in_namespace()}"
            status = response.status_code
            if status == 403:
                raise SecretLookupError(
                    f"{what}: Vault refused to read {where} (HTTP 403 {_errors(response) or 'permission denied'}): "
                    f"the token's policy must allow read on {self.mount}/data/{path}, and secrets.namespace "
                    "must be the namespace that holds it"
                )
            if status == 404:
                body = _json(response)
                metadata = (
                    (body.get("data") or {}).get("metadata")
                    if isinstance(body.get("data"), Mapping)
                    else None
                )
                if isinstance(metadata, Mapping) and (
                    metadata.get("deletion_time") or metadata.get("destroyed")
                ):
                    state = "destroyed" if metadata.get("destroyed") else "deleted"
                    raise SecretLookupError(
                        f"{what}: version {metadata.get('version')} of {path} was {state} in Vault "
                        f"({self.mount}{self._in_namespace()}); write the secret again "
                        f"(vault kv put -mount={self.mount} {path} ...), undelete it, or pin a live version "
                        f"({path}@N#key)"
                    )
                raise SecretLookupError(
                    f"{what}: no secret at {path}{'' if version is None else f' version {version}'} in the KV v2 "
                    f"mount {self.mount!r}{self._in_namespace()}; write it (vault kv put -mount={self.mount} "
                    f"{path} KEY=...) or fix the name (PATH#KEY)"
                )
            if status == 503:
                raise VaultUnavailable(
                    f"{what}: Vault is unavailable (HTTP 503 {_errors(response)}); unseal it or retry"
                )
            if status != 200:
                raise SecretLookupError(
                    f"{what}: Vault answered HTTP {status} {_errors(response)} for {where}"
                )
            data = (_json(response).get("data") or {}).get("data")
            if not isinstance(data, dict):
                raise SecretLookupError(
                    f"{what}: {self.mount}/data/{path} is not a KV version 2 secret; is {self.mount!r} a KV v2 mount?"
                )
            self._cache[(path, version)] = (time.monotonic(), data)
            return data

    def get(self, name: str) -> str | None:
        try:
            path, version, key = parse_name(name)
        except ValueError:
            raise SecretLookupError(
                f"secret {name!r}: a Vault secret is named PATH#KEY (e.g. payments/stripe#api_key), "
                "PATH@VERSION#KEY, or PATH for a secret with one key"
            ) from None
        data = self._read(name, path, version)
        if key is None:
            if len(data) != 1:
                raise SecretLookupError(
                    f"secret {name!r}: {path} has {len(data)} keys ({', '.join(sorted(data)) or 'none'}); "
                    f"name one: {path}#KEY"
                )
            key = next(iter(data))
        if key not in data:
            raise SecretLookupError(
                f"secret {name!r}: {path} has no key {key!r} (its keys: {', '.join(sorted(data)) or 'none'})"
            )
        value = data[key]
        if value is None:
            return None
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    def close(self) -> None:
        self._client.close()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
