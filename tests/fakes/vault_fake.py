"""A faithful fake of HashiCorp Vault's HTTP API for what the ``vault`` secrets provider uses, as a
Starlette app.

Written from Vault's API documentation (developer.hashicorp.com/vault/api-docs): "KV - Secrets
Engine - Version 2" (``GET /v1/{mount}/data/{path}`` with ``?version=``, ``GET
/v1/{mount}/metadata/{path}``), "AppRole Auth Method" (``POST /v1/auth/{mount}/login``), "Token
Auth Method" (``GET /v1/auth/token/lookup-self``, ``POST /v1/auth/token/renew-self``), and the
API overview ("HTTP status codes", "Namespaces"). What it reproduces:

- errors as ``{"errors": [...]}``: 403 ``permission denied`` for a missing, unknown or expired
  token, a token used in another namespace than its own (``X-Vault-Namespace``), or a path its
  policy does not allow; 404 ``{"errors": []}`` for a path with no secret; 400
  ``invalid role or secret ID`` for a bad AppRole login; 503 ``Vault is sealed``;
- KV v2 reads: ``{"data": {"data": {...}, "metadata": {"created_time", "custom_metadata",
  "deletion_time", "destroyed", "version"}}, "lease_duration": 0, "renewable": false, ...}``; the
  latest version unless ``?version=N``; a deleted (or destroyed) version answers 404 with its
  metadata and ``"data": null``;
- tokens with a TTL (``lease_duration`` in the login's ``auth``, ``ttl`` from lookup-self),
  renewable up to their max TTL, and expiring (then 403).

Paths are the secret's path under a mount (``payments/stripe``); a policy is a list of path
prefixes under ``{mount}/data/`` the token may read.
"""

from __future__ import annotations

