"""The store conformance suite against SqliteStore, on a fresh file per test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from coordinator.store.sqlite import SqliteStore
from tests.coordinator.store_conformance import StoreConformance, StoreFactory


@dataclass
class SqliteFactory:
    path: Path
    # One process per database file: a second store on it is refused (test_coordinator_store).
    second_store_allowed: bool = False

    def new(self) -> SqliteStore:
        return SqliteStore(self.path)


class TestSqliteStore(StoreConformance):
    @pytest.fixture
    def store_factory(self, tmp_path: Path) -> StoreFactory:
        return SqliteFactory(tmp_path / "coordinator.db")
