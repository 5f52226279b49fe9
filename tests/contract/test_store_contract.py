"""One contract for every store backend: memory and SQLite always, PostgreSQL when a URL
is given (``conftest.py``).

A few tests take ``sql_store`` (SQLite and PostgreSQL only): migrating an older schema
and the writer's group commit are a database's own; the memory store has neither."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from tests.helpers import message_record
from zapmux.errors import Conflict, TenantExists, TenantNotFound
from zapmux.outbox import new_delivery
from zapmux.store import open_store
from zapmux.store.base import Store
from zapmux.store.memory import MemoryStore
from zapmux.store.records import (
    ClaimCursor,
    Claimed,
    CloudAccount,
    DeliveryResult,
    IdempotentAnswer,
    InboxMessage,
    MessageRecord,
    OptOut,
    SandboxQr,
    SandboxSession,
    TenantRecord,
)
from zapmux.store.schema import SCHEMA_VERSION, metadata


def _message(
    tenant: str, mid: str, status: str = "queued", direction: str = "out"
) -> MessageRecord:
    return message_record(tenant, mid, status, direction=direction)


async def finish(
    store: Store,
    delivery_id: str,
    *,
    status: str,
    attempts: int,
    last_error: str | None,
    next_attempt_at: float | None = None,
) -> None:
    """One attempt's outcome, as the deliverer writes them (in a batch of one)."""
    await store.finish_deliveries(
        [DeliveryResult(delivery_id, status, attempts, last_error, next_attempt_at)]
    )


def _delivery(chat: str, n: int, tenant_id: str = "t"):  # type: ignore[no-untyped-def]
    return new_delivery(
        event="message",
        target="flask",
        payload={"n": n},
        chat_key=chat,
        tenant_id=tenant_id,
    )


async def test_migrate_twice_is_harmless(store: Store) -> None:
    await store.migrate()
    await store.ping()


async def _back_to_version_4(conn: Any) -> None:
    """The store as version 4 left it: each outbox row with its URL and secret, and
    none of what versions 6, 7, 9 and 11 added (a tenant's raw ``detail``, a message's
    ``error_code``; scheduled sends, questions, opt-outs; who set a webhook; the index
    of questions)."""
    for index in ("ix_messages_scheduled", "ix_messages_phone", "ix_messages_questions"):
        await conn.execute(text(f"DROP INDEX {index}"))
    for table, column in (
        ("messages", "send_at"),
        ("messages", "poll"),
        ("messages", "error_code"),
        ("tenants", "opt_out_keywords"),
        ("tenants", "detail"),
        ("tenants", "webhook_by"),
        ("sandbox_inbox", "options"),
    ):
        await conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    await conn.execute(text("DROP TABLE opt_outs"))
    await conn.execute(text("ALTER TABLE outbox DROP COLUMN target"))
    await conn.execute(text("ALTER TABLE outbox ADD COLUMN url TEXT NOT NULL DEFAULT ''"))
    await conn.execute(text("ALTER TABLE outbox ADD COLUMN secret TEXT"))
    await conn.execute(text("UPDATE schema_version SET version = 4"))


async def test_a_version_1_store_is_migrated(sql_store: Store) -> None:
    engine = sql_store.engine  # type: ignore[attr-defined]
    await sql_store.create_tenant(TenantRecord(id="old"))
    async with engine.begin() as conn:  # back to how version 1 stored the outbox and tenants
        await _back_to_version_4(conn)
        await conn.execute(text("ALTER TABLE outbox DROP COLUMN replayed_at"))
        await conn.execute(text("ALTER TABLE tenants DROP COLUMN incarnation"))
        await conn.execute(text("ALTER TABLE tenants DROP COLUMN engine"))
        await conn.execute(text("DROP TABLE cloud_accounts"))
        await conn.execute(text("UPDATE schema_version SET version = 1"))
    await sql_store.migrate()
    old = await sql_store.get_tenant("old")
    assert old is not None and old.incarnation  # a tenant from before has a life too
    assert old.engine is None  # from before per-tenant engines: the server's default
    assert await sql_store.update_tenant("old", last_error="words", detail="raw")  # version 6
    assert old.webhook_by is None  # set before zapmux kept who set it (version 9)
    assert await sql_store.update_tenant(
        "old", webhook_url="http://h.example/", webhook_by="tenant"
    )
    assert (await sql_store.get_tenant("old")).webhook_by == "tenant"  # type: ignore[union-attr]
    await sql_store.add_message(_message("old", "m1"), old.incarnation)
    await sql_store.create_tenant(TenantRecord(id="new", engine="cloud"))
    assert (await sql_store.get_tenant("new")).engine == "cloud"  # type: ignore[union-attr]
    await sql_store.cloud_save(CloudAccount("new", "123", "EAAtoken", "secret", "verify"))
    await sql_store.enqueue_deliveries([_delivery("m", 1)])
    (d,) = await sql_store.claim_deliveries(1, lock_s=30)
    await finish(sql_store, d.delivery_id, status="dead", attempts=1, last_error="HTTP 400")
    assert await sql_store.retry_deliveries(delivery_id=d.delivery_id) == 1
    replayed = await sql_store.get_delivery(d.delivery_id)
    assert replayed is not None and replayed.replayed_at is not None
    async with engine.connect() as conn:
        version = (await conn.execute(text("SELECT version FROM schema_version"))).scalar()
    assert version == SCHEMA_VERSION


async def test_rows_queued_with_a_url_get_a_target_when_migrated(sql_store: Store) -> None:
    """Version 4 kept the URL each row was written with: after FLASK_URL changed, old
    rows kept posting to the old one. Migrated, they go where their kind goes now."""
    engine = sql_store.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await _back_to_version_4(conn)
        for n, (tenant, event) in enumerate([("t", "message"), ("t", "relay"), (None, "relay")]):
            await conn.execute(
                text(
                    "INSERT INTO outbox (delivery_id, tenant_id, event, url, body, chat_key,"
                    " status, attempts, created_at, next_attempt_at)"
                    " VALUES (:id, :tenant, :event, 'http://old-flask:5000/webhook/whatsapp',"
                    " '{}', :chat, 'pending', 0, 0, 0)"
                ),
                {"id": f"d{n}", "tenant": tenant, "event": event, "chat": f"c{n}"},
            )
    await sql_store.migrate()
    rows = {d.delivery_id: d.target for d in await sql_store.list_deliveries()}
    assert rows == {"d0": "tenant:t", "d1": "flask", "d2": "flask"}


