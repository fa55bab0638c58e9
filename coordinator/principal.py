"""Who is acting: a team, or the admin (platform).

A plain value every layer may use (engine, registry, events, telemetry, the API). How a
Principal is established for an RPC (tokens, the auth interceptor) is the API layer's business:
``coordinator.api.auth``.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a team, or the admin (platform)."""

    team: str = ""
    admin: bool = False

    @property
    def actor(self) -> str:
        return ADMIN if self.admin else self.team

    def owns(self, team: str) -> bool:
        return self.admin or self.team == team

    def intervenes_on(self, team: str) -> bool:
        """True when the admin acts on a team's object: a platform intervention."""
        return self.admin and bool(team)
