"""Teams and their tokens. Only token hashes are stored.

A team holds several named tokens (``accord team token create|list|revoke``); ``accord team
create`` makes the first, named ``default``, and ``accord team rotate-token`` replaces
``default``, letting the one it replaces work on for a grace period under the name
``default-old``. The admin has one token (``accord admin rotate-token``). See docs/production.md,
"Tokens".
"""

from __future__ import annotations

import logging
import re
import time

from contracts.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnreachableError,
)
from coordinator.principal import Principal
from coordinator.store.base import Store
from coordinator.store.records import AuditRecord, TeamRecord, TokenRecord
from coordinator.tokens import TokenAuthority, hash_token, new_token

logger = logging.getLogger(__name__)

_TEAM_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
_TOKEN_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
ADMIN_TOKEN_SETTING = "admin_token_hash"
DEFAULT_TOKEN = "default"


# The longest expiry or grace period taken (about 100 years): beyond it, a time in ms would not
# fit the store's 64-bit integers.
_LONGEST_S = 100 * 365 * 86_400


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check_span(seconds: float, what: str) -> None:
    if not 0 <= seconds <= _LONGEST_S:
        raise InvalidArgumentError(f"{what} must be between 0 and 100 years (e.g. 90d), not {seconds:g} s")


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
        generation = self._authority.generation
        self._authority.replace_all(admin_hash, _known(await self._store.list_tokens()), generation)
        return token

    async def refresh(self) -> list[TeamRecord]:
        """Write the tokens' last uses, then read every token hash from the store again (another
        coordinator sharing it may have made, rotated or revoked one); returns the teams read."""
        uses = self._authority.take_uses()
        if uses:
            try:
                await self._store.record_token_use(uses)
            except UnreachableError:
                self._authority.give_back_uses(uses)
                raise  # the store says so itself, once; the caller tries again
            except Exception:
                self._authority.give_back_uses(uses)
                logger.warning("could not write when tokens were last used; trying again", exc_info=True)
        generation = self._authority.generation
        admin_hash = await self._store.get_setting(ADMIN_TOKEN_SETTING)
        tokens = await self._store.list_tokens()
        teams = await self._store.list_teams()
        if admin_hash is not None:
            self._authority.replace_all(admin_hash, _known(tokens), generation)
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
        now = _now_ms()
        record = TeamRecord(name=name, created_ms=now)
        first = TokenRecord(team=name, name=DEFAULT_TOKEN, token_hash=hash_token(token), created_ms=now)
        try:
            await self._store.create_team(
                record,
                first,
                AuditRecord(
                    now, principal.actor, "team.create", name, name, details={"token": DEFAULT_TOKEN}
                ),
            )
        except KeyError:
            raise AlreadyExistsError(
                f"team {name} already exists; use 'accord team rotate-token {name}' for a new token"
            ) from None
        self._authority.set_team_token(name, first.token_hash, name=DEFAULT_TOKEN)
        return record, token

    async def _team_of(self, principal: Principal, team: str, doing: str) -> str:
        """The team whose tokens ``principal`` acts on: ``team``, or the caller's own when empty.
        A team's token acts on its own team only; the admin must name the team."""
        if not team:
            if principal.admin:
                raise InvalidArgumentError(f"the admin must name the team to {doing} (--team TEAM)")
            team = principal.team
        elif not principal.owns(team):
            raise PermissionDeniedError(
                f"a token of team {principal.team} may {doing} of team {principal.team} only, not of"
                f" team {team}: use a token of team {team} or the admin's"
            )
        if await self._store.get_team(team) is None:
            raise NotFoundError(f"team {team} does not exist (accord team list shows the teams)")
        return team

    def _audit(
        self, principal: Principal, action: str, team: str, obj: str, **details: object
    ) -> AuditRecord:
        return AuditRecord(
            _now_ms(),
            principal.actor,
            action,
            obj,
            team,
            platform_intervention=principal.intervenes_on(team),
            details=dict(details),
        )

    async def create_token(
        self, principal: Principal, team: str, name: str, expires_in_s: float = 0
    ) -> tuple[TokenRecord, str]:
        """A new named token of ``team`` (the caller's own when empty); returns it with the token,
        which is shown this once."""
        team = await self._team_of(principal, team, "make tokens")
        if not _TOKEN_NAME_RE.match(name):
            raise InvalidArgumentError(
                f"'{name}' is not a token name: use lowercase letters, digits, '.', '_' and '-'"
                " (at most 63), e.g. ci or agent-eu"
            )
        _check_span(expires_in_s, "a token's expiry")
        token = new_token()
        now = _now_ms()
        record = TokenRecord(
            team=team,
            name=name,
            token_hash=hash_token(token),
            created_ms=now,
            expires_ms=now + round(expires_in_s * 1000) if expires_in_s else 0,
        )
        audit = self._audit(
            principal, "token.create", team, f"{team}/token/{name}", token=name, expires_ms=record.expires_ms
        )
        try:
            await self._store.add_token(record, audit)
        except KeyError:
            raise AlreadyExistsError(
                f"team {team} already has a token named {name}: revoke it first"
                f" (accord team token revoke {name} --team {team}) or choose another name"
            ) from None
        self._authority.set_team_token(team, record.token_hash, name=name, expires_ms=record.expires_ms)
        return record, token

    async def list_tokens(self, principal: Principal, team: str, include_inactive: bool) -> list[TokenRecord]:
        """The tokens of ``team`` (the caller's own when empty; the admin: every team's), live
        ones only unless ``include_inactive``."""
        if team or not principal.admin:
            team = await self._team_of(principal, team, "list tokens")
        tokens = await self._store.list_tokens(team, revoked=include_inactive)
        if include_inactive:
            return tokens
        now = _now_ms()
        return [t for t in tokens if t.live_at(now)]

    async def revoke_token(self, principal: Principal, team: str, name: str) -> list[TokenRecord]:
        """Revoke the team's token(s) named ``name``: refused from now on (by every coordinator
        sharing the store within ``cache_refresh_s``)."""
        team = await self._team_of(principal, team, "revoke tokens")
        revoked = await self._store.revoke_token(
            team,
            name,
            _now_ms(),
            self._audit(principal, "token.revoke", team, f"{team}/token/{name}", token=name),
        )
        if not revoked:
            raise NotFoundError(
                f"team {team} has no token named {name} that is not revoked"
                f" (accord team token list --team {team} shows them)"
            )
        for token in revoked:
            self._authority.drop(token.token_hash)
        return revoked

    async def rotate(
        self, principal: Principal, name: str, grace_s: float = 0, expires_in_s: float = 0
    ) -> tuple[str, TokenRecord, list[TokenRecord]]:
        """A new ``default`` token for team ``name``; the one it replaces is renamed and expires
        after ``grace_s`` (0: revoked at once). Returns the token (shown this once), the new
        token's record and the replaced ones as they are now."""
        if not principal.owns(name):
            raise PermissionDeniedError(
                f"team {name}'s token may be rotated only by team {name} or the admin"
            )
        if await self._store.get_team(name) is None:
            raise NotFoundError(f"team {name} does not exist")
        _check_span(grace_s, "the grace period")
        _check_span(expires_in_s, "a token's expiry")
        token = new_token()
        now = _now_ms()
        record = TokenRecord(
            team=name,
            name=DEFAULT_TOKEN,
            token_hash=hash_token(token),
            created_ms=now,
            expires_ms=now + round(expires_in_s * 1000) if expires_in_s else 0,
        )
        old_expires_ms = now + round(grace_s * 1000)
        replaced = await self._store.replace_token(
            record,
            old_expires_ms,
            self._audit(principal, "team.rotate_token", name, name, token=DEFAULT_TOKEN, grace_s=grace_s),
        )
        for old in replaced:
            if old.revoked_ms:
                self._authority.drop(old.token_hash)
            else:
                self._authority.set_team_token(name, old.token_hash, name=old.name, expires_ms=old.expires_ms)
        self._authority.set_team_token(
            name, record.token_hash, name=DEFAULT_TOKEN, expires_ms=record.expires_ms
        )
        return token, record, replaced

    async def rotate_admin(self, principal: Principal, new_token_sha256: str = "") -> str:
        """A new admin token; the old one is refused from now on (here at once, by the other
        coordinators sharing the store within ``cache_refresh_s``). With ``new_token_sha256``, the
        hash of a token the caller made (and keeps), that token; else one made here, returned."""
        if not principal.admin:
            raise PermissionDeniedError("only the admin may rotate the admin token")
        token = ""
        token_hash = new_token_sha256
        if not token_hash:
            token = new_token()
            token_hash = hash_token(token)
        elif not _SHA256_RE.match(token_hash):
            raise InvalidArgumentError("new_token_sha256 must be a SHA-256 in hex: 64 digits 0-9, a-f")
        await self._store.set_setting(
            ADMIN_TOKEN_SETTING,
            token_hash,
            AuditRecord(_now_ms(), principal.actor, "admin.rotate_token", "admin", ""),
        )
        self._authority.set_admin(token_hash)
        return token

    async def list(self) -> list[TeamRecord]:
        return await self._store.list_teams()


def _known(tokens: list[TokenRecord]) -> list[tuple[str, str, str, int]]:
    """What the authority keeps of the store's tokens (none of them revoked)."""
    return [(t.team, t.name, t.token_hash, t.expires_ms) for t in tokens]
