"""Throwaway databases on the local PostgreSQL (127.0.0.1:5432, user postgres, trust auth; set
``ACCORD_TEST_POSTGRES`` to a maintenance-database URL to use another).

    db = TestDatabase.create()       # CREATE DATABASE accord_test_<random>
    db.url                           # postgresql://postgres@127.0.0.1:5432/accord_test_...
    db.schema_url()                  # the same database, in a new empty schema of its own
    db.drop()                        # its connections terminated first

Only the databases made here are ever created or dropped; the server's own (postgres, template*)
and anyone else's are only connected to, to create and drop ours.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
from psycopg import sql

MAINTENANCE_URL = os.environ.get("ACCORD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _url_of(database: str) -> str:
    base, _, _ = MAINTENANCE_URL.rpartition("/")
    return f"{base}/{database}"


@dataclass
class TestDatabase:
    __test__ = False  # not a test class, whatever its name

    name: str

    @classmethod
    def create(cls, prefix: str = "accord_test") -> TestDatabase:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(MAINTENANCE_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return cls(name)

    @property
    def url(self) -> str:
        return _url_of(self.name)

    def schema_url(self) -> str:
        """A URL of this database whose search_path is a new, empty schema: a fresh store per
        test at the cost of a CREATE SCHEMA rather than a CREATE DATABASE."""
        schema = f"s_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return f"{self.url}?options={quote(f'-csearch_path={schema}')}"

    def connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.url, autocommit=True)

    def drop(self) -> None:
        with psycopg.connect(MAINTENANCE_URL, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
