"""What the several-node tests share: a PostgreSQL database of their own, and nodes on it
with a short lease (one in its own process, to be killed; others in the test's loop)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LiveServer, drop_pg_database, fresh_pg_database, make_settings
from tests.process import ServerProcess

PG_URL = os.environ.get("ZAPMUX_TEST_DATABASE_URL")
#: nodes share a store only on PostgreSQL; without one these tests cannot run
needs_postgres = pytest.mark.skipif(
    not PG_URL, reason="needs ZAPMUX_TEST_DATABASE_URL (.ci/run sets it)"
)
#: a node that stops renewing loses its tenants to another this soon
LEASE_S = 1.5


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    assert PG_URL
    url, name = await fresh_pg_database(PG_URL)
    yield url
    await drop_pg_database(PG_URL, name)


def live_node(root: Path, database: str, name: str, **overrides: Any) -> LiveServer:
    """A node in the test's event loop (its supervisor can be looked at)."""
    settings = make_settings(
        root, database_url=database, node_id=name, lease_seconds=LEASE_S, **overrides
    )
    return LiveServer(settings)


def process_node(root: Path, database: str, name: str, **env: str) -> ServerProcess:
    """A node in its own process, which a test can kill with SIGKILL."""
    return ServerProcess(
        root,
        ZAPMUX_DATABASE_URL=database,
        ZAPMUX_NODE_ID=name,
        ZAPMUX_LEASE_SECONDS=str(LEASE_S),
        **env,
    )
