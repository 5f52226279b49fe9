"""Where the whatsmeow sessions live: a SQLite file per tenant, or a PostgreSQL schema
per tenant in zapmux's database, created by the server and migrated by real workers.

Offline, a worker opens (and migrates) its store before it dials, so a connect through
a refused proxy is enough to see where whatsmeow put its tables.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest

from zapmux import events as ev
from zapmux.config import Settings
from zapmux.engines.whatsmeow.client import WhatsmeowEngine
from zapmux.engines.whatsmeow.store import asyncpg_dsn, schema_name, worker_store_url
from zapmux.errors import EngineError, InvalidTenantId

if TYPE_CHECKING:
    from conftest import MigrateStore, PairStore

IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def test_plain_tenant_ids_keep_their_name() -> None:
    assert schema_name("acme") == "wa_acme"
    assert schema_name("7") == "wa_7"


def test_every_tenant_id_gets_a_distinct_safe_schema() -> None:
    ids = [
        "acme", "Acme", "ACME", "a.b", "a-b", "a_b", "clinica.sorriso-01", "7", "x" * 64,
        "x" * 63 + "y", "X" * 64, "a" * 60, "a" * 61,
        "acme_0123456789abcdef",  # looks like a hashed name: hashed too
    ]  # fmt: skip
    names = [schema_name(tenant) for tenant in ids]
    assert all(IDENTIFIER.fullmatch(name) for name in names), names
    assert len(set(names)) == len(ids)
    assert schema_name("acme_0123456789abcdef") != "wa_acme_0123456789abcdef"


def test_tenant_ids_are_checked_before_they_reach_sql() -> None:
    with pytest.raises(InvalidTenantId):
        schema_name('x"; DROP SCHEMA public; --')


def test_the_worker_url_names_the_schema_for_lib_pq() -> None:
    url = worker_store_url("postgresql://zap:s%40cret@db:5432/zapmux?sslmode=disable", "wa_x")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "postgres",
        "zap:s%40cret@db:5432",
        "/zapmux",
    )
    assert parse_qs(parts.query) == {"sslmode": ["disable"], "search_path": ["wa_x"]}
    # lib/pq would require TLS by default; asyncpg (zapmux's own store) prefers it.
    assert parse_qs(urlsplit(worker_store_url("postgresql://db/z", "wa_y")).query) == {
        "sslmode": ["prefer"], "search_path": ["wa_y"],
    }  # fmt: skip


async def whatsmeow_tables(settings: Settings) -> dict[str, int]:
    """How many whatsmeow tables each schema of the database holds."""
    assert settings.database_url
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        rows = await conn.fetch(
            "SELECT table_schema, count(*) AS n FROM information_schema.tables "
            "WHERE table_name LIKE 'whatsmeow%' GROUP BY table_schema"
        )
    finally:
        await conn.close()
    return {row["table_schema"]: row["n"] for row in rows}


async def test_each_tenant_gets_its_own_schema_and_nothing_else(
    pg_settings: Settings, refused_proxy: str, migrate_store: MigrateStore
) -> None:
    engine = WhatsmeowEngine(pg_settings, proxy=refused_proxy)
    tenants = ("acme", "Acme", "clinica.sorriso-01")
    try:
        for tenant in tenants:
            # A store that failed to open would say "failed to upgrade database".
            event = await migrate_store(engine, tenant)
            assert isinstance(event, ev.Disconnected)
            assert "failed to dial whatsapp web websocket" in event.reason
        tables = await whatsmeow_tables(pg_settings)
        assert set(tables) == {schema_name(t) for t in tenants}
        assert len(set(tables.values())) == 1 and next(iter(tables.values())) > 10
        assert not pg_settings.auth_dir.exists()  # nothing on disk
        assert [await engine.is_paired(t) for t in tenants] == [False, False, False]

        again = await migrate_store(engine, "acme")  # an existing store opens as it is
        assert isinstance(again, ev.Disconnected) and "dial" in again.reason
        assert await whatsmeow_tables(pg_settings) == tables

        await engine.wipe("acme")
        remaining = await whatsmeow_tables(pg_settings)
        assert set(remaining) == {schema_name("Acme"), schema_name("clinica.sorriso-01")}
    finally:
        await engine.aclose()


async def test_paired_is_read_from_the_tenants_own_store(
    any_store_settings: Settings,
    refused_proxy: str,
    paired_store: PairStore,
    migrate_store: MigrateStore,
) -> None:
    engine = WhatsmeowEngine(any_store_settings, proxy=refused_proxy)
    try:
        await paired_store(engine, "clinic")
        await migrate_store(engine, "other")
        assert await engine.is_paired("clinic") is True
        assert await engine.is_paired("other") is False
        await engine.wipe("clinic")
        assert await engine.is_paired("clinic") is False
    finally:
        await engine.aclose()


async def test_an_unreachable_database_fails_the_connect_clearly(
    settings: Settings, refused_proxy: str
) -> None:
    port = urlsplit(refused_proxy).port
    down = settings.model_copy(update={"database_url": f"postgresql://nobody@127.0.0.1:{port}/x"})
    engine = WhatsmeowEngine(down, proxy=refused_proxy)
    events: list[ev.Event] = []

    async def sink(event: ev.Event) -> None:
        events.append(event)

    session = engine.open_session("acme", sink)
    with pytest.raises(EngineError, match="cannot open the whatsmeow store"):
        await session.connect()
    assert session.last_worker_pid is None and events == []
    await engine.aclose()
