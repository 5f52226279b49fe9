"""Scheduled sends and cancelling (as ``store/sql_schedule.py``), opt-outs (as
``store/sql_optouts.py``) and cloud credentials (as ``store/sql_cloud.py``) in the
in-memory store."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from zapmux.errors import Conflict
from zapmux.states import MessageStatus
from zapmux.store.memory_base import (
    MemoryTables,
    assign,
    copy,
    copy_or_none,
    duplicate,
    turn,
)
from zapmux.store.records import CloudAccount, MessageRecord, OptOut
from zapmux.store.sql_schedule import CANCELLABLE, SENT


class MemorySchedule(MemoryTables):
    """Mixed into ``MemoryStore``."""

    def _scheduled_of(self, node: str) -> list[MessageRecord]:
        """Scheduled rows of the tenants ``node`` runs (it holds their lease), with a time."""
        owned = {t.id for t in self.tables.tenants.values() if t.owner == node}
        return [
            m
            for m in self.tables.messages.values()
            if m.status == MessageStatus.SCHEDULED
            and m.tenant_id in owned
            and m.send_at is not None
        ]

    async def next_scheduled_at(self, node: str) -> float | None:
        await turn()
        return min((m.send_at or 0.0 for m in self._scheduled_of(node)), default=None)

    async def due_scheduled(self, node: str, now: float, limit: int) -> list[MessageRecord]:
        await turn()
        due = [m for m in self._scheduled_of(node) if (m.send_at or 0.0) <= now]
        due.sort(key=lambda m: (m.send_at or 0.0, m.id or 0))
        return [copy(m) for m in due[:limit]]

    async def promote_scheduled(self, keys: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Each promoted row gets a new ``id``, which puts it at the back of its queue;
        the scheduled rows of tenants that are gone go (as on SQL)."""
        await turn()
        messages = self.tables.messages
        scheduled = {
            k for k in keys if k in messages and messages[k].status == MessageStatus.SCHEDULED
        }
        moved = [k for k in keys if k in scheduled and k[0] in self.tables.tenants]
        if len(set(moved)) < len(moved):  # one row written twice: SQL refuses the batch
            raise duplicate("messages", moved)
        taken = {k: messages.pop(k) for k in scheduled}
        now = time.time()
        for k in moved:
            row = taken[k]
            row.id, row.status, row.updated_at = self._new_id("messages"), MessageStatus.QUEUED, now
            messages[k] = row
        return moved

    async def cancel_message(self, tenant_id: str, message_id: str) -> str | None:
        await turn()
        message = self.tables.messages.get((tenant_id, message_id))
        for status in CANCELLABLE:
            if self._move(message, status, status=MessageStatus.CANCELLED, payload=None):
                return status
        return None

    async def claim_queued(self, tenant_id: str, message_id: str, chat: str) -> bool:
        await turn()
        message = self.tables.messages.get((tenant_id, message_id))
        return self._move(message, MessageStatus.QUEUED, status=MessageStatus.SENDING, chat=chat)

    @staticmethod
    def _move(message: MessageRecord | None, was: str, **values: Any) -> bool:
        """Update an outgoing message only while its status is ``was``."""
        if message is None or message.direction != "out" or message.status != was:
            return False
        assign(message, {**values, "updated_at": time.time()})
        return True

    async def last_outgoing(self, tenant_id: str, phones: Sequence[str]) -> MessageRecord | None:
        await turn()
        found = (
            m
            for m in reversed(self.tables.messages.values())
            if m.tenant_id == tenant_id
            and m.phone in phones
            and m.direction == "out"
            and m.status in SENT
        )
        return copy_or_none(next(found, None))

    async def find_outgoing(self, tenant_id: str, wa_id: str) -> MessageRecord | None:
        await turn()
        found = (
            m
            for m in self.tables.messages.values()
            if m.tenant_id == tenant_id and m.wa_id == wa_id and m.direction == "out"
        )
        return copy_or_none(next(found, None))


class MemoryOptOuts(MemoryTables):
    """Mixed into ``MemoryStore``."""

    async def add_opt_out(self, opt_out: OptOut, incarnation: str | None = None) -> None:
        await turn()
        self._check_life(opt_out.tenant_id, incarnation)
        self.tables.opt_outs[(opt_out.tenant_id, opt_out.phone)] = copy(opt_out)

    async def find_opt_out(self, tenant_id: str, phones: Sequence[str]) -> OptOut | None:
        await turn()
        found = (self.tables.opt_outs.get((tenant_id, p)) for p in phones)
        return copy_or_none(next((o for o in found if o is not None), None))

    async def opted_out_among(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        await turn()
        return {pair for pair in pairs if pair in self.tables.opt_outs}

    async def list_opt_outs(self, tenant_id: str) -> list[OptOut]:
        await turn()
        mine = [o for o in self.tables.opt_outs.values() if o.tenant_id == tenant_id]
        return [copy(o) for o in sorted(mine, key=lambda o: (o.created_at, o.phone))]

    async def remove_opt_out(self, tenant_id: str, phones: Sequence[str]) -> int:
        await turn()
        removed = [self.tables.opt_outs.pop((tenant_id, p), None) for p in set(phones)]
        return sum(1 for o in removed if o is not None)


class MemoryCloud(MemoryTables):
    """Mixed into ``MemoryStore``."""

    async def cloud_save(self, account: CloudAccount) -> None:
        await turn()
        accounts = self.tables.cloud_accounts
        if any(
            a.phone_number_id == account.phone_number_id and a.tenant_id != account.tenant_id
            for a in accounts.values()
        ):
            raise Conflict(
                f"phone number id {account.phone_number_id} already belongs to another tenant",
                code="phone_number_id_in_use",
            )
        account.created_at = account.created_at or time.time()
        accounts[account.tenant_id] = copy(account)

    async def cloud_account(self, tenant_id: str) -> CloudAccount | None:
        await turn()
        return copy_or_none(self.tables.cloud_accounts.get(tenant_id))

    async def cloud_account_for_number(self, phone_number_id: str) -> CloudAccount | None:
        await turn()
        accounts = self.tables.cloud_accounts.values()
        found = (a for a in accounts if a.phone_number_id == phone_number_id)
        return copy_or_none(next(found, None))

    async def cloud_verify_tokens(self) -> list[str]:
        await turn()
        return [a.verify_token for a in self.tables.cloud_accounts.values()]

    async def cloud_forget(self, tenant_id: str) -> None:
        await turn()
        self.tables.cloud_accounts.pop(tenant_id, None)
