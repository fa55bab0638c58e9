"""Server-side sessions of the UI.

The cookie holds only an opaque random session id. The token it stands for lives in this
process's memory, keyed by the SHA-256 of the id (so the table itself holds no usable cookie).
A coordinator restart signs everybody out, which is the safe direction.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from coordinator.web._source import Principal

COOKIE_NAME = "accord_session"
CSRF_HEADER = "x-accord-csrf"


@dataclass
class Session:
    token: str
    principal: Principal
    csrf: str
    created_s: float
    last_seen_s: float = field(default=0.0)


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Sessions expire after ``idle_s`` without use or ``max_age_s`` after sign-in."""

    def __init__(self, *, idle_s: float = 12 * 3600, max_age_s: float = 7 * 24 * 3600, limit: int = 10_000):
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.limit = limit
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, token: str, principal: Principal) -> tuple[str, Session]:
        """A new session; returns the id for the cookie (never stored) and the session."""
        now = time.monotonic()
        session_id = secrets.token_urlsafe(32)
        session = Session(token=token, principal=principal, csrf=secrets.token_urlsafe(24), created_s=now)
        session.last_seen_s = now
        self._sessions[_key(session_id)] = session
        while len(self._sessions) > self.limit:
            self._sessions.popitem(last=False)
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        key = _key(session_id)
        session = self._sessions.get(key)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_seen_s > self.idle_s or now - session.created_s > self.max_age_s:
            del self._sessions[key]
            return None
        session.last_seen_s = now
        self._sessions.move_to_end(key)
        return session

    def delete(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._sessions)


def csrf_ok(session: Session, header_value: str | None) -> bool:
    return bool(header_value) and hmac.compare_digest(session.csrf, header_value or "")