async def test_a_version_4_store_is_migrated_with_its_messages(sql_store: Store) -> None:
    await sql_store.add_message(_message("t", "old", "sent"))
    engine = sql_store.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        await _back_to_version_4(conn)
    await sql_store.migrate()
    old = await sql_store.get_message("t", "old")
    assert old is not None and old.send_at is None and old.poll is None
    await sql_store.add_opt_out(OptOut("t", "5511999999999", "SAIR", 1.0))
    assert await sql_store.find_opt_out("t", ["5511999999999"]) is not None


async def _index_sql(conn: Any, name: str) -> str:
    if conn.dialect.name == "sqlite":
        query = "SELECT sql FROM sqlite_master WHERE name = :name"
    else:
        query = "SELECT indexdef FROM pg_indexes WHERE indexname = :name"
    return str((await conn.execute(text(query), {"name": name})).scalar())


async def test_a_version_9_store_keeps_incoming_messages_out_of_the_outgoing_indexes(
    sql_store: Store,
) -> None:
    """Version 10: the send queue's index and the WhatsApp ids' hold outgoing messages
    only, the chats' index of the outbox pending rows only; a store from before is
    rebuilt so, and its queue, receipts and webhooks still work."""
    engine = sql_store.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:  # the indexes as version 9 had them
        for name, table, columns in (
            ("ix_messages_queue", "messages", "tenant_id, status, id"),
            ("ix_messages_wa", "messages", "tenant_id, wa_id"),
            ("ix_outbox_chat", "outbox", "chat_key, status, id"),
        ):
            await conn.execute(text(f"DROP INDEX {name}"))
            await conn.execute(text(f"CREATE INDEX {name} ON {table} ({columns})"))
        await conn.execute(text("UPDATE schema_version SET version = 9"))
    await sql_store.add_message(_message("t", "queued"))
    await sql_store.add_message(_message("t", "sent", status="sending"))
    await sql_store.mark_sent("t", "sent", "wa-sent")
    incoming = _message("t", "in", status="received", direction="in")
    assert await sql_store.record_incoming(incoming, [])
    await sql_store.migrate()
    async with engine.connect() as conn:
        assert "'received'" in await _index_sql(conn, "ix_messages_queue")
        assert "wa_id IS NOT NULL" in await _index_sql(conn, "ix_messages_wa")
        assert "'pending'" in await _index_sql(conn, "ix_outbox_chat")
        version = (await conn.execute(text("SELECT version FROM schema_version"))).scalar()
    assert version == SCHEMA_VERSION
    assert (await sql_store.next_queued("t")).message_id == "queued"  # type: ignore[union-attr]
    assert await sql_store.count_queued("t") == 1
    assert await sql_store.apply_receipt("t", ["wa-sent"], "delivered") == ["sent"]
    queued = await sql_store.list_messages("t", status="queued")
    assert [m.message_id for m in queued] == ["queued"]
    assert [m.message_id for m in await sql_store.list_messages("t", status="received")] == ["in"]
    await sql_store.enqueue_deliveries([_delivery("t:c", 1), _delivery("t:c", 2)])
    (first,) = await sql_store.claim_deliveries(10, lock_s=30)  # one at a time per chat
    await finish(sql_store, first.delivery_id, status="delivered", attempts=1, last_error=None)
    (second,) = await sql_store.claim_deliveries(10, lock_s=30)
    assert json.loads(second.body) == {"n": 2}


async def test_a_version_10_store_gets_the_index_of_questions(sql_store: Store) -> None:
    """Version 11 indexes the questions a tenant sent: a store from before gets the
    index, and its questions are found as the last sent to a number."""
    engine = sql_store.engine  # type: ignore[attr-defined]
    question = _message("t", "ZM1", "sent")
    question.phone, question.poll = "5511999999999", '{"options": ["Sim", "Não"]}'
    await sql_store.add_message(question)
    async with engine.begin() as conn:
        await conn.execute(text("DROP INDEX ix_messages_questions"))
        await conn.execute(text("UPDATE schema_version SET version = 10"))
    url = engine.url.set(drivername=engine.url.get_backend_name())
    reopened = open_store(url.render_as_string(hide_password=False))
    await reopened.migrate()  # a new process: it knows nothing of what was asked
    try:
        async with reopened.engine.connect() as conn:  # type: ignore[attr-defined]
            assert "poll IS NOT NULL" in await _index_sql(conn, "ix_messages_questions")
            version = (await conn.execute(text("SELECT version FROM schema_version"))).scalar()
        assert version == SCHEMA_VERSION
        asked = await reopened.last_question("t", ["5511999999999"])
        assert asked is not None and asked.message_id == "ZM1"
    finally:
        await reopened.close()


async def test_the_queue_and_receipts_are_looked_up_by_their_indexes(tmp_path: Path) -> None:
    """SQLite (its EXPLAIN QUERY PLAN): the statements of a tenant's queue and of
    receipts seek in the indexes of outgoing messages (had they taken
    ix_messages_outgoing, each would walk every message the tenant sent), and the
    outbox's claims in its index of pending rows."""
    from sqlalchemy.dialects import sqlite

    from zapmux.store import sql as store_sql
    from zapmux.store import sql_outbox, sql_schedule

    sql_store = open_store(f"sqlite:///{tmp_path / 'plans.db'}")
    await sql_store.migrate()
    engine = sql_store.engine  # type: ignore[attr-defined]
    claims = sql_store._claim_statements()  # type: ignore[attr-defined]
    statements = {
        "ix_messages_queue": [store_sql._NEXT_QUEUED, store_sql._COUNT_QUEUED],
        "ix_messages_wa": [store_sql._receipt_statement(n, "read", False).stmt for n in (1, 3)],
        # the chat-head test of each claim (its smallest pending id), and the heads
        "ix_outbox_chat": [claims[0].stmt, claims[2].stmt, sql_outbox._heads_select(2)],
        # whether a tenant ever asked: a seek, not a walk through what it sent
        "ix_messages_questions": [sql_schedule._ASKED.stmt],
    }
    async with engine.connect() as conn:
        for index, stmts in statements.items():
            for stmt in stmts:
                compiled = stmt.compile(dialect=sqlite.dialect())
                args = ["x"] * len(compiled.positiontup or ())
                raw = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", tuple(args))
                plan = " ".join(str(row[3]) for row in raw)
                assert f"INDEX {index} " in plan, (str(compiled), plan)
    await sql_store.close()


