"""Tokens: random 32-byte strings handed out once; only their sha256 is kept.

A plain-value module: the registry (``registry.teams``) makes, rotates and revokes tokens, the
API's auth interceptor (``api.auth``) checks them through the ``TokenAuthority``.

A team holds several named tokens, each of which may expire; the admin has one token. The
authority is a cache of the store's tokens (read again every ``cache_refresh_s`` by the server,
and at once for a token it does not know): a token revoked through another coordinator sharing
the store is refused here within that time, and an expired one at once, as expiry is checked on
every call.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from coordinator.principal import Principal

__all__ = ["LAST_USED_EVERY_S", "KnownToken", "TokenAuthority", "hash_token", "new_token"]

# A token's last use is written to the store at most this often (per token, per coordinator):
# the store sees a write per token per minute, not one per call.
LAST_USED_EVERY_S = 60.0

UNKNOWN_TOKEN = "unknown or revoked token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class KnownToken:
    """A token the authority accepts (until ``expires_ms``, if set)."""

    principal: Principal
    name: str = ""  # the team's name for it; "" for the admin token
    expires_ms: int = 0  # 0: never


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenAuthority:
    """Maps token hashes to principals. Kept in memory; the Store is the source of truth."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, last_used_every_s: float = LAST_USED_EVERY_S
    ) -> None:
        self._by_hash: dict[str, KnownToken] = {}
        self._clock = clock
        self._last_used_every_s = last_used_every_s
        # Last use of each token (ms), and what of it was handed on to be written and when.
        self._used: dict[str, int] = {}
        self._written: dict[str, tuple[float, int]] = {}
        # Moves on with every change made here, so a read of the store that began before one
        # does not undo it (``replace_all``).
        self.generation = 0
        # Called after every change of the tokens known (agents' streams check theirs again).
        self._listeners: set[Callable[[], None]] = set()

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` after each change of the tokens known (made here, or read from the
        store by ``replace_all``); returns the function that stops it. ``listener`` must not raise."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def set_admin(self, token_hash: str) -> None:
        """The admin's token from now on (the previous one is refused)."""
        self.generation += 1
        for known, token in list(self._by_hash.items()):
            if token.principal.admin:
                del self._by_hash[known]
        self._by_hash[token_hash] = KnownToken(Principal(admin=True))
        self._changed()

    def set_team_token(
        self, team: str, token_hash: str, *, name: str = "default", expires_ms: int = 0
    ) -> None:
        """Accept a team's token (made or changed here), until ``expires_ms`` if set."""
        self.generation += 1
        self._by_hash[token_hash] = KnownToken(Principal(team=team), name, expires_ms)
        self._changed()

    def drop(self, token_hash: str) -> None:
        """Refuse a token from now on (revoked here)."""
        self.generation += 1
        self._by_hash.pop(token_hash, None)
        self._changed()

    def replace_all(
        self,
        admin_hash: str,
        team_tokens: Iterable[tuple[str, str, str, int]],
        read_generation: int,
    ) -> bool:
        """Know exactly these tokens from now on (``team_tokens``: (team, name, hash, expires_ms)
        of every token not revoked, as read from the store when ``generation`` was
        ``read_generation``): a token made, revoked or rotated through another coordinator
        sharing the store is accepted or refused here too. False (nothing changed) when a change
        was made here since the read began: the next read has it."""
        if read_generation != self.generation:
            return False
        by_hash = {
            token_hash: KnownToken(Principal(team=team), name, expires_ms)
            for team, name, token_hash, expires_ms in team_tokens
        }
        by_hash[admin_hash] = KnownToken(Principal(admin=True))
        changed = by_hash != self._by_hash
        self._by_hash = by_hash
        self._used = {h: ms for h, ms in self._used.items() if h in by_hash}
        self._written = {h: w for h, w in self._written.items() if h in by_hash}
        if changed:
            self._changed()
        return True

    def _find(self, token: str) -> tuple[str, KnownToken] | None:
        """Compare against every known hash in constant time (no early exit on a match)."""
        digest = hash_token(token)
        encoded = digest.encode()
        found: KnownToken | None = None
        for known, entry in self._by_hash.items():
            if hmac.compare_digest(known.encode(), encoded):
                found = entry
        return None if found is None else (digest, found)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a known token that has not expired, else None. Notes the use (see
        ``take_uses``)."""
        found = self._find(token)
        if found is None:
            return None
        return self._accept(*found)

    def authenticate_again(self, token_hash: str) -> Principal | None:
        """``authenticate`` for a token accepted before, by its hash: an open call's token,
        checked again every second (``api.auth.until_refused``). A plain lookup: the comparison
        with every known hash in constant time guards a guessed token, and the caller here sent
        a real one already; a lookup keeps thousands of open calls cheap to check."""
        entry = self._by_hash.get(token_hash)
        return None if entry is None else self._accept(token_hash, entry)

    def _accept(self, digest: str, entry: KnownToken) -> Principal | None:
        now_ms = int(self._clock() * 1000)
        if entry.expires_ms and now_ms >= entry.expires_ms:
            return None
        if not entry.principal.admin:
            self._used[digest] = now_ms
        return entry.principal

    def refusal(self, token: str) -> str:
        """Why ``authenticate`` refuses ``token``: one line for the caller."""
        found = self._find(token)
        if found is None:
            return UNKNOWN_TOKEN
        entry = found[1]
        team = entry.principal.team
        return (
            f"token {entry.name!r} of team {team} expired at {_utc(entry.expires_ms)}: make a new one"
            f" (accord team token create NAME --team {team}, or accord team rotate-token {team})"
        )

    def take_uses(self) -> dict[str, int]:
        """Team tokens' last uses (hash -> ms) to write to the store: of each token, at most one
        every ``last_used_every_s`` seconds, and only a use newer than the last one handed on.
        Give back what could not be written with ``give_back_uses``."""
        now = self._clock()
        due: dict[str, int] = {}
        for token_hash, used_ms in self._used.items():
            written = self._written.get(token_hash)
            if written is not None and (used_ms <= written[1] or now - written[0] < self._last_used_every_s):
                continue
            due[token_hash] = used_ms
            self._written[token_hash] = (now, used_ms)
        return due

    def give_back_uses(self, uses: dict[str, int]) -> None:
        """Uses ``take_uses`` handed on that were not written: handed on again next time."""
        for token_hash in uses:
            self._written.pop(token_hash, None)
