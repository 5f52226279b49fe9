from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import drop_pg_database, fresh_pg_database
from zapmux.store import open_store
from zapmux.store.base import Store

PG_URL = os.environ.get("ZAPMUX_TEST_DATABASE_URL")


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
    url, name = await fresh_pg_database(PG_URL)
    backend = open_store(url)
    await backend.migrate()
    yield backend
    await backend.close()
    await drop_pg_database(PG_URL, name)