async def test_cloud_credentials_one_tenant_per_number(store: Store) -> None:
    await store.create_tenant(TenantRecord(id="a", engine="cloud"))
    await store.cloud_save(CloudAccount("a", "111", "EAAold", "secret-a", "verify-a"))
    await store.cloud_save(CloudAccount("a", "111", "EAAnew", "secret-a", "verify-a"))
    with pytest.raises(Conflict):
        await store.cloud_save(CloudAccount("b", "111", "EAAb", "secret-b", "verify-b"))
    found = await store.cloud_account_for_number("111")
    assert found is not None and found.tenant_id == "a" and found.access_token == "EAAnew"
    assert "EAAnew" not in repr(found) and "secret-a" not in repr(found)
    assert await store.cloud_verify_tokens() == ["verify-a"]
    await store.delete_tenant("a")  # a new tenant inherits nothing of the old one
    assert await store.cloud_account("a") is None
    assert await store.cloud_account_for_number("111") is None
    await store.cloud_save(CloudAccount("b", "111", "EAAb", "secret-b", "verify-b"))
    await store.cloud_forget("b")
    assert await store.cloud_verify_tokens() == []


async def test_tenant_crud(store: Store) -> None:
    await store.create_tenant(TenantRecord(id="t1", token_hash="h1"))
    with pytest.raises(TenantExists):
        await store.create_tenant(TenantRecord(id="t1"))
    assert await store.update_tenant("t1", status="connected", phone="5511")
    got = await store.get_tenant("t1")
    assert got is not None and got.status == "connected" and got.phone == "5511"
    assert (await store.tenant_by_token_hash("h1")).id == "t1"  # type: ignore[union-attr]
    assert await store.tenant_by_token_hash("nope") is None
    assert [t.id for t in await store.list_tenants()] == ["t1"]
    assert not await store.update_tenant("missing", status="x")
    assert await store.delete_tenant("t1")
    assert await store.get_tenant("t1") is None


async def test_incoming_is_recorded_once_with_its_delivery(store: Store) -> None:
    message = _message("t", "in1", status="received", direction="in")
    assert await store.record_incoming(message, [_delivery("t:c", 1)])
    assert not await store.record_incoming(
        _message("t", "in1", "received", "in"), [_delivery("t:c", 2)]
    )
    assert len(await store.list_deliveries()) == 1


async def test_send_queue_is_fifo_per_tenant(store: Store) -> None:
    for mid in ("m1", "m2", "m3"):
        await store.add_message(_message("t", mid))
    await store.add_message(_message("other", "o1"))
    assert await store.count_queued("t") == 3
    first = await store.next_queued("t")
    assert first is not None and first.message_id == "m1"
    await store.update_message("t", "m1", status="sent")
    assert (await store.next_queued("t")).message_id == "m2"  # type: ignore[union-attr]
    assert await store.count_queued("other") == 1


async def test_half_sent_messages_of_one_tenant_end_failed(store: Store) -> None:
    await store.add_message(_message("t", "s1", status="sending"))
    await store.add_message(_message("other", "s2", status="sending"))
    assert await store.fail_interrupted_sends("t") == 1
    failed = await store.get_message("t", "s1")
    assert (
        failed is not None
        and failed.status == "failed"
        and "may have gone out" in (failed.error or "")
    )
    assert (await store.get_message("other", "s2")).status == "sending"  # type: ignore[union-attr]


async def test_receipts_only_move_status_forward(store: Store) -> None:
    await store.add_message(_message("t", "s1", status="sent"))
    assert await store.apply_receipt("t", ["s1"], "read") == ["s1"]
    assert await store.apply_receipt("t", ["s1"], "delivered") == []
    assert (await store.get_message("t", "s1")).status == "read"  # type: ignore[union-attr]


@pytest.mark.parametrize("count", [2, 6])  # compiled for its count; more: the general one
async def test_a_receipt_of_several_messages_moves_only_that_tenants_outgoing_ones(
    store: Store, count: int
) -> None:
    ids = [f"w{n}" for n in range(count)]
    for wa_id in ids:
        await store.add_message(_message("t", wa_id, status="sent"))
        await store.add_message(_message("other", wa_id, status="sent"))
    incoming = message_record("t", "in1", "received", direction="in", wa_id="w0")
    await store.record_incoming(incoming, [])
    await store.add_message(_message("t", "done", status="read"))
    moved = await store.apply_receipt("t", [*ids, "done", "in1"], "delivered")
    assert sorted(moved) == ids
    assert {m.message_id: m.status for m in await store.list_messages("t", limit=20)} == {
        **dict.fromkeys(ids, "delivered"),
        "in1": "received",
        "done": "read",
    }
    assert {m.status for m in await store.list_messages("other", limit=20)} == {"sent"}


async def test_a_failed_receipt_keeps_its_error(store: Store) -> None:
    await store.add_message(_message("t", "f1", status="sent"))
    moved = await store.apply_receipt("t", ["f1"], "failed", "undeliverable: not on WhatsApp")
    assert moved == ["f1"]
    failed = await store.get_message("t", "f1")
    assert failed is not None and (failed.status, failed.error) == (
        "failed",
        "undeliverable: not on WhatsApp",
    )
    assert await store.apply_receipt("t", ["f1"], "failed", "again") == []


