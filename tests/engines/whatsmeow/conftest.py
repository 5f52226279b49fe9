"""Helpers for the whatsmeow engine tests: real worker processes, proxies that make the
offline dial deterministic (refused at once, or hanging forever), both session stores
(SQLite files, PostgreSQL schemas), and a stored device standing in for a paired phone."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import socket
import sqlite3
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import drop_pg_database, fresh_pg_database
from zapmux import events as ev
from zapmux.config import Settings
from zapmux.engines.whatsmeow.client import WhatsmeowEngine
from zapmux.engines.whatsmeow.store import (
    STORE_FILE,
    PostgresWhatsmeowStore,
    SqliteWhatsmeowStore,
    asyncpg_dsn,
    schema_name,
)

# The worker-side tests load neonize here. Its import leaves an os.popen("uname -a")
# unclosed; subprocess keeps it in a private list until the next Popen, where its
# ResourceWarning would fail an unrelated test. Reap it now, under this filter.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", ResourceWarning)
    import neonize.aioze.client  # noqa: F401

    deadline = time.monotonic() + 5
    while subprocess._active and time.monotonic() < deadline:  # type: ignore[attr-defined]
        subprocess._cleanup()  # type: ignore[attr-defined]
        time.sleep(0.01)
    gc.collect()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(auth_dir=tmp_path / "auth", data_dir=tmp_path / "data", _env_file=None)


@pytest.fixture
def refused_proxy() -> str:
    """A proxy address nobody listens on: the dial fails at once, network or not."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


PG_URL = os.environ.get("ZAPMUX_TEST_DATABASE_URL")
needs_pg = pytest.mark.skipif(
    not PG_URL, reason="set ZAPMUX_TEST_DATABASE_URL=postgresql://… (.ci/run does)"
)


@pytest.fixture
async def pg_settings(tmp_path: Path) -> AsyncIterator[Settings]:
    """Settings whose database is a fresh PostgreSQL database (dropped afterwards)."""
    if not PG_URL:
        pytest.skip("set ZAPMUX_TEST_DATABASE_URL=postgresql://… (.ci/run does)")
    url, name = await fresh_pg_database(PG_URL)
    yield Settings(
        auth_dir=tmp_path / "auth", data_dir=tmp_path / "data", database_url=url, _env_file=None
    )
    await drop_pg_database(PG_URL, name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=needs_pg)])
async def any_store_settings(
    request: pytest.FixtureRequest, settings: Settings, tmp_path: Path
) -> AsyncIterator[Settings]:
    """Settings for each whatsmeow session store: SQLite files, PostgreSQL schemas."""
    if request.param == "sqlite":
        yield settings
        return
    assert PG_URL
    url, name = await fresh_pg_database(PG_URL)
    yield settings.model_copy(update={"database_url": url})
    await drop_pg_database(PG_URL, name)


# A device row as whatsmeow stores it after pairing (keys of the right sizes, nothing
# that would work against WhatsApp): enough for is_paired and for a worker to load it.
_DEVICE_COLUMNS = (
    "jid, registration_id, noise_key, identity_key, signed_pre_key, signed_pre_key_id, "
    "signed_pre_key_sig, adv_key, adv_details, adv_account_sig, adv_account_sig_key, "
    "adv_device_sig"
)
_DEVICE = (
    "5511999990000:7@s.whatsapp.net", 1, b"\1" * 32, b"\2" * 32, b"\3" * 32, 1,
    b"\4" * 64, b"\5" * 32, b"", b"\6" * 64, b"\7" * 32, b"\x08" * 64,
)  # fmt: skip


StartedWorkers = Callable[[str], list[int]]


@pytest.fixture
def started_workers(caplog: pytest.LogCaptureFixture) -> StartedWorkers:
    """The pids of the worker processes started for a tenant so far (from its debug log)."""
    caplog.set_level("DEBUG", logger="zapmux.tenant")

    def started(tenant: str) -> list[int]:
        return [
            int(match.group(1))
            for record in caplog.records
            if record.name == f"zapmux.tenant.{tenant}"
            and (match := re.fullmatch(r"started whatsmeow worker pid (\d+)", record.getMessage()))
        ]

    return started


MigrateStore = Callable[[WhatsmeowEngine, str], Awaitable[ev.Event]]
PairStore = Callable[[WhatsmeowEngine, str], Awaitable[None]]


async def _migrate_store(engine: WhatsmeowEngine, tenant_id: str) -> ev.Event:
    outcome: asyncio.Queue[ev.Event] = asyncio.Queue()
    session = engine.open_session(tenant_id, outcome.put)
    await session.connect()
    event = await asyncio.wait_for(outcome.get(), 20)
    await session.disconnect()
    return event


@pytest.fixture
def migrate_store() -> MigrateStore:
    """Let a real worker create the tenant's whatsmeow tables and return its first event:
    it opens the store before it dials, and the dial fails at once (the engine must use
    a refused proxy)."""
    return _migrate_store


@pytest.fixture
def paired_store() -> PairStore:
    """Make a tenant look paired: a migrated store holding one device."""

    async def pair(engine: WhatsmeowEngine, tenant_id: str) -> None:
        event = await _migrate_store(engine, tenant_id)
        assert isinstance(event, ev.Disconnected) and "dial" in event.reason, event
        store = engine.whatsmeow_store
        if isinstance(store, SqliteWhatsmeowStore):
            path = store.tenant_dir(tenant_id) / STORE_FILE
            with sqlite3.connect(path) as db:
                marks = ", ".join("?" * len(_DEVICE))
                db.execute(
                    f"INSERT INTO whatsmeow_device ({_DEVICE_COLUMNS}) VALUES ({marks})", _DEVICE
                )
            db.close()
            return
        assert isinstance(store, PostgresWhatsmeowStore)
        conn = await asyncpg.connect(asyncpg_dsn(store.database_url))
        try:
            marks = ", ".join(f"${n}" for n in range(1, len(_DEVICE) + 1))
            table = f'"{schema_name(tenant_id)}".whatsmeow_device'
            await conn.execute(
                f"INSERT INTO {table} ({_DEVICE_COLUMNS}) VALUES ({marks})", *_DEVICE
            )
        finally:
            await conn.close()

    return pair
