"""The store on SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Dialect differences (connection setup, claiming with ``SKIP LOCKED``, notifications)
live in the ``sqlite`` and ``postgres`` subclasses.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from zapmux.errors import TenantExists
from zapmux.store import schema as t
from zapmux.store.base import Store
from zapmux.store.guard import in_life
from zapmux.store.records import (
    DeadInbound,
    Delivery,
    IdempotentAnswer,
    MessageRecord,
    TenantRecord,
)
from zapmux.store.rows import record as _record
from zapmux.store.rows import values as _values
from zapmux.store.sql_cloud import CloudTables
from zapmux.store.sql_optouts import OptOutTables
from zapmux.store.sql_outbox import OutboxTables
from zapmux.store.sql_sandbox import SandboxTables
from zapmux.store.sql_schedule import ScheduleTables

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
_STATUS_RANK = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}


class SqlStore(OutboxTables, SandboxTables, CloudTables, ScheduleTables, OptOutTables, Store):
    """Everything zapmux persists, over one SQLAlchemy async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._claim_stmt: Any = None

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
        await self.engine.dispose()

    # --- tenants -------------------------------------------------------------------
    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        now = time.time()
        tenant.created_at = tenant.updated_at = now
        tenant.incarnation = tenant.incarnation or secrets.token_hex(8)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(t.tenants).values(_values(tenant, skip=())))
        except IntegrityError as exc:
            raise TenantExists(f"tenant {tenant.id!r} already exists") from exc
        return tenant

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.tenants).where(t.tenants.c.id == tenant_id))).first()
        return _record(TenantRecord, row) if row else None

    async def tenant_by_token_hash(self, token_hash: str) -> TenantRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(t.tenants).where(t.tenants.c.token_hash == token_hash))
            ).first()
        return _record(TenantRecord, row) if row else None

    async def list_tenants(self) -> list[TenantRecord]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.tenants).order_by(t.tenants.c.id))
        return [_record(TenantRecord, r) for r in rows]

    async def update_tenant(self, tenant_id: str, **fields: Any) -> bool:
        fields["updated_at"] = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.tenants).where(t.tenants.c.id == tenant_id).values(**fields)
            )
        return bool(result.rowcount)

    async def delete_tenant(self, tenant_id: str) -> bool:
        """The tenant and everything of its life, so that nothing passes to a new tenant
        of the same id. Its own row goes first: see ``store.guard`` for why."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(t.tenants).where(t.tenants.c.id == tenant_id))
            for table in _TENANT_TABLES:
                await conn.execute(delete(table).where(table.c.tenant_id == tenant_id))
        return bool(result.rowcount)

    # --- leases (which node runs which tenant) -------------------------------------
    async def acquire_leases(self, node: str, lease_s: float, limit: int) -> list[str]:
        """Take (or renew) tenants that are unowned, expired, or already ours."""
        now = time.time()
        free = or_(
            t.tenants.c.owner.is_(None),
            t.tenants.c.owner == node,
            t.tenants.c.lease_until < now,
        )
        pick = select(t.tenants.c.id).where(free).order_by(t.tenants.c.id).limit(limit)
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(self._lock(pick))).scalars())
            if not ids:
                return []
            claimed = await conn.execute(
                update(t.tenants)
                .where(and_(t.tenants.c.id.in_(ids), free))
                .values(owner=node, lease_until=now + lease_s)
                .returning(t.tenants.c.id)
            )
            ids = sorted(claimed.scalars())
        return ids

    async def heartbeat(self, node: str, url: str) -> None:
        """Say this node is alive and where other nodes reach it."""
        n = t.nodes
        async with self.engine.begin() as conn:
            await conn.execute(delete(n).where(n.c.id == node))
            await conn.execute(insert(n).values(id=node, url=url, heartbeat_at=time.time()))

    async def node_url(self, node: str, max_age_s: float) -> str | None:
        """The URL of a node whose heartbeat is recent, else None."""
        n = t.nodes
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(n.c.url).where(
                        and_(n.c.id == node, n.c.heartbeat_at > time.time() - max_age_s)
                    )
                )
            ).first()
        return row.url if row else None

    async def live_nodes(self, max_age_s: float) -> list[tuple[str, str]]:
        """(id, URL) of every node whose heartbeat is recent."""
        n = t.nodes.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(n.id, n.url).where(n.heartbeat_at > time.time() - max_age_s).order_by(n.id)
            )
        return [(r.id, r.url) for r in rows]

    async def tenant_owner(self, tenant_id: str) -> tuple[str | None, float] | None:
        """(owner node, lease end) of a tenant; None when there is no such tenant."""
        c = t.tenants.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(c.owner, c.lease_until).where(c.id == tenant_id))
            ).first()
        return (row.owner, row.lease_until or 0.0) if row else None

    async def acquire_lease(self, node: str, tenant_id: str, lease_s: float) -> bool:
        """Take one tenant when it is unowned or its lease ran out."""
        now = time.time()
        c = t.tenants.c
        free = or_(c.owner.is_(None), c.owner == node, c.lease_until < now)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.tenants)
                .where(and_(c.id == tenant_id, free))
                .values(owner=node, lease_until=now + lease_s)
            )
        return bool(result.rowcount)

    async def release_leases(self, node: str, tenant_ids: Sequence[str] | None = None) -> None:
        stmt = update(t.tenants).where(t.tenants.c.owner == node)
        if tenant_ids is not None:
            stmt = stmt.where(t.tenants.c.id.in_(list(tenant_ids)))
        async with self.engine.begin() as conn:
            await conn.execute(stmt.values(owner=None, lease_until=None))

    def _lock(self, stmt: Any) -> Any:
        """Row locking for claims; PostgreSQL adds FOR UPDATE SKIP LOCKED."""
        return stmt

    # --- messages and the send queue -----------------------------------------------
    async def add_message(
        self, message: MessageRecord, incarnation: str | None = None
    ) -> MessageRecord:
        message.created_at = message.updated_at = time.time()
        async with self.engine.begin() as conn, in_life(conn, message.tenant_id, incarnation):
            result = await conn.execute(insert(t.messages).values(_values(message)))
        message.id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        return message

    async def record_incoming(
        self,
        message: MessageRecord,
        deliveries: Sequence[Delivery],
        incarnation: str | None = None,
    ) -> bool:
        """Log an incoming message and its webhook deliveries in one transaction.

        False (and nothing written) when this message id was already recorded.
        """
        message.created_at = message.updated_at = time.time()
        try:
            async with self.engine.begin() as conn, in_life(conn, message.tenant_id, incarnation):
                await conn.execute(insert(t.messages).values(_values(message)))
                await self._insert_deliveries(conn, deliveries)
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
        async with self.engine.begin() as conn, in_life(conn, tenant_id, incarnation):
            await conn.execute(
                delete(t.media).where(
                    and_(t.media.c.tenant_id == tenant_id, t.media.c.message_id == message_id)
                )
            )
            await conn.execute(
                insert(t.media).values(
                    tenant_id=tenant_id,
                    message_id=message_id,
                    mimetype=mimetype,
                    filename=filename,
                    data=data,
                )
            )

    async def get_media(
        self, tenant_id: str, message_id: str
    ) -> tuple[str, str | None, bytes] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.media).where(
                        and_(t.media.c.tenant_id == tenant_id, t.media.c.message_id == message_id)
                    )
                )
            ).first()
        return (row.mimetype, row.filename, row.data) if row else None

    async def get_message(self, tenant_id: str, message_id: str) -> MessageRecord | None:
        m = t.messages.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.messages).where(
                        and_(m.tenant_id == tenant_id, m.message_id == message_id)
                    )
                )
            ).first()
        return _record(MessageRecord, row) if row else None

    async def list_messages(
        self,
        tenant_id: str,
        direction: str | None = None,
        limit: int = 50,
        before: int | None = None,
        status: str | None = None,
    ) -> list[MessageRecord]:
        """Newest first; ``before`` is the ``id`` cursor of an earlier page's last row."""
        m = t.messages.c
        stmt = select(t.messages).where(m.tenant_id == tenant_id)
        if direction:
            stmt = stmt.where(m.direction == direction)
        if status:  # "sending" is shown as "queued" (MessageRecord.public)
            stmt = stmt.where(
                m.status.in_(["queued", "sending"] if status == "queued" else [status])
            )
        if before is not None:
            stmt = stmt.where(m.id < before)
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt.order_by(m.id.desc()).limit(limit))
        return [_record(MessageRecord, r) for r in rows]

    async def next_queued(self, tenant_id: str) -> MessageRecord | None:
        m = t.messages.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.messages)
                    .where(
                        and_(m.tenant_id == tenant_id, m.direction == "out", m.status == "queued")
                    )
                    .order_by(m.id)
                    .limit(1)
                )
            ).first()
        return _record(MessageRecord, row) if row else None

    async def count_queued(self, tenant_id: str) -> int:
        m = t.messages.c
        async with self.engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(
                            and_(
                                m.tenant_id == tenant_id, m.direction == "out", m.status == "queued"
                            )
                        )
                    )
                ).scalar()
                or 0
            )

    async def update_message(self, tenant_id: str, message_id: str, **fields: Any) -> bool:
        fields["updated_at"] = time.time()
        m = t.messages.c
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.messages)
                .where(and_(m.tenant_id == tenant_id, m.message_id == message_id))
                .values(**fields)
            )
        return bool(result.rowcount)

    async def mark_sent(self, tenant_id: str, message_id: str, wa_id: str) -> None:
        """The engine took the message: keep its id, drop the payload (media can be large);
        ``sent`` unless a receipt that raced the send already moved it further."""
        m = t.messages.c
        key = and_(m.tenant_id == tenant_id, m.message_id == message_id)
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.messages)
                .where(key)
                .values(wa_id=wa_id, payload=None, updated_at=time.time())
            )
            await conn.execute(
                update(t.messages)
                .where(and_(key, m.status.in_(["queued", "sending"])))
                .values(status="sent")
            )

    async def apply_receipt(
        self, tenant_id: str, wa_ids: Sequence[str], status: str, error: str | None = None
    ) -> list[str]:
        """Move sent messages forward (sent → delivered → read, or failed with ``error``);
        the message ids moved."""
        m = t.messages.c
        lower = [
            s for s, rank in _STATUS_RANK.items() if rank < _STATUS_RANK[status] and s != "queued"
        ]
        cond = and_(
            m.tenant_id == tenant_id,
            m.direction == "out",
            m.wa_id.in_(list(wa_ids)),
            m.status.in_(lower),
        )
        async with self.engine.begin() as conn:
            ids = list((await conn.execute(select(m.message_id).where(cond))).scalars())
            if ids:
                await conn.execute(
                    update(t.messages)
                    .where(cond)
                    .values(
                        status=status, updated_at=time.time(), **({"error": error} if error else {})
                    )
                )
        return ids

    # --- idempotency and the JID cache ---------------------------------------------
    async def get_idempotent(
        self, tenant_id: str, key: str, max_age_s: float
    ) -> IdempotentAnswer | None:
        i = t.idempotency.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.idempotency).where(
                        and_(
                            i.tenant_id == tenant_id,
                            i.key == key,
                            i.created_at > time.time() - max_age_s,
                        )
                    )
                )
            ).first()
        return _record(IdempotentAnswer, row) if row else None

    async def put_idempotent(
        self, answer: IdempotentAnswer, incarnation: str | None = None
    ) -> None:
        i = t.idempotency.c
        async with self.engine.begin() as conn, in_life(conn, answer.tenant_id, incarnation):
            await conn.execute(
                delete(t.idempotency).where(
                    and_(i.tenant_id == answer.tenant_id, i.key == answer.key)
                )
            )
            await conn.execute(insert(t.idempotency).values(_values(answer, skip=())))

    async def forget_idempotent(self, tenant_id: str, key: str) -> None:
        i = t.idempotency.c
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(t.idempotency).where(and_(i.tenant_id == tenant_id, i.key == key))
            )

    async def get_jid(
        self, tenant_id: str, phone: str, max_age_s: float
    ) -> tuple[bool, str | None] | None:
        j = t.jid_cache.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.jid_cache).where(
                        and_(
                            j.tenant_id == tenant_id,
                            j.phone == phone,
                            j.checked_at > time.time() - max_age_s,
                        )
                    )
                )
            ).first()
        return (bool(row.exists), row.jid) if row else None

    async def put_jid(
        self,
        tenant_id: str,
        phone: str,
        exists_: bool,
        jid: str | None,
        incarnation: str | None = None,
    ) -> None:
        j = t.jid_cache.c
        async with self.engine.begin() as conn, in_life(conn, tenant_id, incarnation):
            await conn.execute(
                delete(t.jid_cache).where(and_(j.tenant_id == tenant_id, j.phone == phone))
            )
            await conn.execute(
                insert(t.jid_cache).values(
                    tenant_id=tenant_id,
                    phone=phone,
                    exists=exists_,
                    jid=jid,
                    checked_at=time.time(),
                )
            )

    # --- inbound events set aside --------------------------------------------------
    async def add_dead_inbound(self, tenant_id: str, event: str, error: str) -> int:
        """Set aside an inbound event that could not be recorded; its id."""
        row = DeadInbound(tenant_id, event, error.replace("\x00", "\\x00"), time.time())
        async with self.engine.begin() as conn:
            result = await conn.execute(insert(t.inbound_dead).values(_values(row)))
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    async def list_dead_inbound(
        self, tenant_id: str | None = None, limit: int = 100
    ) -> list[DeadInbound]:
        d = t.inbound_dead.c
        stmt = select(t.inbound_dead)
        if tenant_id:
            stmt = stmt.where(d.tenant_id == tenant_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt.order_by(d.id).limit(limit))
        return [_record(DeadInbound, r) for r in rows]

    async def get_dead_inbound(self, dead_id: int) -> DeadInbound | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(t.inbound_dead).where(t.inbound_dead.c.id == dead_id))
            ).first()
        return _record(DeadInbound, row) if row else None

    async def drop_dead_inbound(self, dead_id: int) -> None:
        """Forget a set-aside event (it was replayed)."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.inbound_dead).where(t.inbound_dead.c.id == dead_id))

    async def fail_interrupted_sends(self, tenant_id: str) -> int:
        """Mark the tenant's half-sent messages failed (its last runner is gone)."""
        m = t.messages.c
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.messages)
                .where(and_(m.tenant_id == tenant_id, m.direction == "out", m.status == "sending"))
                .values(
                    status="failed",
                    error="interrupted by a restart while sending; it may have gone out",
                    updated_at=time.time(),
                )
            )
        return int(result.rowcount or 0)