async def test_mark_sent_drops_the_payload_and_never_moves_status_back(store: Store) -> None:
    await store.add_message(_message("t", "a"))
    await store.update_message("t", "a", status="sending", payload='{"media": "..."}')
    await store.mark_sent("t", "a", "WA-a")
    sent = await store.get_message("t", "a")
    assert sent is not None and (sent.status, sent.wa_id, sent.payload) == ("sent", "WA-a", None)
    # a delivered receipt that raced the send is kept
    await store.add_message(_message("t", "b"))
    await store.update_message("t", "b", status="sending")
    assert await store.apply_receipt("t", ["b"], "delivered") == ["b"]
    await store.mark_sent("t", "b", "b")
    assert (await store.get_message("t", "b")).status == "delivered"  # type: ignore[union-attr]


async def test_message_log_pages_newest_first(store: Store) -> None:
    for i in range(5):
        await store.add_message(_message("t", f"m{i}", status="sent"))
    await store.add_message(_message("t", "in", status="received", direction="in"))
    page = await store.list_messages("t", limit=3)
    assert [m.message_id for m in page] == ["in", "m4", "m3"]
    rest = await store.list_messages("t", limit=10, before=page[-1].id)
    assert [m.message_id for m in rest] == ["m2", "m1", "m0"]
    assert [m.message_id for m in await store.list_messages("t", direction="in")] == ["in"]


async def test_claims_are_in_order_per_chat_and_exclusive(store: Store) -> None:
    await store.enqueue_deliveries([_delivery("a", 1), _delivery("a", 2), _delivery("b", 1)])
    claimed = await store.claim_deliveries(10, lock_s=30)
    assert sorted(d.body for d in claimed) == ['{"n":1}', '{"n":1}']  # a#1 and b#1 only
    assert await store.claim_deliveries(10, lock_s=30) == []  # locked, and a#2 waits for a#1
    a1 = next(d for d in claimed if d.chat_key == "a")
    await finish(store, a1.delivery_id, status="delivered", attempts=1, last_error=None)
    nxt = await store.claim_deliveries(10, lock_s=30)
    assert [(d.chat_key, d.body) for d in nxt] == [("a", '{"n":2}')]


async def test_a_round_writes_outcomes_before_it_claims(store: Store) -> None:
    """The deliverer's round: what it finishes unblocks the next row of that chat for
    the claim made in the same round; a retry keeps its chat waiting."""
    await store.enqueue_deliveries([_delivery("a", 1), _delivery("a", 2), _delivery("b", 1)])
    await store.enqueue_deliveries([_delivery("b", 2)])
    a1, b1 = sorted(await store.claim_deliveries(10, lock_s=30), key=lambda d: d.chat_key)
    results = [
        DeliveryResult(a1.delivery_id, "delivered", 1, None),
        DeliveryResult(b1.delivery_id, "pending", 1, "HTTP 503", time.time() + 60),
    ]
    claimed = (await store.finish_and_claim(results, 10, lock_s=30)).deliveries
    assert [(d.chat_key, d.body, d.attempts) for d in claimed] == [("a", '{"n":2}', 0)]
    assert claimed[0].locked_until is not None
    assert (await store.get_delivery(a1.delivery_id)).status == "delivered"  # type: ignore[union-attr]
    assert (await store.finish_and_claim([], 10, lock_s=30)).deliveries == []  # a#2 locked


async def test_a_look_beside_the_writer_claims_what_the_writers_own_would(
    sql_store: Store,
) -> None:
    """Once a look at every pending row is slow (rows piled up behind a dead webhook),
    the next runs as a read beside the writer (``sql_outbox.SLOW_LOOK_S``), the writer
    claiming what it picked: the same rows as above, round by round."""

    async def look(results: list[DeliveryResult]) -> Claimed:
        sql_store._slow_look = True  # type: ignore[attr-defined]
        return await sql_store.finish_and_claim(results, 10, lock_s=30)

    await sql_store.enqueue_deliveries([_delivery("a", 1), _delivery("a", 2), _delivery("b", 1)])
    await sql_store.enqueue_deliveries([_delivery("b", 2)])
    first = await look([])
    a1, b1 = sorted(first.deliveries, key=lambda d: d.chat_key)
    assert first.last_id is not None  # fewer than its limit: it saw every row
    results = [
        DeliveryResult(a1.delivery_id, "delivered", 1, None),
        DeliveryResult(b1.delivery_id, "pending", 1, "HTTP 503", time.time() + 60),
    ]
    claimed = (await look(results)).deliveries
    assert [(d.chat_key, d.body, d.attempts) for d in claimed] == [("a", '{"n":2}', 0)]
    assert claimed[0].locked_until is not None
    assert (await look([])).deliveries == []  # a#2 in flight, b waits for its retry


async def test_a_round_since_the_last_looks_at_new_rows_and_finished_chats(store: Store) -> None:
    """With ``since``, a claim takes the heads of the chats named and the rows queued
    after the last one looked at (what the deliverer knows may have changed)."""
    await store.enqueue_deliveries([_delivery("a", 1), _delivery("a", 2), _delivery("b", 1)])
    first = await store.finish_and_claim([], 10, lock_s=30)
    a1, b1 = sorted(first.deliveries, key=lambda d: d.chat_key)
    await store.enqueue_deliveries([_delivery("b", 2), _delivery("c", 1), _delivery("d", 1)])
    done = [DeliveryResult(a1.delivery_id, "delivered", 1, None)]
    since = ClaimCursor(first.last_id or 0, ("a",))
    second = await store.finish_and_claim(done, 10, lock_s=30, since=since)
    # a#2 (its chat finished) and the new heads c and d; b#2 waits behind b#1
    assert sorted((d.chat_key, d.body) for d in second.deliveries) == [
        ("a", '{"n":2}'),
        ("c", '{"n":1}'),
        ("d", '{"n":1}'),
    ]
    assert (second.last_id or 0) >= (first.last_id or 0)
    b_done = [DeliveryResult(b1.delivery_id, "delivered", 1, None)]
    limited = await store.finish_and_claim(b_done, 1, lock_s=30, since=ClaimCursor(0, ("b",)))
    assert [(d.chat_key, d.body) for d in limited.deliveries] == [("b", '{"n":2}')]


