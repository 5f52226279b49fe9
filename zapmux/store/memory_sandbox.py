"""The sandbox network's state in the in-memory store (as ``store/sql_sandbox.py``):
sessions, QR and pairing codes, phones, their inboxes, and what waits for a tenant's
session."""

from __future__ import annotations

import time
from collections.abc import Sequence

from zapmux.store.memory_base import (
    MemoryTables,
    PairCode,
    Pending,
    copy,
    copy_or_none,
    duplicate,
    turn,
)
from zapmux.store.records import InboxMessage, SandboxQr, SandboxSession

#: The tables ``sandbox_wipe`` empties of one tenant (not the phones' inboxes).
_SESSION_TABLES = ("sandbox_sessions", "sandbox_qr", "sandbox_pair_codes", "sandbox_pending")


class MemorySandbox(MemoryTables):
    """Mixed into ``MemoryStore``."""

    async def sandbox_session(self, tenant_id: str) -> SandboxSession | None:
        await turn()
        return copy_or_none(self.tables.sandbox_sessions.get(tenant_id))

    async def sandbox_save_session(self, session: SandboxSession) -> None:
        await turn()
        self.tables.sandbox_sessions[session.tenant_id] = copy(session)

    async def sandbox_set_network(self, tenant_id: str, down: bool) -> bool:
        await turn()
        session = self.tables.sandbox_sessions.get(tenant_id)
        if session is not None:
            session.network_down = down
        return session is not None

    async def sandbox_wipe(self, tenant_id: str) -> None:
        await turn()
        for name in _SESSION_TABLES:
            rows = getattr(self.tables, name)
            for key in [k for k, row in rows.items() if row.tenant_id == tenant_id]:
                del rows[key]

    async def sandbox_issue_qr(self, qr: SandboxQr) -> None:
        await turn()
        if qr.code in self.tables.sandbox_qr:
            raise duplicate("sandbox_qr", qr.code)
        self._retire_qr(qr.tenant_id)
        self.tables.sandbox_qr[qr.code] = copy(qr)

    def _retire_qr(self, tenant_id: str) -> None:
        for issued in self.tables.sandbox_qr.values():
            if issued.tenant_id == tenant_id:
                issued.current = False

    async def sandbox_find_qr(self, code: str) -> SandboxQr | None:
        await turn()
        return copy_or_none(self.tables.sandbox_qr.get(code))

    async def sandbox_retire_qr(self, tenant_id: str) -> None:
        await turn()
        self._retire_qr(tenant_id)

    async def sandbox_add_pair_code(
        self, code: str, tenant_id: str, phone: str, expires_at: float
    ) -> None:
        await turn()
        codes = self.tables.sandbox_pair_codes
        if code in codes and codes[code].tenant_id != tenant_id:
            raise duplicate("sandbox_pair_codes", code)
        for old in [c for c, row in codes.items() if row.tenant_id == tenant_id]:
            del codes[old]  # one code a tenant
        codes[code] = PairCode(code, tenant_id, phone, expires_at)

    async def sandbox_take_pair_code(self, code: str) -> tuple[str, str, float] | None:
        await turn()
        row = self.tables.sandbox_pair_codes.pop(code, None)
        return (row.tenant_id, row.phone, row.expires_at) if row else None

    async def sandbox_set_phone(self, phone: str, on_whatsapp: bool) -> None:
        await turn()
        self.tables.sandbox_phones[phone] = on_whatsapp

    async def sandbox_phones(self, phones: Sequence[str]) -> dict[str, bool]:
        await turn()
        known = self.tables.sandbox_phones
        return {p: known[p] for p in phones if p in known}

    async def sandbox_deliver_to_phone(
        self, message: InboxMessage, receipt: str | None = None
    ) -> int | None:
        await turn()
        row = copy(message)
        row.id, row.extra = self._new_id("sandbox_inbox"), {}  # ``extra`` is not kept
        self.tables.sandbox_inbox[row.id] = row
        return None if receipt is None else self._push(message.tenant_id, receipt)

    async def sandbox_inbox(self, phone: str, unread_only: bool = False) -> list[InboxMessage]:
        await turn()
        return [copy(m) for m in self._inbox(phone, unread_only)]

    def _inbox(self, phone: str, unread_only: bool) -> list[InboxMessage]:
        rows = self.tables.sandbox_inbox.values()
        return [m for m in rows if m.phone == phone and not (unread_only and m.read)]

    async def sandbox_mark_read(self, phone: str) -> list[InboxMessage]:
        await turn()
        unread = self._inbox(phone, unread_only=True)
        shown = [copy(m) for m in unread]  # as they were: unread
        for message in unread:
            message.read = True
        return shown

    async def sandbox_push(self, tenant_id: str, event: str) -> int:
        await turn()
        return self._push(tenant_id, event)

    def _push(self, tenant_id: str, event: str) -> int:
        pending_id = self._new_id("sandbox_pending")
        self.tables.sandbox_pending[pending_id] = Pending(pending_id, tenant_id, event, time.time())
        return pending_id

    async def sandbox_pending(self, tenant_id: str, limit: int = 100) -> list[tuple[int, str]]:
        await turn()
        rows = self.tables.sandbox_pending.values()
        return [(p.id, p.event) for p in rows if p.tenant_id == tenant_id][:limit]

    async def sandbox_waiting(self) -> set[str]:
        await turn()
        return {p.tenant_id for p in self.tables.sandbox_pending.values()}

    async def sandbox_reset(self) -> None:
        await turn()
        for name in (*_SESSION_TABLES, "sandbox_phones", "sandbox_inbox"):
            getattr(self.tables, name).clear()

    async def sandbox_ack(self, *pending_ids: int) -> None:
        await turn()
        for pending_id in pending_ids:
            self.tables.sandbox_pending.pop(pending_id, None)
