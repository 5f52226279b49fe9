"""The sandbox network's tables (used only by the sandbox engine), as a part of the SQL
store: sessions, QR and pairing codes, phones, their inboxes, and what waits for a
tenant's session."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from zapmux.store import schema as t
from zapmux.store.records import InboxMessage, SandboxQr, SandboxSession
from zapmux.store.rows import record as _record
from zapmux.store.rows import values as _values


class SandboxTables:
    """Mixed into ``SqlStore``; ``engine`` is its SQLAlchemy engine."""

    engine: AsyncEngine

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