async def test_a_round_takes_the_heads_of_many_finished_chats_at_once(store: Store) -> None:
    """The heads of the chats named are claimed in one statement per 64 of them (and
    a list padded to one of a few sizes): each chat's next row, none twice, nothing of
    a chat not named, whatever the count."""
    for count in (1, 3, 70):
        chats = [f"c{count}-{i}" for i in range(count)]
        await store.enqueue_deliveries([_delivery(c, n) for n in (1, 2) for c in chats])
        await store.enqueue_deliveries([_delivery(f"other{count}", 1)])
        first = await store.finish_and_claim([], 1000, lock_s=30)
        assert sorted(d.body for d in first.deliveries) == ['{"n":1}'] * (count + 1)
        done = [
            DeliveryResult(d.delivery_id, "delivered", 1, None)
            for d in first.deliveries
            if d.chat_key in chats
        ]
        since = ClaimCursor(first.last_id or 0, tuple(chats))
        second = await store.finish_and_claim(done, 1000, lock_s=30, since=since)
        assert sorted((d.chat_key, d.body) for d in second.deliveries) == sorted(
            (c, '{"n":2}') for c in chats
        )
        rest = [d for d in first.deliveries if d.chat_key not in chats]
        await store.finish_deliveries([DeliveryResult(rest[0].delivery_id, "delivered", 1, None)])
        await store.finish_deliveries(
            [DeliveryResult(d.delivery_id, "delivered", 1, None) for d in second.deliveries]
        )


async def test_a_row_queued_as_a_round_waits_its_turn_is_not_passed_over(store: Store) -> None:
    """Written as a round runs (in its batch, or committed meanwhile by another writer:
    on PostgreSQL the rounds have a lane of their own): that round claims it, or its
    cursor is still before it and the next round does."""
    await store.enqueue_deliveries([_delivery("a", 1)])
    first = await store.finish_and_claim([], 10, lock_s=30)
    since = ClaimCursor(first.last_id or 0)
    _, second = await asyncio.gather(
        store.enqueue_deliveries([_delivery("b", 1)]),
        store.finish_and_claim([], 10, lock_s=30, since=since),
    )
    claimed = [d.chat_key for d in second.deliveries]
    if not claimed:
        since = ClaimCursor(since.last_id if second.last_id is None else second.last_id)
        claimed = [d.chat_key for d in (await store.finish_and_claim([], 10, 30, since)).deliveries]
    assert claimed == ["b"]


async def test_concurrent_claims_never_share_a_row(store: Store) -> None:
    await store.enqueue_deliveries([_delivery(f"chat{i}", i) for i in range(40)])
    ids: list[str] = []
    for _ in range(10):  # racing claimers may come back empty-handed, never with a shared row
        batches = await asyncio.gather(*(store.claim_deliveries(10, lock_s=30) for _ in range(6)))
        ids += [d.delivery_id for batch in batches for d in batch]
        if len(set(ids)) == 40:
            break
    assert len(ids) == len(set(ids)) == 40


async def test_delivered_rows_are_pruned_after_retention(store: Store) -> None:
    await store.enqueue_deliveries([_delivery("x", 1), _delivery("y", 2)])
    first, second = await store.claim_deliveries(2, lock_s=30)
    await finish(store, first.delivery_id, status="delivered", attempts=1, last_error=None)
    assert await store.purge_delivered(time.time() - 60) == 0  # too recent
    assert await store.purge_delivered(time.time() + 1) == 1  # only delivered rows go
    assert [d.delivery_id for d in await store.list_deliveries()] == [second.delivery_id]


async def test_deliveries_are_counted_by_status_or_of_some_statuses(store: Store) -> None:
    await store.enqueue_deliveries([_delivery(c, n) for n, c in enumerate("abcd")])
    a, b, *_ = await store.claim_deliveries(2, lock_s=30)
    await finish(store, a.delivery_id, status="delivered", attempts=1, last_error=None)
    await finish(store, b.delivery_id, status="dead", attempts=1, last_error="HTTP 400")
    assert await store.count_deliveries() == {"pending": 2, "delivered": 1, "dead": 1}
    assert await store.count_deliveries(["pending", "dead"]) == {"pending": 2, "dead": 1}
    assert await store.count_deliveries(["delivered"]) == {"delivered": 1}


async def test_dead_deliveries_can_be_retried(store: Store) -> None:
    await store.enqueue_deliveries([_delivery("x", 1)])
    (d,) = await store.claim_deliveries(1, lock_s=30)
    await finish(store, d.delivery_id, status="dead", attempts=1, last_error="HTTP 400")
    assert [x.delivery_id for x in await store.list_deliveries(status="dead")] == [d.delivery_id]
    assert await store.count_deliveries() == {"dead": 1}
    assert await store.retry_deliveries(tenant_id="t") == 1
    again = await store.get_delivery(d.delivery_id)
    assert again is not None and again.status == "pending" and again.last_error is None


async def test_idempotency_answers_expire(store: Store) -> None:
    answer = IdempotentAnswer("t", "k", "fp", 200, '{"a":1}', time.time() - 10)
    await store.put_idempotent(answer)
    assert (await store.get_idempotent("t", "k", 60)).response == '{"a":1}'  # type: ignore[union-attr]
    assert await store.get_idempotent("t", "k", 5) is None


async def test_jid_cache(store: Store) -> None:
    await store.put_jid("t", "5511988887777", True, "551188887777@s.whatsapp.net")
    assert await store.get_jid("t", "5511988887777", 60) == (True, "551188887777@s.whatsapp.net")
    assert await store.get_jid("t", "other", 60) is None


async def test_leases_go_to_one_node_until_they_expire(store: Store) -> None:
    for tid in ("a", "b"):
        await store.create_tenant(TenantRecord(id=tid))
    assert await store.acquire_leases("node1", 0.3, 10) == ["a", "b"]
    assert await store.acquire_leases("node2", 0.3, 10) == []
    await asyncio.sleep(0.4)
    assert await store.acquire_leases("node2", 5, 10) == ["a", "b"]
    await store.release_leases("node2", ["a"])
    assert await store.acquire_leases("node1", 5, 10) == ["a"]


