"""Teams and their tokens. Only token hashes are stored."""

from __future__ import annotations

import re
import time

from contracts.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from coordinator.principal import Principal
from coordinator.store.base import Store
from coordinator.store.records import AuditRecord, TeamRecord
from coordinator.tokens import TokenAuthority, hash_token, new_token

_TEAM_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
ADMIN_TOKEN_SETTING = "admin_token_hash"


class Teams:
    def __init__(self, store: Store, authority: TokenAuthority) -> None:
        self._store = store
        self._authority = authority

    async def load(self) -> str | None:
        """Load token hashes into the authority; returns a new admin token on the first start
        with this database, None on every other.

        One admin token per database, whoever starts first: coordinators that share a database
        and start at the same time each make a token, and the one whose hash is stored first
        wins (``set_setting_if_absent``). The others take the winner's hash and return None:
        they cannot show its token, as only the hash is stored."""
        admin_hash = await self._store.get_setting(ADMIN_TOKEN_SETTING)
        token = None
        if admin_hash is None:
            token = new_token()
            admin_hash = await self._store.set_setting_if_absent(ADMIN_TOKEN_SETTING, hash_token(token))
            if admin_hash != hash_token(token):
                token = None  # another coordinator stored its own first
        self._authority.set_admin(admin_hash)
        for team in await self._store.list_teams():
            self._authority.set_team(team.name, team.token_hash)
        return token

    async def refresh(self) -> list[TeamRecord]:
        """Read every token hash from the store again (another coordinator sharing it may have
        created a team or rotated a token); returns the teams read."""
        generation = self._authority.generation
        admin_hash = await self._store.get_setting(ADMIN_TOKEN_SETTING)
        teams = await self._store.list_teams()
        if admin_hash is not None:
            self._authority.replace_all(
                admin_hash, {team.name: team.token_hash for team in teams}, generation
            )
        return teams

    async def create(self, principal: Principal, name: str) -> tuple[TeamRecord, str]:
        if not principal.admin:
            raise PermissionDeniedError("only the admin (platform) may create teams")
        if not _TEAM_RE.match(name):
            raise InvalidArgumentError(
                f"'{name}' is not a team name: use lowercase letters, digits and '-' (e.g. payments)"
            )
        if name == "admin":
            raise InvalidArgumentError("'admin' is reserved for the platform")
        token = new_token()
        record = TeamRecord(name=name, token_hash=hash_token(token), created_ms=int(time.time() * 1000))
        try:
            await self._store.create_team(
                record, AuditRecord(record.created_ms, principal.actor, "team.create", name, name)
            )
        except KeyError:
            raise AlreadyExistsError(
                f"team {name} already exists; use 'accord team rotate-token {name}' for a new token"
            ) from None
        self._authority.set_team(name, record.token_hash)
        return record, token

    async def rotate(self, principal: Principal, name: str) -> str:
        if not principal.owns(name):
            raise PermissionDeniedError(
                f"team {name}'s token may be rotated only by team {name} or the admin"
            )
        if await self._store.get_team(name) is None:
            raise NotFoundError(f"team {name} does not exist")
        token = new_token()
        await self._store.set_team_token(
            name,
            hash_token(token),
            AuditRecord(
                int(time.time() * 1000),
                principal.actor,
                "team.rotate_token",
                name,
                name,
                platform_intervention=principal.intervenes_on(name),
            ),
        )
        self._authority.set_team(name, hash_token(token))
        return token

    async def list(self) -> list[TeamRecord]:
        return await self._store.list_teams()
