"""PostgreSQL: a new database's statistics are brought up while it fills, so the plans
its prepared statements keep find a message by its key, not by walking the tenant's
messages (``store.postgres.Statistics``); and the plans the outbox's claims keep from
their first runs, on an empty outbox, seek each chat's head; and a read is its
statements alone, with no transaction (BEGIN, ROLLBACK: two more round trips) around
them."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Connection, text

from tests.contract.conftest import PG_URL
from tests.helpers import drop_pg_database, fresh_pg_database
from zapmux.store import open_store
from zapmux.store.postgres import PostgresStore
from zapmux.store.records import MessageRecord, TenantRecord

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="set ZAPMUX_TEST_DATABASE_URL=postgresql://… (.ci/run does)"
)

#: The statement a send's outcome runs (``mark_sent``), by the message's key.
BY_KEY = "UPDATE messages SET status = 'sent' WHERE tenant_id = $1 AND message_id = $2"


@pytest.fixture
async def pg() -> AsyncIterator[tuple[PostgresStore, str]]:
    assert PG_URL
    url, name = await fresh_pg_database(PG_URL)
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    await store.migrate()
    await store.create_tenant(TenantRecord(id="t1", status="stopped"))
    try:
        yield store, url
    finally:
        await store.close()
        await drop_pg_database(PG_URL, name)


async def write_messages(store: PostgresStore, first: int, count: int) -> None:
    now = time.time()
    await asyncio.gather(
        *(
            store.add_message(
                MessageRecord("t1", f"m{n}", "out", f"55119{n % 50:08d}@s.whatsapp.net",
                              "text", "sent", now, phone=f"55119{n % 50:08d}", text="oi")
            )
            for n in range(first, first + count)
        )
    )  # fmt: skip


async def generic_plan(url: str) -> str:
    """The plan PostgreSQL keeps for a prepared update by key after its first runs."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute(f"PREPARE by_key(varchar, varchar) AS {BY_KEY}")
        rows = await conn.fetch("EXPLAIN EXECUTE by_key('t1', 'm1')")
        return "\n".join(row[0] for row in rows)
    finally:
        await conn.close()


async def last_analyzed(url: str, table: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(
            "SELECT coalesce(last_analyze, last_autoanalyze) FROM pg_stat_user_tables"
            " WHERE relname = $1",
            table,
        )
    finally:
        await conn.close()


async def test_a_new_database_is_analyzed_while_it_fills_and_keeps_a_plan_by_key(
    pg: tuple[PostgresStore, str],
) -> None:
    store, url = pg
    store.statistics.every = 100
    written = 0
    deadline = time.monotonic() + 60
    while "messages" not in store.statistics.analyzed:
        assert time.monotonic() < deadline, "the messages table was never analyzed"
        await write_messages(store, written, 200)
        written += 200
        await asyncio.sleep(0.1)  # its look runs beside the writes
    assert await last_analyzed(url, "messages") is not None
    assert "uq_messages_tenant_message" in await generic_plan(url)


async def test_a_table_someone_else_vacuums_is_skipped_not_waited_for(
    pg: tuple[PostgresStore, str],
) -> None:
    store, url = pg
    vacuum = await asyncpg.connect(url)  # holds the lock a VACUUM or ANALYZE takes
    try:
        await vacuum.execute("BEGIN; LOCK TABLE messages IN SHARE UPDATE EXCLUSIVE MODE")
        written, behind = 0, []
        deadline = time.monotonic() + 60
        while "messages" not in behind:
            assert time.monotonic() < deadline, "the messages table never fell behind"
            await write_messages(store, written, 200)
            written += 200
            behind = await asyncio.wait_for(store.statistics.look(), 5)  # does not wait
        assert await last_analyzed(url, "messages") is None
        await write_messages(store, written, 10)  # writes go on meanwhile
    finally:
        await vacuum.execute("ROLLBACK")
        await vacuum.close()
    assert "messages" in await store.statistics.look()
    assert await last_analyzed(url, "messages") is not None


async def test_a_claim_planned_on_an_empty_outbox_seeks_each_chat_head(
    pg: tuple[PostgresStore, str],
) -> None:
    """The plans a claim keeps from its first runs on a new outbox (empty, never
    analyzed): whether a row is its chat's oldest pending one is a seek by chat in
    ix_outbox_chat. As a NOT EXISTS it became an anti-join that walked the index's
    every pending row for each row looked at, and webhooks fell seconds behind."""
    store, url = pg
    full, _, newer = store._claim_statements()
    values = {"now": "1e12", "until": "1e12", "limit": "16", "after": "0"}
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        for n, stmt in enumerate((full.stmt, newer.stmt)):
            compiled = stmt.compile(dialect=store.engine.dialect)
            await conn.execute(f"PREPARE claim{n} AS {compiled}")
            names = compiled.positiontup or ()
            args = ", ".join(values.get(name, f"'{compiled.params[name]}'") for name in names)
            plan = "\n".join(
                row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE claim{n}({args})")
            )
            assert re.search(r"ix_outbox_chat .*\n\s*Index Cond: \(\(chat_key = ", plan), plan
    finally:
        await conn.close()


async def test_a_read_runs_without_a_transaction_around_it(pg: tuple[PostgresStore, str]) -> None:
    """Each statement of a read is its own transaction: ``now()`` (the transaction's
    start) moves between two statements of one read."""
    store, _ = pg

    def twice(conn: Connection) -> list[object]:
        first = conn.execute(text("SELECT now(), pg_sleep(0.01)")).scalar()
        return [first, conn.execute(text("SELECT now()")).scalar()]

    first, second = await store.reader.read(twice)
    assert second > first  # type: ignore[operator]