async def test_a_renewal_keeps_the_leases_of_tenants_being_written_for(store: Store) -> None:
    """A node renewing its leases while it records sends for its tenants keeps every one
    (on PostgreSQL a send holds its tenant's row, as store.guard says, meanwhile)."""
    life = (await store.create_tenant(TenantRecord(id="busy"))).incarnation
    assert await store.acquire_leases("node1", 60, 10) == ["busy"]
    sending = True

    async def sends() -> None:
        n = 0
        while sending:
            batch = [store.add_message(_message("busy", f"m{n}-{i}"), life) for i in range(10)]
            await asyncio.gather(*batch)
            n += 1

    task = asyncio.create_task(sends())
    try:
        renewed = [await store.acquire_leases("node1", 60, 10) for _ in range(30)]
    finally:
        sending = False
        await task
    assert renewed == [["busy"]] * 30


async def test_sandbox_state(store: Store) -> None:
    now = time.time()
    await store.sandbox_issue_qr(SandboxQr("c1", "t", now, now + 60, True))
    await store.sandbox_issue_qr(SandboxQr("c2", "t", now, now + 60, True))
    assert (await store.sandbox_find_qr("c1")).current is False  # type: ignore[union-attr]
    assert (await store.sandbox_find_qr("c2")).current is True  # type: ignore[union-attr]
    await store.sandbox_save_session(SandboxSession("t", "5511", "X", now))
    assert await store.sandbox_set_network("t", True)
    assert (await store.sandbox_session("t")).network_down is True  # type: ignore[union-attr]
    await store.sandbox_push("t", '{"kind":"message"}')
    pending = await store.sandbox_pending("t")
    assert [e for _, e in pending] == ['{"kind":"message"}']
    await store.sandbox_ack(pending[0][0])
    assert await store.sandbox_pending("t") == []
    await store.sandbox_wipe("t")
    assert await store.sandbox_session("t") is None


async def test_outcomes_are_written_in_one_batch(store: Store) -> None:
    await store.enqueue_deliveries([_delivery("a", 1), _delivery("b", 1), _delivery("c", 1)])
    a, b, c = sorted(await store.claim_deliveries(10, lock_s=30), key=lambda d: d.chat_key)
    later = time.time() + 60
    await store.finish_deliveries(
        [
            DeliveryResult(a.delivery_id, "delivered", 1, None),
            DeliveryResult(b.delivery_id, "pending", 1, "HTTP 503", later),
            DeliveryResult(c.delivery_id, "dead", 1, "HTTP 400"),
        ]
    )
    got = {d.chat_key: d for d in await store.list_deliveries()}
    assert got["a"].status == "delivered" and got["a"].delivered_at is not None
    assert got["b"].status == "pending" and got["b"].next_attempt_at == pytest.approx(later)
    assert got["b"].last_error == "HTTP 503" and got["b"].locked_until is None
    assert got["c"].status == "dead" and got["c"].next_attempt_at == c.next_attempt_at
    assert await store.claim_deliveries(10, lock_s=30) == []  # b waits for its time


async def test_released_claims_are_claimable_again(store: Store) -> None:
    """What a process killed mid-delivery leaves locked comes back on release."""
    await store.enqueue_deliveries([_delivery("a", 1), _delivery("a", 2), _delivery("b", 1)])
    claimed = await store.claim_deliveries(10, lock_s=300)
    assert len(claimed) == 2
    assert await store.claim_deliveries(10, lock_s=300) == []
    assert await store.release_deliveries([claimed[0].delivery_id]) == 1
    again = await store.claim_deliveries(10, lock_s=300)
    assert [d.delivery_id for d in again] == [claimed[0].delivery_id]
    assert await store.release_deliveries() == 2
    assert len(await store.claim_deliveries(10, lock_s=300)) == 2


async def test_replaying_one_delivery_whatever_its_state(store: Store) -> None:
    await store.enqueue_deliveries([_delivery("a", 1)])
    (d,) = await store.claim_deliveries(1, lock_s=30)
    assert await store.retry_deliveries(delivery_id=d.delivery_id) == 0  # in flight
    await finish(store, d.delivery_id, status="delivered", attempts=1, last_error=None)
    assert await store.retry_deliveries(delivery_id=d.delivery_id) == 1  # sent again
    assert [x.delivery_id for x in await store.claim_deliveries(1, lock_s=30)] == [d.delivery_id]
    later = time.time() + 600
    await finish(
        store,
        d.delivery_id,
        status="pending",
        attempts=2,
        last_error="HTTP 503",
        next_attempt_at=later,
    )
    assert await store.retry_deliveries(delivery_id=d.delivery_id) == 1  # now, not later
    assert len(await store.claim_deliveries(1, lock_s=30)) == 1


async def test_writes_that_arrive_together_share_one_commit(sql_store: Store) -> None:
    writer = sql_store.writer  # type: ignore[attr-defined]
    before = writer.batches
    await asyncio.gather(*(sql_store.add_message(_message("t", f"g{n}")) for n in range(50)))
    assert len(await sql_store.list_messages("t", limit=100)) == 50
    assert writer.batches - before < 50 / 4  # a share of a commit each, not one each


async def test_a_failing_write_spoils_none_of_its_batch(store: Store) -> None:
    await store.record_incoming(_message("t", "dup", "received", "in"), [])
    outcomes = await asyncio.gather(
        store.add_message(_message("t", "before")),
        store.record_incoming(_message("t", "dup", "received", "in"), [_delivery("c", 1)]),
        store.add_message(_message("t", "dup")),  # the same id again: refused
        store.add_message(_message("t", "after")),
        return_exceptions=True,
    )
    assert outcomes[1] is False
    assert isinstance(outcomes[2], Exception)
    ids = {m.message_id for m in await store.list_messages("t")}
    assert ids == {"dup", "before", "after"}
    assert await store.count_deliveries() == {}  # the duplicate's webhook was not queued


async def test_a_write_is_visible_to_reads_once_it_returns(store: Store) -> None:
    for n in range(20):
        await store.add_message(_message("t", f"v{n}"))
        assert await store.get_message("t", f"v{n}") is not None


