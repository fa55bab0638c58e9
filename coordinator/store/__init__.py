"""Durable state: one ``Store`` interface, SQLite by default."""

from coordinator.store.base import Store
from coordinator.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store"]
