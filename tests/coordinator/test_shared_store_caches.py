"""Coordinators sharing one store keep caches of it (registry, token hashes): what one changes the
others see at once where it matters (a version asked for is not cached: read again) and within a
second otherwise (a newer version; a rotated token). Two registries and two token authorities on
one real store stand for two coordinators here; the replicas' end-to-end tests are in tests/e2e."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from coordinator.principal import Principal
from coordinator.registry.registry import Registry
from coordinator.registry.teams import Teams
from coordinator.store.sqlite import SqliteStore
from coordinator.tokens import TokenAuthority
from tests.support.scenario import contract

ADMIN = Principal(admin=True)
PAYMENTS = Principal(team="payments")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "coordinator.db")
    await store.open()
    yield store
    await store.close()


async def test_a_contract_registered_through_one_is_resolved_through_the_other(store: SqliteStore) -> None:
    one, other = Registry(store), Registry(store)
    other.fresh_s = 0.2
    assert await other.resolve("payments/charge", "^1") is None  # cached: none
    await one.register_contract(PAYMENTS, contract("payments/charge", "1.0.0"), "c.yaml", False)
    found = await other.resolve("payments/charge", "^1")  # not in the cache: read again at once
    assert found is not None and found.version == "1.0.0"
    await one.register_contract(PAYMENTS, contract("payments/charge", "1.1.0"), "c.yaml", False)
    found = await other.resolve("payments/charge", "^1")
    assert found is not None and found.version == "1.0.0"  # 1.0.0 still fits, from the cache...
    await asyncio.sleep(0.25)
    found = await other.resolve("payments/charge", "^1")
    assert found is not None and found.version == "1.1.0"  # ...until it is older than fresh_s
    assert (await other.contract("payments/charge", "1.1.0")) is not None


async def test_a_token_rotated_through_one_is_refused_by_the_other_after_a_refresh(
    store: SqliteStore,
) -> None:
    authority_one, authority_other = TokenAuthority(), TokenAuthority()
    one, other = Teams(store, authority_one), Teams(store, authority_other)
    admin_token = await one.load()
    assert admin_token is not None
    assert await other.load() is None  # the admin token exists once per store
    assert authority_other.authenticate(admin_token) == ADMIN
    _, token = await one.create(ADMIN, "payments")
    assert authority_other.authenticate(token) is None
    await other.refresh()
    assert authority_other.authenticate(token) == PAYMENTS
    rotated, _, _ = await one.rotate(ADMIN, "payments")  # no grace: the old one is revoked
    await other.refresh()
    assert authority_other.authenticate(token) is None  # the old token is refused there too
    assert authority_other.authenticate(rotated) == PAYMENTS


async def test_a_token_revoked_through_one_is_refused_by_the_other_after_a_refresh(
    store: SqliteStore,
) -> None:
    authority_one, authority_other = TokenAuthority(), TokenAuthority()
    one, other = Teams(store, authority_one), Teams(store, authority_other)
    await one.load()
    await other.load()
    await one.create(ADMIN, "payments")
    _, ci = await one.create_token(PAYMENTS, "", "ci")
    await other.refresh()
    assert authority_other.authenticate(ci) == PAYMENTS
    await one.revoke_token(PAYMENTS, "", "ci")
    assert authority_one.authenticate(ci) is None  # at once where it was revoked
    await other.refresh()
    assert authority_other.authenticate(ci) is None
    assert authority_other.refusal(ci) == "unknown or revoked token"


async def test_an_expired_token_is_refused_without_reading_the_store_again(store: SqliteStore) -> None:
    now = [1_000_000.0]
    authority_one, authority_other = (
        TokenAuthority(clock=lambda: now[0]),
        TokenAuthority(clock=lambda: now[0]),
    )
    one, other = Teams(store, authority_one), Teams(store, authority_other)
    await one.load()
    await one.create(ADMIN, "payments")
    record, ci = await one.create_token(ADMIN, "payments", "ci", expires_in_s=60)
    await other.load()
    now[0] = record.expires_ms / 1000 - 0.001
    assert authority_one.authenticate(ci) == PAYMENTS
    assert authority_other.authenticate(ci) == PAYMENTS
    now[0] = record.expires_ms / 1000
    assert authority_one.authenticate(ci) is None
    assert authority_other.authenticate(ci) is None  # no refresh needed
    assert authority_other.refusal(ci).startswith("token 'ci' of team payments expired at ")


async def test_a_rotated_token_works_through_its_grace_period_on_every_coordinator(
    store: SqliteStore,
) -> None:
    now = [1_000_000.0]
    authority_one, authority_other = (
        TokenAuthority(clock=lambda: now[0]),
        TokenAuthority(clock=lambda: now[0]),
    )
    one, other = Teams(store, authority_one), Teams(store, authority_other)
    await one.load()
    _, old = await one.create(ADMIN, "payments")
    await other.load()
    new, _, (replaced,) = await one.rotate(PAYMENTS, "payments", grace_s=3600)
    assert replaced.name == "default-old"
    await other.refresh()
    for authority in (authority_one, authority_other):
        assert authority.authenticate(old) == PAYMENTS
        assert authority.authenticate(new) == PAYMENTS
    now[0] = replaced.expires_ms / 1000
    for authority in (authority_one, authority_other):
        assert authority.authenticate(old) is None
        assert authority.authenticate(new) == PAYMENTS


async def test_last_use_is_written_at_most_once_a_period_per_token(store: SqliteStore) -> None:
    now = [1_000.0]
    authority = TokenAuthority(clock=lambda: now[0], last_used_every_s=60)
    teams = Teams(store, authority)
    admin = await teams.load()
    assert admin is not None
    _, token = await teams.create(ADMIN, "payments")

    async def last_used() -> int:
        (stored,) = await store.list_tokens("payments")
        return stored.last_used_ms

    assert authority.authenticate(admin) == ADMIN  # the admin token has no row: not counted
    await teams.refresh()
    assert await last_used() == 0
    authority.authenticate(token)
    await teams.refresh()
    assert await last_used() == 1_000_000  # the first use is written at the next refresh
    now[0] = 1_030.0
    authority.authenticate(token)
    assert authority.take_uses() == {}  # 30 s later: not yet
    now[0] = 1_060.0
    await teams.refresh()
    assert await last_used() == 1_030_000  # a period later: the latest use
    await teams.refresh()
    assert authority.take_uses() == {}  # nothing new: nothing written


async def test_a_refresh_that_read_before_a_local_change_does_not_undo_it(store: SqliteStore) -> None:
    authority = TokenAuthority()
    teams = Teams(store, authority)
    await teams.load()
    generation = authority.generation
    stale = [(t.team, t.name, t.token_hash, t.expires_ms) for t in await store.list_tokens()]  # none yet
    _, token = await teams.create(ADMIN, "payments")  # made here meanwhile
    admin_hash = await store.get_setting("admin_token_hash")
    assert admin_hash is not None
    assert not authority.replace_all(admin_hash, stale, generation)
    assert authority.authenticate(token) == PAYMENTS
