"""The store on SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Dialect differences (connection setup, claiming with ``SKIP LOCKED``, notifications)
live in the ``sqlite`` and ``postgres`` subclasses.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from zapmux.errors import TenantExists
from zapmux.states import PROGRESS, MessageStatus, moved_by
from zapmux.store import schema as t
from zapmux.store.base import TENANT_CHANGES, Store
from zapmux.store.driver import DriverStatement
from zapmux.store.guard import in_life, insert_in_life, life_insert, lives_changed
from zapmux.store.records import (
    SEND_INTERRUPTED,
    DeadInbound,
    Delivery,
    IdempotentAnswer,
    MessageRecord,
    TenantRecord,
)
from zapmux.store.rows import record as _record
from zapmux.store.rows import values as _values
from zapmux.store.sql_base import SqlTables, literal_list
from zapmux.store.sql_cloud import CloudTables
from zapmux.store.sql_optouts import OptOutTables
from zapmux.store.sql_outbox import OutboxTables
from zapmux.store.sql_sandbox import SandboxTables
from zapmux.store.sql_schedule import ScheduleTables
from zapmux.store.writer import Lanes, Reader, Writer

#: Every table with rows of one tenant's life (removed with the tenant).
_TENANT_TABLES = (
    t.messages,
    t.outbox,
    t.idempotency,
    t.jid_cache,
    t.media,
    t.inbound_dead,
    t.opt_outs,
    t.cloud_accounts,
    t.sandbox_sessions,
    t.sandbox_qr,
    t.sandbox_pair_codes,
    t.sandbox_pending,
    t.sandbox_inbox,
)


class SqlStore(
    OutboxTables, SandboxTables, CloudTables, ScheduleTables, OptOutTables, SqlTables, Store
):
    """Everything zapmux persists, over one SQLAlchemy async engine: reads through its
    pool, every write through the one :class:`Writer` (group commit)."""

    def __init__(self, engine: AsyncEngine, sync_engine: Engine | None = None) -> None:
        self.engine = engine
        self.writer: Writer | Lanes = Writer(engine, sync_engine)
        self.reader = Reader(engine, sync_engine)
        self._claim_stmt: Any = None
        self._heads_stmt = {}
        self._asked = {}

    # --- lifecycle -----------------------------------------------------------------
    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(t.metadata.create_all)
            version = (await conn.execute(select(t.schema_version.c.version))).scalar()
            if version is None:  # a new store: create_all made it whole
                await conn.execute(insert(t.schema_version).values(version=t.SCHEMA_VERSION))
                return
            for step in range(version + 1, t.SCHEMA_VERSION + 1):
                for statement in t.MIGRATIONS[step]:
                    await conn.execute(text(statement))
            if version < t.SCHEMA_VERSION:
                await conn.execute(update(t.schema_version).values(version=t.SCHEMA_VERSION))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        await self.writer.close()
        self.reader.close()
        await self.engine.dispose()

    # --- tenants -------------------------------------------------------------------
    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        now = time.time()
        tenant.created_at = tenant.updated_at = now
        tenant.incarnation = tenant.incarnation or secrets.token_hex(8)
        stmt = insert(t.tenants).values(_values(tenant, skip=()))

        def job(conn: Connection) -> None:
            lives_changed(conn)
            conn.execute(stmt)
            self._notify(conn, TENANT_CHANGES, tenant.id)

        try:
            await self._write(job)
        except IntegrityError as exc:
            raise TenantExists(f"tenant {tenant.id!r} already exists") from exc
        return tenant

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        return await self._record_of(TenantRecord, _TENANT, {"k_id": tenant_id})

    async def tenant_by_token_hash(self, token_hash: str) -> TenantRecord | None:
        return await self._find(TenantRecord, t.tenants, token_hash=token_hash)

    async def list_tenants(
        self, after: str | None = None, limit: int | None = None
    ) -> list[TenantRecord]:
        stmt = select(t.tenants).order_by(t.tenants.c.id)
        if after is not None:
            stmt = stmt.where(t.tenants.c.id > after)
        if limit is not None:
            stmt = stmt.limit(limit)
        return await self._records(TenantRecord, stmt)

    async def count_tenants(self) -> dict[str, int]:
        c = t.tenants.c
        rows = await self._all(select(c.status, func.count()).group_by(c.status))
        return {str(status): int(n) for status, n in rows}

    async def update_tenant(self, tenant_id: str, **fields: Any) -> bool:
        fields["updated_at"] = time.time()
        stmt = update(t.tenants).where(t.tenants.c.id == tenant_id).values(**fields)

        def job(conn: Connection) -> bool:
            lives_changed(conn)
            if not conn.execute(stmt).rowcount:
                return False
            self._notify(conn, TENANT_CHANGES, tenant_id)
            return True

        return await self._write(job)

    async def delete_tenant(self, tenant_id: str) -> bool:
        """The tenant and everything of its life, so that nothing passes to a new tenant
        of the same id. Its own row goes first: see ``store.guard`` for why."""

        def job(conn: Connection) -> bool:
            lives_changed(conn)
            result = conn.execute(delete(t.tenants).where(t.tenants.c.id == tenant_id))
            for table in _TENANT_TABLES:
                conn.execute(delete(table).where(table.c.tenant_id == tenant_id))
            self._notify(conn, TENANT_CHANGES, tenant_id)
            return bool(result.rowcount)

        return await self._write(job)

    # --- leases (which node runs which tenant) -------------------------------------
    async def acquire_leases(self, node: str, lease_s: float, limit: int) -> list[str]:
        now = time.time()
        free = or_(
            t.tenants.c.owner.is_(None),
            t.tenants.c.owner == node,
            t.tenants.c.lease_until < now,
        )
        pick = select(t.tenants.c.id).where(free).order_by(t.tenants.c.id).limit(limit)

        def job(conn: Connection) -> list[str]:
            ids = list((conn.execute(self._lock_leases(pick))).scalars())
            if not ids:
                return []
            claimed = conn.execute(
                update(t.tenants)
                .where(and_(t.tenants.c.id.in_(ids), free))
                .values(owner=node, lease_until=now + lease_s)
                .returning(t.tenants.c.id)
            )
            return sorted(claimed.scalars())

        return await self._write(job)

    async def heartbeat(self, node: str, url: str) -> None:
        await self._replace(
            t.nodes, {"id": node}, {"id": node, "url": url, "heartbeat_at": time.time()}
        )

    async def node_url(self, node: str, max_age_s: float) -> str | None:
        row = await self._fresh(t.nodes, "heartbeat_at", max_age_s, id=node)
        return row.url if row else None

    async def live_nodes(self, max_age_s: float) -> list[tuple[str, str]]:
        n = t.nodes.c
        rows = await self._all(
            select(n.id, n.url).where(n.heartbeat_at > time.time() - max_age_s).order_by(n.id)
        )
        return [(r.id, r.url) for r in rows]

    async def tenant_owner(self, tenant_id: str) -> tuple[str | None, float] | None:
        c = t.tenants.c
        row = await self._one(select(c.owner, c.lease_until).where(c.id == tenant_id))
        return (row.owner, row.lease_until or 0.0) if row else None

    async def acquire_lease(self, node: str, tenant_id: str, lease_s: float) -> bool:
        now = time.time()
        c = t.tenants.c
        free = or_(c.owner.is_(None), c.owner == node, c.lease_until < now)
        stmt = (
            update(t.tenants)
            .where(and_(c.id == tenant_id, free))
            .values(owner=node, lease_until=now + lease_s)
        )
        return bool(await self._execute(stmt))

    async def release_leases(self, node: str, tenant_ids: Sequence[str] | None = None) -> None:
        stmt = update(t.tenants).where(t.tenants.c.owner == node)
        if tenant_ids is not None:
            stmt = stmt.where(t.tenants.c.id.in_(list(tenant_ids)))
        await self._execute(stmt.values(owner=None, lease_until=None))

    def _lock(self, stmt: Any) -> Any:
        """Row locking for claims; PostgreSQL adds FOR UPDATE SKIP LOCKED."""
        return stmt

    def _lock_leases(self, stmt: Any) -> Any:
        """Row locking for taking leases; PostgreSQL adds FOR NO KEY UPDATE SKIP LOCKED."""
        return stmt

    # --- messages and the send queue -----------------------------------------------
    async def add_message(
        self,
        message: MessageRecord,
        incarnation: str | None = None,
        key: IdempotentAnswer | None = None,
    ) -> MessageRecord:
        message.created_at = message.updated_at = time.time()
        self._asks(message)

        def job(conn: Connection) -> int | None:
            if key is None:  # the check of its tenant's life and the insert, in one
                row = _values(message)
                found = insert_in_life(
                    conn, _INSERT_MESSAGE_IN_LIFE, row, message.tenant_id, incarnation
                )
                if found is not None:
                    return int(found[0][0])
            with in_life(conn, message.tenant_id, incarnation):
                if key is not None:
                    remember_answer(conn, key)
                return insert_message(conn, message)

        message.id = await self._write(job, message.tenant_id, quick=True)
        return message

    async def record_incoming(
        self,
        message: MessageRecord,
        deliveries: Sequence[Delivery],
        incarnation: str | None = None,
    ) -> bool:
        message.created_at = message.updated_at = time.time()

        def job(conn: Connection) -> None:
            with in_life(conn, message.tenant_id, incarnation):
                insert_message(conn, message)
                self._insert_deliveries(conn, deliveries)

        try:
            await self._write(job, quick=True)
        except IntegrityError:
            return False
        return True

    async def save_media(
        self,
        tenant_id: str,
        message_id: str,
        mimetype: str,
        filename: str | None,
        data: bytes,
        incarnation: str | None = None,
    ) -> None:
        key = {"tenant_id": tenant_id, "message_id": message_id}
        row = {**key, "mimetype": mimetype, "filename": filename, "data": data}
        await self._replace(t.media, key, row, incarnation)

    async def get_media(
        self, tenant_id: str, message_id: str
    ) -> tuple[str, str | None, bytes] | None:
        row = await self._one(_MEDIA, {"k_tenant": tenant_id, "k_message": message_id})
        return (row.mimetype, row.filename, row.data) if row else None

    async def get_message(self, tenant_id: str, message_id: str) -> MessageRecord | None:
        params = {"k_tenant": tenant_id, "k_message": message_id}
        return await self._record_of(MessageRecord, _MESSAGE, params)

    async def list_messages(
        self,
        tenant_id: str,
        direction: str | None = None,
        limit: int = 50,
        before: int | None = None,
        status: str | None = None,
    ) -> list[MessageRecord]:
        m = t.messages.c
        stmt = select(t.messages).where(m.tenant_id == tenant_id)
        if direction:
            stmt = stmt.where(m.direction == direction)
        if status and status != MessageStatus.RECEIVED:  # by ix_messages_queue
            stmt = stmt.where(t.NOT_RECEIVED)
        if status:  # "sending" is shown as "queued" (MessageRecord.public)
            stmt = stmt.where(
                m.status.in_(
                    [MessageStatus.QUEUED, MessageStatus.SENDING]
                    if status == MessageStatus.QUEUED
                    else [status]
                )
            )
        if before is not None:
            stmt = stmt.where(m.id < before)
        return await self._records(MessageRecord, stmt.order_by(m.id.desc()).limit(limit))

    async def next_queued(self, tenant_id: str) -> MessageRecord | None:
        return await self._record_of(MessageRecord, _NEXT_QUEUED, {"k_tenant": tenant_id})

    async def count_queued(self, tenant_id: str) -> int:
        row = await self._one(_COUNT_QUEUED, {"k_tenant": tenant_id})
        return int(row[0] or 0) if row else 0

    async def update_message(self, tenant_id: str, message_id: str, **fields: Any) -> bool:
        if fields.get("poll") is not None:  # (a question's own, kept with it once sent)
            self._asked[tenant_id] = True
        fields["updated_at"] = time.time()
        m = t.messages.c
        stmt = (
            update(t.messages)
            .where(and_(m.tenant_id == tenant_id, m.message_id == message_id))
            .values(**fields)
        )
        return bool(await self._execute(stmt))

    async def mark_sent(
        self,
        tenant_id: str,
        message_id: str,
        wa_id: str,
        answer: IdempotentAnswer | None = None,
        incarnation: str | None = None,
    ) -> None:
        params = {"k_tenant": tenant_id, "k_message": message_id, "k_wa_id": wa_id}

        def job(conn: Connection) -> None:
            if answer is None:
                mark_sent(conn, params)
                return
            with in_life(conn, tenant_id, incarnation):
                mark_sent(conn, params)
                remember_answer(conn, answer)

        await self._write(job, tenant_id, quick=True)

    async def apply_receipt(
        self, tenant_id: str, wa_ids: Sequence[str], status: str, error: str | None = None
    ) -> list[str]:
        """Move sent messages forward (sent → delivered → read, or failed with ``error``);
        the message ids moved."""

        def job(conn: Connection) -> list[str]:
            return apply_receipt(conn, tenant_id, wa_ids, status, error)

        return await self._write(job, tenant_id, quick=True)

    # --- idempotency and the JID cache ---------------------------------------------
    async def get_idempotent(
        self, tenant_id: str, key: str, max_age_s: float
    ) -> IdempotentAnswer | None:
        row = await self._fresh(
            t.idempotency, "created_at", max_age_s, tenant_id=tenant_id, key=key
        )
        return _record(IdempotentAnswer, row) if row else None

    async def put_idempotent(
        self, answer: IdempotentAnswer, incarnation: str | None = None
    ) -> None:
        key = {"tenant_id": answer.tenant_id, "key": answer.key}
        await self._replace(t.idempotency, key, _values(answer, skip=()), incarnation)

    async def forget_idempotent(self, tenant_id: str, key: str) -> None:
        i = t.idempotency.c
        await self._execute(
            delete(t.idempotency).where(and_(i.tenant_id == tenant_id, i.key == key))
        )

    async def get_jid(
        self, tenant_id: str, phone: str, max_age_s: float
    ) -> tuple[bool, str | None] | None:
        row = await self._fresh(
            t.jid_cache, "checked_at", max_age_s, tenant_id=tenant_id, phone=phone
        )
        return (bool(row.exists), row.jid) if row else None

    async def put_jid(
        self,
        tenant_id: str,
        phone: str,
        exists_: bool,
        jid: str | None,
        incarnation: str | None = None,
    ) -> None:
        key = {"tenant_id": tenant_id, "phone": phone}
        row = {**key, "exists": exists_, "jid": jid, "checked_at": time.time()}
        await self._replace(t.jid_cache, key, row, incarnation)

    # --- inbound events set aside --------------------------------------------------
    async def add_dead_inbound(self, tenant_id: str, event: str, error: str) -> int:
        row = DeadInbound(tenant_id, event, error.replace("\x00", "\\x00"), time.time())

        def job(conn: Connection) -> int:
            key = conn.execute(insert(t.inbound_dead).values(_values(row))).inserted_primary_key
            return int(key[0]) if key else 0

        return await self._write(job)

    async def list_dead_inbound(
        self, tenant_id: str | None = None, limit: int = 100
    ) -> list[DeadInbound]:
        d = t.inbound_dead.c
        stmt = select(t.inbound_dead)
        if tenant_id:
            stmt = stmt.where(d.tenant_id == tenant_id)
        return await self._records(DeadInbound, stmt.order_by(d.id).limit(limit))

    async def get_dead_inbound(self, dead_id: int) -> DeadInbound | None:
        return await self._find(DeadInbound, t.inbound_dead, id=dead_id)

    async def drop_dead_inbound(self, dead_id: int) -> None:
        await self._execute(delete(t.inbound_dead).where(t.inbound_dead.c.id == dead_id))

    async def fail_interrupted_sends(self, tenant_id: str) -> int:
        m = t.messages.c
        return await self._execute(
            update(t.messages)
            .where(
                and_(
                    m.tenant_id == tenant_id,
                    m.status == MessageStatus.SENDING,
                    t.NOT_RECEIVED,  # (outgoing) by ix_messages_queue
                )
            )
            .values(
                status=MessageStatus.FAILED,
                error=SEND_INTERRUPTED,
                updated_at=time.time(),
            )
        )


# --- statements built once (the hot path's, with bound parameters) --------------------
_m = t.messages.c
_KEY = and_(_m.tenant_id == bindparam("k_tenant"), _m.message_id == bindparam("k_message"))
_TENANT = select(t.tenants).where(t.tenants.c.id == bindparam("k_id"))
_INSERT_MESSAGE = DriverStatement(
    insert(t.messages)
    .values({c.name: bindparam(c.name) for c in t.messages.c if c.name != "id"})
    .returning(_m.id)
)
_INSERT_MESSAGE_IN_LIFE = life_insert(
    t.messages, [c.name for c in t.messages.c if c.name != "id"], _m.id
)
_MESSAGE = select(t.messages).where(_KEY)
_MEDIA = select(t.media).where(
    and_(
        t.media.c.tenant_id == bindparam("k_tenant"),
        t.media.c.message_id == bindparam("k_message"),
    )
)
_QUEUED = and_(  # by ix_messages_queue (its condition written as the index says it)
    _m.tenant_id == bindparam("k_tenant"),
    _m.status == MessageStatus.QUEUED,
    t.NOT_RECEIVED,
)
_NEXT_QUEUED = select(t.messages).where(_QUEUED).order_by(_m.id).limit(1)
_COUNT_QUEUED = select(func.count()).where(_QUEUED)


# one statement (one round trip on PostgreSQL): "sent" unless a receipt moved it further
_SENT = DriverStatement(
    update(t.messages)
    .where(_KEY)
    .values(
        wa_id=bindparam("k_wa_id"),
        payload=None,
        updated_at=bindparam("k_now"),
        status=case(
            (
                _m.status.in_(literal_list(MessageStatus.QUEUED, MessageStatus.SENDING)),
                MessageStatus.SENT,
            ),
            else_=_m.status,
        ),
    )
)


def _unindexed(column: Any) -> Any:
    """``column || ''``: its value, which no index of it can look up (the way to keep a
    planner to the index meant, in SQL both databases speak)."""
    return column.op("||")(literal_column("''"))


_RECEIPT_CONDITION = and_(  # by ix_messages_wa alone (see _receipt_statement)
    _m.tenant_id == bindparam("k_tenant"),
    _m.wa_id.in_(bindparam("k_wa_ids", expanding=True)),
    _unindexed(_m.direction) == t.OUTGOING,
    _unindexed(_m.status).in_(bindparam("k_lower", expanding=True)),
)
_RECEIPT_MOVE = (
    update(t.messages)
    .where(_RECEIPT_CONDITION)
    .values(status=bindparam("k_status"), updated_at=bindparam("k_now"))
    .returning(_m.message_id)
)
_RECEIPT_FAIL = _RECEIPT_MOVE.values(error=bindparam("k_error"))
#: Receipts of at most this many messages run a statement compiled for their count.
RECEIPT_DRIVER_MAX = 4


@functools.cache
def _receipt_statement(ids: int, status: str, error: bool) -> DriverStatement:
    """The receipt's UPDATE for ``ids`` messages moving to ``status`` (``error``: a
    failure that keeps its reason), its lists spelled out (no expanding parameters)."""
    lower = [s.value for s in moved_by(status)]
    stmt = (
        update(t.messages)
        .where(
            and_(
                _m.tenant_id == bindparam("k_tenant"),
                _m.wa_id.in_([bindparam(f"k_wa{i}") for i in range(ids)]),
                # Looked up by ix_messages_wa alone: as written here SQLite can use no
                # other index for these two. Plainly written, it chose ix_messages_outgoing
                # for two ids or more (every outgoing message of the tenant, 95 us with
                # 6,000 and growing), and with "out" bound it prepared the statement again
                # on every run (28 us for one id; 5 us now).
                _unindexed(_m.direction) == t.OUTGOING,
                _unindexed(_m.status).in_(literal_list(*lower)),
            )
        )
        .values(status=status, updated_at=bindparam("k_now"))
        .returning(_m.message_id)
    )
    return DriverStatement(stmt.values(error=bindparam("k_error")) if error else stmt)


_FORGET_ANSWER = delete(t.idempotency).where(
    and_(
        t.idempotency.c.tenant_id == bindparam("k_tenant"),
        t.idempotency.c.key == bindparam("k_key"),
    )
)
_REMEMBER_ANSWER = insert(t.idempotency)


def insert_message(conn: Connection, message: MessageRecord) -> int | None:
    """Add ``message`` to the log on ``conn`` (inside a write job); its row id."""
    (row,) = _INSERT_MESSAGE.run_record(conn, message).fetchall()
    return int(row[0])


def remember_answer(conn: Connection, answer: IdempotentAnswer) -> None:
    """Keep an Idempotency-Key's answer on ``conn`` (inside a write job), replacing the
    one it had."""
    conn.execute(_FORGET_ANSWER, {"k_tenant": answer.tenant_id, "k_key": answer.key})
    conn.execute(_REMEMBER_ANSWER, _values(answer, skip=()))


def mark_sent(conn: Connection, params: dict[str, Any]) -> None:
    """``SqlStore.mark_sent`` on ``conn`` (inside a write job)."""
    _SENT.run(conn, {**params, "k_now": time.time()})


def apply_receipt(
    conn: Connection, tenant_id: str, wa_ids: Sequence[str], status: str, error: str | None = None
) -> list[str]:
    """``SqlStore.apply_receipt`` on ``conn`` (inside a write job)."""
    if 0 < len(wa_ids) <= RECEIPT_DRIVER_MAX and status in PROGRESS:
        params: dict[str, Any] = {f"k_wa{i}": wa_id for i, wa_id in enumerate(wa_ids)}
        params.update(k_tenant=tenant_id, k_now=time.time(), k_error=error)
        stmt = _receipt_statement(len(wa_ids), status, bool(error))
        return [row[0] for row in stmt.rows(conn, params)]
    lower = moved_by(status)
    params = {
        "k_tenant": tenant_id,
        "k_wa_ids": list(wa_ids),
        "k_lower": lower,
        "k_status": status,
        "k_now": time.time(),
        "k_error": error,
    }
    moved = conn.execute(_RECEIPT_FAIL if error else _RECEIPT_MOVE, params)
    return list(moved.scalars())  # moved, in one statement (RETURNING)
