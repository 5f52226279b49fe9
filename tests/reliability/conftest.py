"""A live sandbox server on each store: SQLite always, PostgreSQL when a URL is given."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.contract.conftest import BACKENDS, PG_URL
from tests.helpers import LiveServer, Receiver, drop_pg_database, fresh_pg_database, make_settings

LiveFactory = Callable[..., Any]


@pytest.fixture(params=BACKENDS)
async def live(
    request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver
) -> AsyncIterator[LiveFactory]:
    """``async with live(**settings) as server``: a server on this test's store."""
    database: tuple[str, str] | None = None
    if request.param == "postgresql":
        assert PG_URL
        database = await fresh_pg_database(PG_URL)

    @asynccontextmanager
    async def build(**overrides: Any) -> AsyncIterator[LiveServer]:
        if database is not None:
            overrides.setdefault("database_url", database[0])
        overrides.setdefault("flask_url", receiver.url)
        async with LiveServer(make_settings(tmp_path, **overrides)) as server:
            yield server

    yield build
    if database is not None:
        assert PG_URL
        await drop_pg_database(PG_URL, database[1])
