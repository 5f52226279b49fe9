"""The store backends every store contract test runs over: memory and SQLite always,
PostgreSQL when ``ZAPMUX_TEST_DATABASE_URL`` is given (as mautrix runs its store
tests over each backend)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.helpers import drop_pg_database, fresh_pg_database
from zapmux.store import open_store
from zapmux.store.base import Store

PG_URL = os.environ.get("ZAPMUX_TEST_DATABASE_URL")

POSTGRESQL = pytest.param(
    "postgresql",
    marks=pytest.mark.skipif(
        not PG_URL, reason="set ZAPMUX_TEST_DATABASE_URL=postgresql://… (.ci/run does)"
    ),
)
SQL_BACKENDS = ["sqlite", POSTGRESQL]
BACKENDS = ["memory", *SQL_BACKENDS]


@asynccontextmanager
async def _opened(backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A new, migrated, empty store of ``backend``."""
    if backend == "postgresql":
        assert PG_URL
        url, name = await fresh_pg_database(PG_URL)
    else:
        url = "memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'store.db'}"
    store = open_store(url)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()
        if backend == "postgresql":
            assert PG_URL
            await drop_pg_database(PG_URL, name)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with _opened(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture(params=SQL_BACKENDS)
async def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """For what only a database has: its schema's migrations and its writer's batches."""
    async with _opened(request.param, tmp_path) as backend:
        yield backend
