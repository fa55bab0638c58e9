"""Tokens: random 32-byte strings handed out once; only their sha256 is kept.

A plain-value module: the registry (``registry.teams``) makes and rotates tokens, the API's auth
interceptor (``api.auth``) checks them through the ``TokenAuthority``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from coordinator.principal import Principal

__all__ = ["TokenAuthority", "hash_token", "new_token"]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenAuthority:
    """Maps token hashes to principals. Kept in memory; the Store is the source of truth."""

    def __init__(self) -> None:
        self._by_hash: dict[str, Principal] = {}
        # Moves on with every change made here, so a read of the store that began before one
        # does not undo it (``replace_all``).
        self.generation = 0

    def set_admin(self, token_hash: str) -> None:
        self.generation += 1
        self._by_hash[token_hash] = Principal(admin=True)

    def set_team(self, team: str, token_hash: str) -> None:
        self.generation += 1
        for known, principal in list(self._by_hash.items()):
            if principal.team == team and not principal.admin:
                del self._by_hash[known]
        self._by_hash[token_hash] = Principal(team=team)

    def replace_all(self, admin_hash: str, team_hashes: dict[str, str], read_generation: int) -> bool:
        """Know exactly these tokens from now on (as read from the store when ``generation`` was
        ``read_generation``): a token rotated or revoked through another coordinator sharing the
        store stops working here too. False (nothing changed) when a change was made here since
        the read began: the next read has it."""
        if read_generation != self.generation:
            return False
        by_hash = {team_hash: Principal(team=team) for team, team_hash in team_hashes.items()}
        by_hash[admin_hash] = Principal(admin=True)
        self._by_hash = by_hash
        return True

    def authenticate(self, token: str) -> Principal | None:
        """Compare against every known hash in constant time (no early exit on a match)."""
        digest = hash_token(token).encode()
        found: Principal | None = None
        for known, principal in self._by_hash.items():
            if hmac.compare_digest(known.encode(), digest):
                found = principal
        return found
