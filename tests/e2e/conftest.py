"""What the several-node tests share: a PostgreSQL database of their own."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.helpers import drop_pg_database, fresh_pg_database

PG_URL = os.environ.get("ZAPMUX_TEST_DATABASE_URL")
#: nodes share a store only on PostgreSQL; without one these tests cannot run
needs_postgres = pytest.mark.skipif(
    not PG_URL, reason="needs ZAPMUX_TEST_DATABASE_URL (.ci/run sets it)"
)


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    assert PG_URL
    url, name = await fresh_pg_database(PG_URL)
    yield url
    await drop_pg_database(PG_URL, name)
