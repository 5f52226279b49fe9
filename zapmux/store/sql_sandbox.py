"""The sandbox network's tables (used only by the sandbox engine), as a part of the SQL
store: sessions, QR and pairing codes, phones, their inboxes, and what waits for a
tenant's session."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from zapmux.store import schema as t
from zapmux.store.base import SANDBOX_CHANGES
from zapmux.store.driver import DriverStatement
from zapmux.store.records import InboxMessage, SandboxQr, SandboxSession
from zapmux.store.rows import values as _values
from zapmux.store.sql_base import SqlTables, replace

_s, _p = t.sandbox_sessions, t.sandbox_pending
_SESSION = select(_s).where(_s.c.tenant_id == bindparam("k_tenant"))
_PENDING = (
    select(_p.c.id, _p.c.event)
    .where(_p.c.tenant_id == bindparam("k_tenant"))
    .order_by(_p.c.id)
    .limit(bindparam("k_limit"))
)
# Every send in the sandbox writes the phone's copy and its receipt: built once, run on
# the driver's cursor (store/driver.py).
_PUSH = DriverStatement(
    insert(_p)
    .values(tenant_id=bindparam("tenant_id"), event=bindparam("event"))
    .values(created_at=bindparam("created_at"))
    .returning(_p.c.id)
)
_ACK = DriverStatement(delete(_p).where(_p.c.id == bindparam("k_id")))  # run per id
_TO_PHONE = DriverStatement(
    insert(t.sandbox_inbox).values(
        {c.name: bindparam(c.name) for c in t.sandbox_inbox.c if c.name != "id"}
    )
)
_TENANT_TABLES = (t.sandbox_sessions, t.sandbox_qr, t.sandbox_pair_codes, t.sandbox_pending)


class SandboxTables(SqlTables):
    """Mixed into ``SqlStore``."""

    async def sandbox_session(self, tenant_id: str) -> SandboxSession | None:
        return await self._record_of(SandboxSession, _SESSION, {"k_tenant": tenant_id})

    async def sandbox_save_session(self, session: SandboxSession) -> None:
        """Store a paired session; a node where the tenant waits for its scan is told."""
        key = {"tenant_id": session.tenant_id}
        row = _values(session, skip=())

        def job(conn: Connection) -> None:
            replace(conn, t.sandbox_sessions, key, row)
            self._notify(conn, SANDBOX_CHANGES, session.tenant_id)

        await self._write(job)

    async def sandbox_set_network(self, tenant_id: str, down: bool) -> bool:
        s = t.sandbox_sessions
        stmt = update(s).where(s.c.tenant_id == tenant_id).values(network_down=down)
        return bool(await self._execute(stmt))

    async def sandbox_wipe(self, tenant_id: str) -> None:
        def job(conn: Connection) -> None:
            for table in _TENANT_TABLES:
                conn.execute(delete(table).where(table.c.tenant_id == tenant_id))

        await self._write(job)

    async def sandbox_issue_qr(self, qr: SandboxQr) -> None:
        q = t.sandbox_qr

        def job(conn: Connection) -> None:
            conn.execute(update(q).where(q.c.tenant_id == qr.tenant_id).values(current=False))
            conn.execute(insert(q).values(_values(qr, skip=())))

        await self._write(job)

    async def sandbox_find_qr(self, code: str) -> SandboxQr | None:
        return await self._find(SandboxQr, t.sandbox_qr, code=code)

    async def sandbox_retire_qr(self, tenant_id: str) -> None:
        q = t.sandbox_qr
        await self._execute(update(q).where(q.c.tenant_id == tenant_id).values(current=False))

    async def sandbox_add_pair_code(
        self, code: str, tenant_id: str, phone: str, expires_at: float
    ) -> None:
        row = {"code": code, "tenant_id": tenant_id, "phone": phone, "expires_at": expires_at}
        await self._replace(t.sandbox_pair_codes, {"tenant_id": tenant_id}, row)

    async def sandbox_take_pair_code(self, code: str) -> tuple[str, str, float] | None:
        p = t.sandbox_pair_codes

        def job(conn: Connection) -> tuple[str, str, float] | None:
            row = (conn.execute(select(p).where(p.c.code == code))).first()
            if row is None:
                return None
            conn.execute(delete(p).where(p.c.code == code))
            return (row.tenant_id, row.phone, row.expires_at)

        return await self._write(job)

    async def sandbox_set_phone(self, phone: str, on_whatsapp: bool) -> None:
        row = {"phone": phone, "on_whatsapp": on_whatsapp}
        await self._replace(t.sandbox_phones, {"phone": phone}, row)

    async def sandbox_phones(self, phones: Sequence[str]) -> dict[str, bool]:
        p = t.sandbox_phones
        rows = await self._all(select(p).where(p.c.phone.in_(list(phones))))
        return {r.phone: bool(r.on_whatsapp) for r in rows}

    async def sandbox_deliver_to_phone(
        self, message: InboxMessage, receipt: str | None = None
    ) -> int | None:
        def job(conn: Connection) -> int | None:
            _TO_PHONE.run(conn, _values(message))
            return None if receipt is None else _push(conn, message.tenant_id, receipt)

        return await self._write(job, quick=True)

    async def sandbox_inbox(self, phone: str, unread_only: bool = False) -> list[InboxMessage]:
        i = t.sandbox_inbox
        stmt = select(i).where(i.c.phone == phone)
        if unread_only:
            stmt = stmt.where(i.c.read.is_(False))
        return await self._records(InboxMessage, stmt.order_by(i.c.id))

    async def sandbox_mark_read(self, phone: str) -> list[InboxMessage]:
        unread = await self.sandbox_inbox(phone, unread_only=True)
        if unread:
            i = t.sandbox_inbox
            await self._execute(
                update(i).where(i.c.id.in_([m.id for m in unread])).values(read=True)
            )
        return unread

    async def sandbox_push(self, tenant_id: str, event: str, tell_others: bool = True) -> int:
        """Leave ``event`` for the tenant's session; its id. ``tell_others``: the session
        may run on another node, which is told (the node that runs it wakes it itself)."""

        def job(conn: Connection) -> int:
            pending_id = _push(conn, tenant_id, event)
            if tell_others:
                self._notify(conn, SANDBOX_CHANGES, tenant_id)
            return pending_id

        return await self._write(job, quick=True)

    async def sandbox_pending(self, tenant_id: str, limit: int = 100) -> list[tuple[int, str]]:
        rows = await self._all(_PENDING, {"k_tenant": tenant_id, "k_limit": limit})
        return [(r.id, r.event) for r in rows]

    async def sandbox_reset(self) -> None:
        """Forget the whole simulated network."""

        def job(conn: Connection) -> None:
            for table in (*_TENANT_TABLES, t.sandbox_phones, t.sandbox_inbox):
                conn.execute(delete(table))

        await self._write(job)

    async def sandbox_ack(self, *pending_ids: int) -> None:
        if pending_ids:
            ids = [{"k_id": pending_id} for pending_id in pending_ids]
            await self._write(lambda conn: _ACK.run_many(conn, ids), quick=True)


def _push(conn: Connection, tenant_id: str, event: str) -> int:
    row = {"tenant_id": tenant_id, "event": event, "created_at": time.time()}
    return int(_PUSH.rows(conn, row)[0][0])
