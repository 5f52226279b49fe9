from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from zapmux.store import open_store
from zapmux.store.base import Store

PG_URL = os.environ.get("ZAPMUX_TEST_DATABASE_URL")


async def _fresh_pg_database(url: str) -> tuple[str, str]:
    """A new empty database on the server of ``url``: (its URL, its name)."""
    name = f"zapmux_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name, name


async def _drop_pg_database(url: str, name: str) -> None:
    admin = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not PG_URL, reason="set ZAPMUX_TEST_DATABASE_URL=postgresql://… (.ci/run does)"
        ),
    ),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        backend = open_store(f"sqlite:///{tmp_path / 'store.db'}")
        await backend.migrate()
        yield backend
        await backend.close()
        return
    assert PG_URL
    url, name = await _fresh_pg_database(PG_URL)
    backend = open_store(url)
    await backend.migrate()
    yield backend
    await backend.close()
    await _drop_pg_database(PG_URL, name)