async def test_tenants_are_listed_in_pages_and_counted_by_status(store: Store) -> None:
    for name, status in (("a", "connected"), ("b", "stopped"), ("c", "connected")):
        await store.create_tenant(TenantRecord(id=name, status=status))
    assert [t.id for t in await store.list_tenants(limit=2)] == ["a", "b"]
    assert [t.id for t in await store.list_tenants(after="b", limit=2)] == ["c"]
    assert await store.count_tenants() == {"connected": 2, "stopped": 1}


async def _rows_of(store: Store, tenant_id: str) -> dict[str, int]:
    """How many rows each table holds for ``tenant_id`` (only the non-empty ones)."""
    if isinstance(store, MemoryStore):  # its tables are named as the SQL ones
        return store.tables.rows_of(tenant_id)
    engine = store.engine  # type: ignore[attr-defined]
    counts = {}
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if "tenant_id" in table.c:
                n = (
                    await conn.execute(select(func.count()).where(table.c.tenant_id == tenant_id))
                ).scalar()
                if n:
                    counts[table.name] = n
    return counts


async def test_a_deleted_tenant_leaves_nothing_behind(store: Store) -> None:
    tenant = await store.create_tenant(TenantRecord(id="d"))
    life = tenant.incarnation
    await store.add_message(_message("d", "q1"), life)
    await store.record_incoming(
        _message("d", "in1", status="received", direction="in"),
        [new_delivery(event="message", target="flask", payload={}, chat_key="d:c",
                      tenant_id="d")],
        life,
    )  # fmt: skip
    await store.save_media("d", "in1", "image/png", None, b"png", life)
    now = time.time()
    await store.put_idempotent(IdempotentAnswer("d", "k", "f", 202, "{}", now), life)
    await store.put_jid("d", "5511988887777", True, "5511988887777@s.whatsapp.net", life)
    await store.add_dead_inbound("d", "{}", "boom")
    await store.sandbox_save_session(SandboxSession("d", "5511", "X", now))
    await store.sandbox_issue_qr(SandboxQr("qr-d", "d", now, now + 60, True))
    await store.sandbox_add_pair_code("ABCD-EFGH", "d", "5511", now + 60)
    await store.sandbox_push("d", '{"kind":"message"}')
    await store.sandbox_deliver_to_phone(InboxMessage("5511", "d", "q0", now, text="oi"))
    assert len(await _rows_of(store, "d")) == 11  # every table of a tenant's life
    assert await store.delete_tenant("d")
    assert await _rows_of(store, "d") == {}


async def test_writes_for_a_deleted_life_of_a_tenant_are_refused(store: Store) -> None:
    old = (await store.create_tenant(TenantRecord(id="d"))).incarnation
    await store.add_message(_message("d", "before"), old)  # a write for its life first
    await store.delete_tenant("d")
    with pytest.raises(TenantNotFound):
        await store.add_message(_message("d", "late"), old)
    new = (await store.create_tenant(TenantRecord(id="d"))).incarnation
    assert new != old
    answer = IdempotentAnswer("d", "k", "f", 202, "{}", time.time())
    for write in (
        store.add_message(_message("d", "late"), old),
        store.record_incoming(_message("d", "i", status="received", direction="in"), [], old),
        store.put_idempotent(answer, old),
        store.put_jid("d", "5511988887777", True, None, old),
        store.save_media("d", "i", "image/png", None, b"x", old),
        store.enqueue_deliveries([_delivery("d:c", 1, tenant_id="d")], old),
    ):
        with pytest.raises(TenantNotFound):
            await write
    assert await _rows_of(store, "d") == {}  # nothing of the old life reached the new one
    await store.add_message(_message("d", "fresh"), new)
    assert [m.message_id for m in await store.list_messages("d")] == ["fresh"]


async def test_sends_racing_a_delete_leave_nothing(store: Store) -> None:
    """Every write either landed before the delete (and went with it) or was refused."""
    life = (await store.create_tenant(TenantRecord(id="d"))).incarnation

    async def sender(lane: int) -> int:
        for n in range(10_000):  # until the delete refuses it
            try:
                await store.add_message(_message("d", f"m{lane}-{n}"), life)
            except TenantNotFound:
                return n
        raise AssertionError("the delete never refused a write")

    async def delete() -> None:
        await asyncio.sleep(0.1)
        assert await store.delete_tenant("d")

    *sent, _ = await asyncio.gather(*(sender(lane) for lane in range(8)), delete())
    assert any(sent)  # writes landed before the delete; every lane ended refused
    assert await _rows_of(store, "d") == {}


async def test_a_delete_between_writes_handed_in_together_refuses_the_later_ones(
    store: Store,
) -> None:
    """Writes, a delete and writes again, all handed in at once (on SQL one batch of the
    writer): a life confirmed before the delete is checked again after it."""
    life = (await store.create_tenant(TenantRecord(id="d"))).incarnation
    before = [store.add_message(_message("d", f"b{n}"), life) for n in range(3)]
    after = [store.add_message(_message("d", f"a{n}"), life) for n in range(3)]
    results = await asyncio.gather(
        *before, store.delete_tenant("d"), *after, return_exceptions=True
    )
    assert all(isinstance(r, TenantNotFound) for r in results[4:])
    assert await _rows_of(store, "d") == {}


async def test_a_message_and_its_idempotency_key_are_written_together(store: Store) -> None:
    now = time.time()
    key = IdempotentAnswer("t", "k1", "f", 0, '{"message_id": "m1"}', now)
    await store.add_message(_message("t", "m1"), None, key)
    assert (await store.get_idempotent("t", "k1", 60)) is not None
    again = IdempotentAnswer("t", "k2", "f", 0, '{"message_id": "m1"}', now)
    with pytest.raises(IntegrityError):  # the message is refused: so is its key
        await store.add_message(_message("t", "m1"), None, again)
    assert await store.get_idempotent("t", "k2", 60) is None


