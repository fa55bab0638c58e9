"""Sign-in sessions of the UI, kept in the coordinator's store.

Every coordinator on the store serves every session: a load balancer may send a person's requests
to any of them, the one that signed them in may die, and a session outlives a coordinator
restart (with SQLite too). Signing out, expiry and a revoked token end a session everywhere.

**What the store holds, and why none of it is usable on its own.** The cookie holds only a random
id (32 bytes from ``secrets``); the row holds

- ``key``: the id's SHA-256. The id itself is never stored, so the table yields no cookie.
- ``sealed_token``: the signed-in token encrypted with AES-256-GCM under a key derived from the
  id (HKDF-SHA256), which only the browser holds. The table alone cannot be decrypted; the
  associated data binds the row's key and principal, so a ciphertext moved to another row, or a
  principal edited in place, no longer opens.
- the principal (team or admin), the session's CSRF token and its times: none of them acts for
  anyone without the cookie.

**Why the token is sealed rather than replaced by its hash.** The UI acts for the person by
calling the coordinator's own gRPC API with their token (``_source``): it is just another
client, scoped by exactly the API's rules. Storing only the principal and the token's hash would
leave the UI without a token to call with, and need a privileged way into the API on someone's
behalf, a second door into every scoping rule. With the token sealed under the cookie, the API
checks it on every call as it checks anyone's: a rotated or revoked token is refused by every
coordinator, and that refusal deletes the session from the store (so it ends everywhere). A page
that makes no API call confirms the token too, with ``WhoAmI`` whenever it records the session's
last use (see ``touch_every_s``).

**Expiry and bounds.** ``idle_s`` without use and ``max_age_s`` after sign-in, checked against
wall-clock times in the row, so they hold whichever coordinator serves the request. The last use
is written at most every ``touch_every_s`` per session, not on every request (idle expiry is that
much coarse). A sign-in first deletes the expired sessions, then keeps at most ``limit``: the
least recently used beyond it are deleted, so a flood of sign-ins cannot grow the table without
bound.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from coordinator.store.base import Store
from coordinator.store.records import UiSessionRecord
from coordinator.web._source import Principal

logger = logging.getLogger(__name__)

COOKIE_NAME = "accord_session"
CSRF_HEADER = "x-accord-csrf"
# Longer cookies are not ours (ids are 43 characters): refused before any hashing or store read.
_MAX_ID_LENGTH = 128
_KEY_INFO = b"accord ui session: sealed token key v1"
_NONCE_BYTES = 12


@dataclass
class Session:
    """A session as one request sees it. ``token`` is the signed-in token, unsealed with the
    cookie; ``touched``: this request recorded the session's use (a moment to confirm the token)."""

    key: str
    token: str
    principal: Principal
    csrf: str
    created_ms: int
    last_seen_ms: int
    touched: bool = False


def session_key(session_id: str) -> str:
    """Where a session is stored: the SHA-256 (hex) of the cookie's id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _cipher(session_id: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(session_id.encode())
    return AESGCM(key)


def _associated_data(key: str, principal: Principal) -> bytes:
    return f"{key}\n{principal.team}\n{int(principal.admin)}".encode()


def seal(session_id: str, key: str, principal: Principal, token: str) -> bytes:
    """``token`` encrypted under a key derived from ``session_id`` (nonce first)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + _cipher(session_id).encrypt(nonce, token.encode(), _associated_data(key, principal))


def unseal(session_id: str, key: str, principal: Principal, sealed: bytes) -> str | None:
    """The token ``seal`` sealed, or None when it does not open with this id, key and principal."""
    nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        plain = _cipher(session_id).decrypt(nonce, ciphertext, _associated_data(key, principal))
    except InvalidTag:
        return None
    return plain.decode()


class SessionStore:
    """Sessions in the coordinator's ``store``; they expire ``idle_s`` after their last use or
    ``max_age_s`` after sign-in, at most ``limit`` are kept, and a session's use is written at
    most every ``touch_every_s``. ``clock`` gives wall-clock seconds (``time.time``)."""

    def __init__(
        self,
        store: Store,
        *,
        idle_s: float = 12 * 3600,
        max_age_s: float = 7 * 24 * 3600,
        limit: int = 10_000,
        touch_every_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.idle_ms = int(idle_s * 1000)
        self.max_age_ms = int(max_age_s * 1000)
        self.limit = max(1, limit)
        self.touch_every_ms = int(touch_every_s * 1000)
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _expired(self, record: UiSessionRecord, now_ms: int) -> bool:
        return now_ms - record.last_seen_ms > self.idle_ms or now_ms - record.created_ms > self.max_age_ms

    async def create(self, token: str, principal: Principal) -> tuple[str, Session]:
        """A new session; returns the id for the cookie (never stored) and the session."""
        now = self._now_ms()
        session_id = secrets.token_urlsafe(32)
        key = session_key(session_id)
        csrf = secrets.token_urlsafe(24)
        await self.prune()
        record = UiSessionRecord(
            key=key,
            team=principal.team,
            admin=principal.admin,
            sealed_token=seal(session_id, key, principal, token),
            csrf=csrf,
            created_ms=now,
            last_seen_ms=now,
        )
        await self.store.create_ui_session(record, keep=self.limit)
        return session_id, Session(key, token, principal, csrf, now, now)

    async def get(self, session_id: str | None) -> Session | None:
        """The live session of the cookie's id, or None (no such session, expired, or a cookie
        that does not open it). Records the use when the last one written is old enough."""
        if not session_id or len(session_id) > _MAX_ID_LENGTH:
            return None
        key = session_key(session_id)
        record = await self.store.get_ui_session(key)
        if record is None:
            return None
        now = self._now_ms()
        if self._expired(record, now):
            await self.store.delete_ui_session(key)
            return None
        principal = Principal(team=record.team, admin=record.admin)
        token = unseal(session_id, key, principal, record.sealed_token)
        if token is None:
            # Only a row changed behind the coordinator's back gets here (the key is the id's
            # hash, so the cookie is the one that sealed it): never act on it.
            logger.warning("a UI session's token does not open with its cookie: session ended")
            await self.store.delete_ui_session(key)
            return None
        session = Session(key, token, principal, record.csrf, record.created_ms, record.last_seen_ms)
        if now - record.last_seen_ms >= self.touch_every_ms:
            if not await self.store.touch_ui_session(key, now):
                return None  # signed out meanwhile, through this coordinator or another
            session.last_seen_ms = now
            session.touched = True
        return session

    async def delete(self, session_id: str | None) -> None:
        """End the session of the cookie's id, on every coordinator (nothing when there is none)."""
        if session_id and len(session_id) <= _MAX_ID_LENGTH:
            await self.store.delete_ui_session(session_key(session_id))

    async def prune(self) -> int:
        """Delete the expired sessions; returns how many."""
        now = self._now_ms()
        return await self.store.prune_ui_sessions(
            seen_before_ms=now - self.idle_ms, created_before_ms=now - self.max_age_ms
        )


def csrf_ok(session: Session, header_value: str | None) -> bool:
    return bool(header_value) and hmac.compare_digest(session.csrf.encode(), (header_value or "").encode())