import itertools
import secrets as _secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def _rfc3339(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def errors(status: int, *messages: str) -> JSONResponse:
    return JSONResponse({"errors": list(messages)}, status_code=status)


@dataclass
class Version:
    data: dict[str, Any]
    created: float
    deleted: float | None = None
    destroyed: bool = False


@dataclass
class Token:
    namespace: str
    policies: list[str]  # readable path prefixes, "mount/path"; "*" reads everything
    ttl: float  # 0: never expires
    max_ttl: float
    renewable: bool
    issued: float = field(default_factory=time.time)
    expires: float | None = None

    def __post_init__(self) -> None:
        if self.ttl and self.expires is None:
            self.expires = self.issued + self.ttl


@dataclass
class AppRole:
    role_id: str
    secret_id: str
    policies: list[str]
    token_ttl: float = 3600
    token_max_ttl: float = 7200


class FakeVault:
    """State and behaviour of the fake. ``app`` is the ASGI app to serve."""

    def __init__(self) -> None:
        # (namespace, mount) → path → versions (version n is index n-1)
        self.kv: dict[tuple[str, str], dict[str, list[Version]]] = {}
        self.tokens: dict[str, Token] = {}
        self.approles: dict[tuple[str, str], dict[str, AppRole]] = {}  # (namespace, mount) → name → role
        self.sealed = False
        self.requests: list[tuple[str, str, int]] = []
        self.logins = 0
        self.renewals = 0
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        routes = Starlette(
            routes=[
                Route("/v1/auth/token/lookup-self", self._lookup_self, methods=["GET"]),
                Route("/v1/auth/token/renew-self", self._renew_self, methods=["POST"]),
                Route("/v1/auth/{mount}/login", self._approle_login, methods=["POST"]),
                Route("/v1/{mount}/data/{path:path}", self._read, methods=["GET"]),
                Route("/v1/{mount}/metadata/{path:path}", self._metadata, methods=["GET"]),
            ]
        )

        async def app(scope: Any, receive: Any, send: Any) -> None:
            async def record(message: Any) -> None:
                if message["type"] == "http.response.start":
                    self.requests.append((scope["method"], scope["path"], message["status"]))
                await send(message)

            await routes(scope, receive, record)

        self.app = app

    # -- test helpers ------------------------------------------------------------------------

    def put(self, path: str, data: dict[str, Any], *, namespace: str = "", mount: str = "secret") -> int:
        """Write a new version (``vault kv put``); its number."""
        with self._lock:
            versions = self.kv.setdefault((namespace, mount), {}).setdefault(path, [])
            versions.append(Version(dict(data), time.time()))
            return len(versions)

    def delete(
        self, path: str, version: int | None = None, *, namespace: str = "", mount: str = "secret"
    ) -> None:
        """Soft-delete a version, the latest by default (``vault kv delete``)."""
        with self._lock:
            versions = self.kv[(namespace, mount)][path]
            versions[(version or len(versions)) - 1].deleted = time.time()

    def add_token(
        self,
        *,
        namespace: str = "",
        policies: list[str] | None = None,
        ttl: float = 0,
        max_ttl: float = 0,
        renewable: bool = True,
    ) -> str:
        token = f"hvs.{_secrets.token_urlsafe(18)}"
        self.tokens[token] = Token(namespace, policies or ["*"], ttl, max_ttl or ttl, renewable)
        return token

    def add_approle(
        self,
        name: str,
        *,
        namespace: str = "",
        mount: str = "approle",
        policies: list[str] | None = None,
        **ttl: float,
    ) -> AppRole:
        role = AppRole(
            role_id=f"role-{next(self._ids)}-{_secrets.token_hex(4)}",
            secret_id=_secrets.token_hex(16),
            policies=policies or ["*"],
            **ttl,
        )
        self.approles.setdefault((namespace, mount), {})[name] = role
        return role

    # -- request checks ----------------------------------------------------------------------

    @staticmethod
    def _namespace(request: Request) -> str:
        return request.headers.get("x-vault-namespace", "").strip("/")

    def _token(self, request: Request) -> tuple[str, Token] | None:
        value = request.headers.get("x-vault-token", "")
        token = self.tokens.get(value)
        if token is None or token.namespace != self._namespace(request):
            return None
        if token.expires is not None and time.time() >= token.expires:
            return None
        return value, token

    # -- endpoints ---------------------------------------------------------------------------

    async def _lookup_self(self, request: Request) -> Response:
        if self.sealed:
            return errors(503, "Vault is sealed")
        found = self._token(request)
        if found is None:
            return errors(403, "permission denied")
        _, token = found
        ttl = 0 if token.expires is None else max(0, int(token.expires - time.time()))
        return JSONResponse(
            {
                "data": {
                    "ttl": ttl,
                    "renewable": token.renewable,
                    "policies": ["default"],
                    "namespace_path": (token.namespace + "/") if token.namespace else "",
                    "issue_time": _rfc3339(token.issued),
                    "expire_time": _rfc3339(token.expires) if token.expires else None,
                },
                "lease_duration": 0,
                "renewable": False,
            }
        )

    async def _renew_self(self, request: Request) -> Response:
        if self.sealed:
            return errors(503, "Vault is sealed")
        found = self._token(request)
        if found is None:
            return errors(403, "permission denied")
        value, token = found
        if not token.renewable or not token.ttl:
            return errors(400, "lease is not renewable")
        now = time.time()
        # A renewal extends the TTL from now, never beyond the token's max TTL.
        token.expires = min(now + token.ttl, token.issued + token.max_ttl)
        self.renewals += 1
        return JSONResponse(self._auth_body(value, token, now))

    def _auth_body(self, value: str, token: Token, now: float) -> dict[str, Any]:
        lease = 0 if token.expires is None else max(0, int(token.expires - now))
        return {
            "lease_duration": 0,
            "renewable": False,
            "data": None,
            "auth": {
                "client_token": value,
                "accessor": f"acc-{next(self._ids)}",
                "policies": ["default"],
                "token_policies": ["default"],
                "lease_duration": lease,
                "renewable": token.renewable,
                "metadata": {},
            },
        }

    async def _approle_login(self, request: Request) -> Response:
        if self.sealed:
            return errors(503, "Vault is sealed")
        namespace = self._namespace(request)
        roles = self.approles.get((namespace, request.path_params["mount"]))
        if roles is None:
            return errors(403, "permission denied")  # no such auth mount in this namespace
        try:
            body = await request.json()
        except ValueError:
            return errors(400, "failed to parse JSON input")
        role_id, secret_id = body.get("role_id"), body.get("secret_id")
        if not role_id:
            return errors(400, "missing role_id")
        role = next((r for r in roles.values() if r.role_id == role_id), None)
        if role is None or role.secret_id != secret_id:
            return errors(400, "invalid role or secret ID")
        value = f"hvs.{_secrets.token_urlsafe(18)}"
        token = Token(namespace, role.policies, role.token_ttl, role.token_max_ttl, True)
        self.tokens[value] = token
        self.logins += 1
        return JSONResponse(self._auth_body(value, token, time.time()))

    def _check_read(self, request: Request, kind: str) -> tuple[list[Version] | None, Response | None]:
        if self.sealed:
            return None, errors(503, "Vault is sealed")
        found = self._token(request)
        mount, path = request.path_params["mount"], request.path_params["path"]
        if found is None:
            return None, errors(403, "permission denied")
        policies = found[1].policies
        if "*" not in policies and not any(f"{mount}/{path}".startswith(p) for p in policies):
            return None, errors(403, "permission denied")
        store = self.kv.get((self._namespace(request), mount))
        if store is None:
            return None, errors(404, f'no handler for route "{mount}/{kind}/{path}". route entry not found.')
        return store.get(path), None

    def _version_metadata(self, n: int, v: Version) -> dict[str, Any]:
        return {
            "created_time": _rfc3339(v.created),
            "custom_metadata": None,
            "deletion_time": _rfc3339(v.deleted),
            "destroyed": v.destroyed,
            "version": n,
        }

    async def _read(self, request: Request) -> Response:
        versions, error = self._check_read(request, "data")
        if error is not None:
            return error
        if not versions:
            return errors(404)
        wanted = request.query_params.get("version")
        n = int(wanted) if wanted and wanted.isdigit() and int(wanted) > 0 else len(versions)
        if n > len(versions):
            return errors(404)
        v = versions[n - 1]
        body = {
            "request_id": f"req-{next(self._ids)}",
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": {
                "data": None if (v.deleted or v.destroyed) else v.data,
                "metadata": self._version_metadata(n, v),
            },
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
        return JSONResponse(body, status_code=404 if (v.deleted or v.destroyed) else 200)

    async def _metadata(self, request: Request) -> Response:
        versions, error = self._check_read(request, "metadata")
        if error is not None:
            return error
        if not versions:
            return errors(404)
        return JSONResponse(
            {
                "data": {
                    "current_version": len(versions),
                    "oldest_version": 1,
                    "max_versions": 0,
                    "cas_required": False,
                    "created_time": _rfc3339(versions[0].created),
                    "updated_time": _rfc3339(versions[-1].created),
                    "custom_metadata": None,
                    "delete_version_after": "0s",
                    "versions": {
                        str(n): {
                            k: v for k, v in self._version_metadata(n, ver).items() if k != "custom_metadata"
                        }
                        for n, ver in enumerate(versions, 1)
                    },
                },
                "lease_duration": 0,
                "renewable": False,
            }
        )
