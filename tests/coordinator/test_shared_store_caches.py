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
    rotated = await one.rotate(ADMIN, "payments")
    await other.refresh()
    assert authority_other.authenticate(token) is None  # the old token is refused there too
    assert authority_other.authenticate(rotated) == PAYMENTS


async def test_a_refresh_that_read_before_a_local_change_does_not_undo_it(store: SqliteStore) -> None:
    authority = TokenAuthority()
    teams = Teams(store, authority)
    await teams.load()
    generation = authority.generation
    stale = {team.name: team.token_hash for team in await store.list_teams()}  # read: no teams yet
    _, token = await teams.create(ADMIN, "payments")  # made here meanwhile
    admin_hash = await store.get_setting("admin_token_hash")
    assert admin_hash is not None
    assert not authority.replace_all(admin_hash, stale, generation)
    assert authority.authenticate(token) == PAYMENTS
