"""The store on SQLAlchemy Core: one implementation for SQLite and PostgreSQL.

Dialect differences (connection setup, claiming with ``SKIP LOCKED``, notifications)
live in the ``sqlite`` and ``postgres`` subclasses.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    Float,
    Integer,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from zapmux.errors import TenantExists
from zapmux.store import schema as t
from zapmux.store.base import Store
from zapmux.store.records import (
    Delivery,
    DeliveryResult,
    IdempotentAnswer,
    InboxMessage,
    MessageRecord,
    SandboxQr,
    SandboxSession,
    TenantRecord,
)

R = TypeVar("R")
_STATUS_RANK = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4, "failed": 5}


def _record(cls: type[R], row: Any) -> R:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in row._mapping.items() if k in names})


def _values(record: Any, *, skip: Iterable[str] = ("id",)) -> dict[str, Any]:
    skipped = set(skip)
    return {
        k: v for k, v in dataclasses.asdict(record).items() if k not in skipped and k != "extra"
    }


def _blocked(o: Any) -> Any:
    """An older pending row of the same chat exists: ``o`` must wait for it."""
    older = t.outbox.alias("older")
    return exists().where(
        and_(older.c.chat_key == o.c.chat_key, older.c.status == "pending", older.c.id < o.c.id)
    )


def _unlocked(o: Any) -> Any:
    return or_(o.c.locked_until.is_(None), o.c.locked_until < bindparam("now"))


_o = t.outbox
_CLAIM_SELECT = (
    select(_o.c.id)
    .where(
        and_(
            _o.c.status == "pending",
            _o.c.next_attempt_at <= bindparam("now"),
            _unlocked(_o),
            ~_blocked(_o),
        )
    )
    .order_by(_o.c.next_attempt_at, _o.c.id)
    .limit(bindparam("limit", type_=Integer))
)
_CLAIM_UPDATE = (
    update(_o)
    .where(and_(_o.c.id.in_(bindparam("ids", expanding=True)), _o.c.status == "pending"))
    .where(_unlocked(_o))
    .values(locked_until=bindparam("until"))
    .returning(*_o.c)
)
_FINISH_UPDATE = (
    update(_o)
    .where(_o.c.delivery_id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        attempts=bindparam("b_attempts"),
        last_error=bindparam("b_error"),
        locked_until=None,
        next_attempt_at=func.coalesce(bindparam("b_next", type_=Float), _o.c.next_attempt_at),
        delivered_at=bindparam("b_delivered", type_=Float),
    )
)


class SqlStore(Store):
    """Everything zapmux persists, over one SQLAlchemy async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._claim_stmt: Any = None

    # --- lifecycle -----------------------------------------------------------------
    async def migrate(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(t.metadata.create_all)
            version = (await conn.execute(select(t.schema_version.c.version))).scalar()
            if version is None:
                await conn.execute(insert(t.schema_version).values(version=t.SCHEMA_VERSION))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        await self.engine.dispose()

    # --- tenants -------------------------------------------------------------------
    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        now = time.time()
        tenant.created_at = tenant.updated_at = now
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
        async with self.engine.begin() as conn:
            for table in (t.messages, t.idempotency, t.jid_cache, t.media):
                await conn.execute(delete(table).where(table.c.tenant_id == tenant_id))
            result = await conn.execute(delete(t.tenants).where(t.tenants.c.id == tenant_id))
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
    async def add_message(self, message: MessageRecord) -> MessageRecord:
        message.created_at = message.updated_at = time.time()
        async with self.engine.begin() as conn:
            result = await conn.execute(insert(t.messages).values(_values(message)))
        message.id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        return message

    async def record_incoming(self, message: MessageRecord, deliveries: Sequence[Delivery]) -> bool:
        """Log an incoming message and its webhook deliveries in one transaction.

        False (and nothing written) when this message id was already recorded.
        """
        message.created_at = message.updated_at = time.time()
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(t.messages).values(_values(message)))
                await self._insert_deliveries(conn, deliveries)
        except IntegrityError:
            return False
        return True

    async def save_media(
        self, tenant_id: str, message_id: str, mimetype: str, filename: str | None, data: bytes
    ) -> None:
        async with self.engine.begin() as conn:
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
    ) -> list[MessageRecord]:
        """Newest first; ``before`` is the ``id`` cursor of an earlier page's last row."""
        m = t.messages.c
        stmt = select(t.messages).where(m.tenant_id == tenant_id)
        if direction:
            stmt = stmt.where(m.direction == direction)
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

    async def apply_receipt(self, tenant_id: str, wa_ids: Sequence[str], status: str) -> list[str]:
        """Move sent messages forward (sent → delivered → read); the message ids moved."""
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
                    update(t.messages).where(cond).values(status=status, updated_at=time.time())
                )
        return ids

    # --- outbox --------------------------------------------------------------------
    async def _insert_deliveries(
        self, conn: AsyncConnection, deliveries: Sequence[Delivery]
    ) -> None:
        now = time.time()
        for d in deliveries:
            d.created_at = d.created_at or now
            d.next_attempt_at = d.next_attempt_at or now
        if deliveries:
            await conn.execute(insert(t.outbox), [_values(d) for d in deliveries])

    async def enqueue_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        async with self.engine.begin() as conn:
            await self._insert_deliveries(conn, deliveries)

    async def claim_deliveries(self, limit: int, lock_s: float) -> list[Delivery]:
        """Due pending deliveries, each the oldest pending of its chat, locked for us."""
        now = time.time()
        async with self.engine.begin() as conn:
            ids = list(
                (await conn.execute(self._claim_select(), {"now": now, "limit": limit})).scalars()
            )
            if not ids:
                return []
            # Re-checked in the UPDATE: on SQLite two claimers may have read the same
            # rows; only the one whose UPDATE matched them gets them back.
            rows = list(
                await conn.execute(_CLAIM_UPDATE, {"ids": ids, "now": now, "until": now + lock_s})
            )
        rows.sort(key=lambda r: (r.next_attempt_at, r.id))
        return [_record(Delivery, r) for r in rows]

    def _claim_select(self) -> Any:
        # Built once: the statement (and its cache key) is the same on every claim.
        if self._claim_stmt is None:
            self._claim_stmt = self._lock(_CLAIM_SELECT)
        return self._claim_stmt

    async def finish_delivery(
        self,
        delivery_id: str,
        *,
        status: str,
        attempts: int,
        last_error: str | None,
        next_attempt_at: float | None = None,
    ) -> None:
        await self.finish_deliveries(
            [DeliveryResult(delivery_id, status, attempts, last_error, next_attempt_at)]
        )

    async def finish_deliveries(self, results: Sequence[DeliveryResult]) -> None:
        """Record attempts' outcomes (and unlock their rows) in one transaction."""
        if not results:
            return
        now = time.time()
        params = [
            {
                "b_id": r.delivery_id,
                "b_status": r.status,
                "b_attempts": r.attempts,
                "b_error": r.last_error,
                "b_next": r.next_attempt_at,
                "b_delivered": now if r.status == "delivered" else None,
            }
            for r in results
        ]
        async with self.engine.begin() as conn:
            await conn.execute(_FINISH_UPDATE, params)

    async def next_delivery_due(self) -> float | None:
        """When the next chat head may be claimed: its next attempt, or when its lock ends.

        Rows waiting behind an older row of their chat are left out: they move when
        that row finishes (which wakes the deliverer), not at their own time.
        """
        o = t.outbox
        ready_at = case(
            (o.c.locked_until > o.c.next_attempt_at, o.c.locked_until),
            else_=o.c.next_attempt_at,
        )
        stmt = select(func.min(ready_at)).where(and_(o.c.status == "pending", ~_blocked(o)))
        async with self.engine.connect() as conn:
            due = (await conn.execute(stmt)).scalar()
        return None if due is None else float(due)

    async def release_deliveries(self, delivery_ids: Sequence[str] | None = None) -> int:
        """Unlock claimed pending deliveries (all, or these) so they can be claimed now."""
        o = t.outbox.c
        stmt = update(t.outbox).where(and_(o.status == "pending", o.locked_until.is_not(None)))
        if delivery_ids is not None:
            if not delivery_ids:
                return 0
            stmt = stmt.where(o.delivery_id.in_(list(delivery_ids)))
        async with self.engine.begin() as conn:
            result = await conn.execute(stmt.values(locked_until=None))
        return int(result.rowcount or 0)

    async def purge_delivered(self, older_than: float) -> int:
        """Forget deliveries delivered before ``older_than``; the count removed."""
        o = t.outbox.c
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(t.outbox).where(and_(o.status == "delivered", o.delivered_at < older_than))
            )
        return int(result.rowcount or 0)

    async def list_deliveries(
        self, status: str | None = None, tenant_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        o = t.outbox.c
        stmt = select(t.outbox)
        if status:
            stmt = stmt.where(o.status == status)
        if tenant_id:
            stmt = stmt.where(o.tenant_id == tenant_id)
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt.order_by(o.id.desc()).limit(limit))
        return [_record(Delivery, r) for r in rows]

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(t.outbox).where(t.outbox.c.delivery_id == delivery_id))
            ).first()
        return _record(Delivery, row) if row else None

    async def retry_deliveries(
        self, *, delivery_id: str | None = None, tenant_id: str | None = None
    ) -> int:
        """Put dead (or one given) deliveries back to pending, due now.

        One given delivery is replayed whatever its state (a delivered one is sent
        again; a pending one waiting for its backoff is tried now) unless it is in
        flight at this moment.
        """
        o = t.outbox.c
        stmt = update(t.outbox)
        if delivery_id:
            idle = or_(
                o.status != "pending", o.locked_until.is_(None), o.locked_until < time.time()
            )
            stmt = stmt.where(and_(o.delivery_id == delivery_id, idle))
        else:
            stmt = stmt.where(o.status == "dead")
            if tenant_id:
                stmt = stmt.where(o.tenant_id == tenant_id)
        async with self.engine.begin() as conn:
            result = await conn.execute(
                stmt.values(
                    status="pending",
                    next_attempt_at=time.time(),
                    locked_until=None,
                    last_error=None,
                )
            )
        return int(result.rowcount or 0)

    async def count_deliveries(self) -> dict[str, int]:
        o = t.outbox.c
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(o.status, func.count()).group_by(o.status))
        return {r[0]: int(r[1]) for r in rows}

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

    async def put_idempotent(self, answer: IdempotentAnswer) -> None:
        i = t.idempotency.c
        async with self.engine.begin() as conn:
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

    async def put_jid(self, tenant_id: str, phone: str, exists_: bool, jid: str | None) -> None:
        j = t.jid_cache.c
        async with self.engine.begin() as conn:
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

    async def sandbox_session(self, tenant_id: str) -> SandboxSession | None:
        s = t.sandbox_sessions
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(s).where(s.c.tenant_id == tenant_id))).first()
        return _record(SandboxSession, row) if row else None

    async def sandbox_save_session(self, session: SandboxSession) -> None:
        s = t.sandbox_sessions
        async with self.engine.begin() as conn:
            await conn.execute(delete(s).where(s.c.tenant_id == session.tenant_id))
            await conn.execute(insert(s).values(_values(session, skip=())))

    async def sandbox_set_network(self, tenant_id: str, down: bool) -> bool:
        s = t.sandbox_sessions
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(s).where(s.c.tenant_id == tenant_id).values(network_down=down)
            )
        return bool(result.rowcount)

    async def sandbox_wipe(self, tenant_id: str) -> None:
        async with self.engine.begin() as conn:
            for table in (
                t.sandbox_sessions,
                t.sandbox_qr,
                t.sandbox_pair_codes,
                t.sandbox_pending,
            ):
                await conn.execute(delete(table).where(table.c.tenant_id == tenant_id))

    async def sandbox_issue_qr(self, qr: SandboxQr) -> None:
        q = t.sandbox_qr
        async with self.engine.begin() as conn:
            await conn.execute(update(q).where(q.c.tenant_id == qr.tenant_id).values(current=False))
            await conn.execute(insert(q).values(_values(qr, skip=())))

    async def sandbox_find_qr(self, code: str) -> SandboxQr | None:
        q = t.sandbox_qr
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(q).where(q.c.code == code))).first()
        return _record(SandboxQr, row) if row else None

    async def sandbox_retire_qr(self, tenant_id: str) -> None:
        q = t.sandbox_qr
        async with self.engine.begin() as conn:
            await conn.execute(update(q).where(q.c.tenant_id == tenant_id).values(current=False))

    async def sandbox_add_pair_code(
        self, code: str, tenant_id: str, phone: str, expires_at: float
    ) -> None:
        p = t.sandbox_pair_codes
        async with self.engine.begin() as conn:
            await conn.execute(delete(p).where(p.c.tenant_id == tenant_id))
            await conn.execute(
                insert(p).values(code=code, tenant_id=tenant_id, phone=phone, expires_at=expires_at)
            )

    async def sandbox_take_pair_code(self, code: str) -> tuple[str, str, float] | None:
        p = t.sandbox_pair_codes
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(p).where(p.c.code == code))).first()
            if row:
                await conn.execute(delete(p).where(p.c.code == code))
        return (row.tenant_id, row.phone, row.expires_at) if row else None

    async def sandbox_set_phone(self, phone: str, on_whatsapp: bool) -> None:
        p = t.sandbox_phones
        async with self.engine.begin() as conn:
            await conn.execute(delete(p).where(p.c.phone == phone))
            await conn.execute(insert(p).values(phone=phone, on_whatsapp=on_whatsapp))

    async def sandbox_phones(self, phones: Sequence[str]) -> dict[str, bool]:
        p = t.sandbox_phones
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(p).where(p.c.phone.in_(list(phones))))
        return {r.phone: bool(r.on_whatsapp) for r in rows}

    async def sandbox_deliver_to_phone(self, message: InboxMessage) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(insert(t.sandbox_inbox).values(_values(message)))

    async def sandbox_inbox(self, phone: str, unread_only: bool = False) -> list[InboxMessage]:
        i = t.sandbox_inbox
        stmt = select(i).where(i.c.phone == phone)
        if unread_only:
            stmt = stmt.where(i.c.read.is_(False))
        async with self.engine.connect() as conn:
            rows = await conn.execute(stmt.order_by(i.c.id))
        return [_record(InboxMessage, r) for r in rows]

    async def sandbox_mark_read(self, phone: str) -> list[InboxMessage]:
        unread = await self.sandbox_inbox(phone, unread_only=True)
        if unread:
            i = t.sandbox_inbox
            async with self.engine.begin() as conn:
                await conn.execute(
                    update(i).where(i.c.id.in_([m.id for m in unread])).values(read=True)
                )
        return unread

    async def sandbox_push(self, tenant_id: str, event: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(t.sandbox_pending).values(
                    tenant_id=tenant_id, event=event, created_at=time.time()
                )
            )

    async def sandbox_pending(self, tenant_id: str, limit: int = 100) -> list[tuple[int, str]]:
        p = t.sandbox_pending
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(p.c.id, p.c.event)
                .where(p.c.tenant_id == tenant_id)
                .order_by(p.c.id)
                .limit(limit)
            )
        return [(r.id, r.event) for r in rows]

    async def sandbox_reset(self) -> None:
        """Forget the whole simulated network."""
        async with self.engine.begin() as conn:
            for table in (
                t.sandbox_sessions,
                t.sandbox_qr,
                t.sandbox_pair_codes,
                t.sandbox_phones,
                t.sandbox_inbox,
                t.sandbox_pending,
            ):
                await conn.execute(delete(table))

    async def sandbox_ack(self, pending_id: int) -> None:
        p = t.sandbox_pending
        async with self.engine.begin() as conn:
            await conn.execute(delete(p).where(p.c.id == pending_id))

    async def fail_interrupted_sends(self) -> int:
        m = t.messages.c
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.messages)
                .where(and_(m.direction == "out", m.status == "sending"))
                .values(
                    status="failed",
                    error="interrupted by a restart while sending; it may have gone out",
                    updated_at=time.time(),
                )
            )
        return int(result.rowcount or 0)