async def test_nodes_and_one_tenants_lease(store: Store) -> None:
    await store.heartbeat("n1", "http://n1:4000")
    await store.heartbeat("n1", "http://n1:4001")  # a node's latest word counts
    assert await store.node_url("n1", 60) == "http://n1:4001"
    assert await store.node_url("n2", 60) is None
    assert await store.live_nodes(60) == [("n1", "http://n1:4001")]
    assert await store.live_nodes(-1) == []  # no heartbeat is from the future
    await store.create_tenant(TenantRecord(id="t"))
    assert await store.tenant_owner("t") == (None, 0.0)
    assert await store.tenant_owner("missing") is None
    assert await store.acquire_lease("n1", "t", 30)
    assert not await store.acquire_lease("n2", "t", 30)
    assert not await store.acquire_lease("n1", "missing", 30)
    owner, until = await store.tenant_owner("t")  # type: ignore[misc]
    assert owner == "n1" and until > time.time() + 20
    await store.release_leases("n1")
    assert await store.tenant_owner("t") == (None, 0.0)


async def test_inbound_events_set_aside_are_listed_and_dropped(store: Store) -> None:
    first = await store.add_dead_inbound("t", '{"kind": "message"}', "bad\x00byte")
    second = await store.add_dead_inbound("u", "not json", "boom")
    assert first != second
    assert [d.id for d in await store.list_dead_inbound()] == [first, second]
    (only,) = await store.list_dead_inbound(tenant_id="u")
    assert only.public()["event"] == "not json"
    kept = await store.get_dead_inbound(first)
    assert kept is not None and kept.error == "bad\\x00byte"  # PostgreSQL refuses NUL
    await store.drop_dead_inbound(first)
    assert await store.get_dead_inbound(first) is None
    assert [d.id for d in await store.list_dead_inbound(limit=1)] == [second]


async def test_media_is_replaced_and_keys_forgotten(store: Store) -> None:
    await store.save_media("t", "m", "image/png", None, b"one")
    await store.save_media("t", "m", "image/jpeg", "a.jpg", b"two")
    assert await store.get_media("t", "m") == ("image/jpeg", "a.jpg", b"two")
    assert await store.get_media("u", "m") is None
    await store.put_idempotent(IdempotentAnswer("t", "k", "f", 202, "{}", time.time()))
    await store.forget_idempotent("t", "k")
    assert await store.get_idempotent("t", "k", 60) is None


async def test_a_queued_filter_shows_messages_being_sent(store: Store) -> None:
    await store.add_message(_message("t", "q"))
    await store.add_message(_message("t", "s", status="sending"))
    await store.add_message(_message("t", "x", status="sent"))
    queued = await store.list_messages("t", status="queued")
    assert [m.message_id for m in queued] == ["s", "q"]


async def test_dead_deliveries_are_discarded_and_one_unless_in_flight(store: Store) -> None:
    await store.enqueue_deliveries([_delivery("a", 1), _delivery("b", 1, tenant_id="u")])
    await store.enqueue_deliveries([_delivery("c", 1)])
    a, b, c = sorted(await store.claim_deliveries(10, lock_s=30), key=lambda d: d.chat_key)
    for d in (a, b):
        await finish(store, d.delivery_id, status="dead", attempts=1, last_error="HTTP 400")
    assert await store.discard_deliveries(tenant_id="u") == 1
    assert await store.discard_deliveries(delivery_id=c.delivery_id) == 0  # in flight
    assert await store.release_deliveries([]) == 0
    assert await store.release_deliveries([c.delivery_id]) == 1
    assert await store.discard_deliveries(delivery_id=c.delivery_id) == 1
    assert await store.discard_deliveries() == 1  # a, the last dead one
    assert await store.list_deliveries() == []


async def test_the_sandbox_phones_and_their_inboxes(store: Store) -> None:
    now = time.time()
    await store.sandbox_set_phone("5511", True)
    await store.sandbox_set_phone("5522", False)
    await store.sandbox_set_phone("5522", True)
    assert await store.sandbox_phones(["5511", "5522", "5533"]) == {"5511": True, "5522": True}
    message = InboxMessage("5511", "t", "m1", now, text="oi", extra={"kept": "no"})
    receipt = await store.sandbox_deliver_to_phone(message, '{"kind":"receipt"}')
    assert receipt is not None and await store.sandbox_pending("t") == [
        (receipt, '{"kind":"receipt"}')
    ]
    assert await store.sandbox_deliver_to_phone(InboxMessage("5511", "t", "m2", now)) is None
    assert [event for _, event in await store.sandbox_pending("t")] == ['{"kind":"receipt"}']
    (first, _) = await store.sandbox_inbox("5511")
    assert first.text == "oi" and first.extra == {} and first.read is False
    assert [m.message_id for m in await store.sandbox_mark_read("5511")] == ["m1", "m2"]
    assert await store.sandbox_mark_read("5511") == []
    assert await store.sandbox_inbox("5511", unread_only=True) == []
    await store.sandbox_add_pair_code("AAAA-BBBB", "t", "5511", now + 60)
    await store.sandbox_add_pair_code("CCCC-DDDD", "t", "5511", now + 60)  # one a tenant
    assert await store.sandbox_take_pair_code("AAAA-BBBB") is None
    assert await store.sandbox_take_pair_code("CCCC-DDDD") == ("t", "5511", now + 60)
    assert await store.sandbox_take_pair_code("CCCC-DDDD") is None
    await store.sandbox_issue_qr(SandboxQr("q", "t", now, now + 60, True))
    await store.sandbox_retire_qr("t")
    assert (await store.sandbox_find_qr("q")).current is False  # type: ignore[union-attr]
    await store.sandbox_reset()
    assert await store.sandbox_phones(["5511"]) == {}
    assert await store.sandbox_inbox("5511") == []
    assert await store.sandbox_pending("t") == []


async def test_records_read_or_written_stay_the_callers_own(store: Store) -> None:
    written = await store.create_tenant(TenantRecord(id="t"))
    written.status = "connected"
    read = await store.get_tenant("t")
    assert read is not None and read.status == "stopped"
    read.phone = "5511"
    assert (await store.get_tenant("t")).phone is None  # type: ignore[union-attr]
