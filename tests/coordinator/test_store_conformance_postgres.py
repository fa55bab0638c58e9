"""The store conformance suite against PostgresStore: one database for the module, a fresh
schema in it per test (so every test starts from an empty, freshly migrated store)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from coordinator.store.postgres import PostgresStore
from tests.coordinator.store_conformance import StoreConformance, StoreFactory
from tests.support.postgres import TestDatabase

pytestmark = pytest.mark.postgres


@dataclass
class PostgresFactory:
    url: str
    # Several coordinator processes share one PostgreSQL database.
    second_store_allowed: bool = True

    def new(self) -> PostgresStore:
        return PostgresStore(self.url, pool_size=4)


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_factory(self, pg_database: TestDatabase) -> StoreFactory:
        return PostgresFactory(pg_database.schema_url())
