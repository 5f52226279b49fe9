"""The store in memory: the whole ``Store`` on dicts, for tests and for trying zapmux
out (``ZAPMUX_DATABASE_URL=memory://``). Nothing survives the process, and only one
process sees it (one node).

It keeps the SQL store's contract (``tests/contract/test_store_contract.py`` runs over
both): a deleted tenant leaves nothing a new tenant of the same id inherits, writes
for a deleted life are refused, the outbox hands out one row per chat in order, a
duplicate key raises the same ``IntegrityError``. How a call stays atomic:
``store.memory_base``. Lookups scan their table: sized for tests, not for load.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from zapmux.errors import TenantExists
from zapmux.states import MessageStatus, moved_by
from zapmux.store.base import Store
from zapmux.store.memory_base import (
    JidAnswer,
    Media,
    MemoryTables,
    Node,
    assign,
    copy,
    copy_or_none,
    duplicate,
    turn,
)
from zapmux.store.memory_outbox import MemoryOutbox
from zapmux.store.memory_sandbox import MemorySandbox
from zapmux.store.memory_schedule import MemoryCloud, MemoryOptOuts, MemorySchedule
from zapmux.store.records import (
    SEND_INTERRUPTED,
    DeadInbound,
    Delivery,
    IdempotentAnswer,
    MessageRecord,
    TenantRecord,
)


class MemoryStore(
    MemoryOutbox,
    MemorySandbox,
    MemoryCloud,
    MemorySchedule,
    MemoryOptOuts,
    MemoryTables,
    Store,
):
    """Everything zapmux persists, in this process's memory (see the module docstring)."""

    single_node = True

    def __init__(self) -> None:
        self.reset()

    # --- lifecycle -----------------------------------------------------------------
    async def migrate(self) -> None:
        await turn()

    async def ping(self) -> None:
        await turn()

    async def close(self) -> None:
        await turn()

    # --- tenants -------------------------------------------------------------------
    async def create_tenant(self, tenant: TenantRecord) -> TenantRecord:
        await turn()
        if tenant.id in self.tables.tenants:
            raise TenantExists(f"tenant {tenant.id!r} already exists")
        tenant.created_at = tenant.updated_at = time.time()
        tenant.incarnation = tenant.incarnation or secrets.token_hex(8)
        self.tables.tenants[tenant.id] = copy(tenant)
        return tenant

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        await turn()
        return copy_or_none(self.tables.tenants.get(tenant_id))

    async def tenant_by_token_hash(self, token_hash: str) -> TenantRecord | None:
        await turn()
        found = (t for t in self.tables.tenants.values() if t.token_hash == token_hash)
        return copy_or_none(next(found, None))

    async def list_tenants(
        self, after: str | None = None, limit: int | None = None
    ) -> list[TenantRecord]:
        await turn()
        ids = sorted(i for i in self.tables.tenants if after is None or i > after)
        return [copy(self.tables.tenants[i]) for i in ids[:limit]]

    async def count_tenants(self) -> dict[str, int]:
        await turn()
        return dict(Counter(t.status for t in self.tables.tenants.values()))

    async def update_tenant(self, tenant_id: str, **fields: Any) -> bool:
        await turn()
        tenant = self.tables.tenants.get(tenant_id)
        if tenant is None:
            return False
        assign(tenant, {**fields, "updated_at": time.time()})
        return True

    async def delete_tenant(self, tenant_id: str) -> bool:
        await turn()
        self.tables.drop_tenant(tenant_id)
        return self.tables.tenants.pop(tenant_id, None) is not None

    # --- leases --------------------------------------------------------------------
    async def acquire_leases(self, node: str, lease_s: float, limit: int) -> list[str]:
        await turn()
        now = time.time()
        free = [t for t in self.tables.tenants.values() if _free(t, node, now)]
        taken = sorted(free, key=lambda t: t.id)[:limit]
        for tenant in taken:
            tenant.owner, tenant.lease_until = node, now + lease_s
        return [t.id for t in taken]

    async def heartbeat(self, node: str, url: str) -> None:
        await turn()
        self.tables.nodes[node] = Node(node, url, time.time())

    async def node_url(self, node: str, max_age_s: float) -> str | None:
        await turn()
        found = self.tables.nodes.get(node)
        return found.url if found and found.heartbeat_at > time.time() - max_age_s else None

    async def live_nodes(self, max_age_s: float) -> list[tuple[str, str]]:
        await turn()
        since = time.time() - max_age_s
        nodes = sorted(self.tables.nodes.values(), key=lambda n: n.id)
        return [(n.id, n.url) for n in nodes if n.heartbeat_at > since]

    async def tenant_owner(self, tenant_id: str) -> tuple[str | None, float] | None:
        await turn()
        tenant = self.tables.tenants.get(tenant_id)
        return (tenant.owner, tenant.lease_until or 0.0) if tenant else None

    async def acquire_lease(self, node: str, tenant_id: str, lease_s: float) -> bool:
        await turn()
        now = time.time()
        tenant = self.tables.tenants.get(tenant_id)
        if tenant is None or not _free(tenant, node, now):
            return False
        tenant.owner, tenant.lease_until = node, now + lease_s
        return True

    async def release_leases(self, node: str, tenant_ids: Sequence[str] | None = None) -> None:
        await turn()
        for tenant in self.tables.tenants.values():
            if tenant.owner == node and (tenant_ids is None or tenant.id in tenant_ids):
                tenant.owner, tenant.lease_until = None, None

    # --- messages and the send queue -----------------------------------------------
    async def add_message(
        self,
        message: MessageRecord,
        incarnation: str | None = None,
        key: IdempotentAnswer | None = None,
    ) -> MessageRecord:
        await turn()
        message.created_at = message.updated_at = time.time()
        self._check_life(message.tenant_id, incarnation)
        message.id = self._insert_message(message)
        if key is not None:
            self.tables.idempotency[(key.tenant_id, key.key)] = copy(key)
        return message

    async def record_incoming(
        self,
        message: MessageRecord,
        deliveries: Sequence[Delivery],
        incarnation: str | None = None,
    ) -> bool:
        await turn()
        message.created_at = message.updated_at = time.time()
        self._check_life(message.tenant_id, incarnation)
        if _key(message) in self.tables.messages or self._deliveries_taken(deliveries):
            return False
        self._insert_message(message)
        self._insert_deliveries(deliveries)
        return True

    def _insert_message(self, message: MessageRecord) -> int:
        """Add ``message`` to the log with a new ``id`` (its id: the caller's record
        keeps the one it had, as on SQL)."""
        if _key(message) in self.tables.messages:
            raise duplicate("messages", _key(message))
        row = copy(message)
        row.id = self._new_id("messages")
        self.tables.messages[_key(row)] = row
        return row.id

    async def get_message(self, tenant_id: str, message_id: str) -> MessageRecord | None:
        await turn()
        return copy_or_none(self.tables.messages.get((tenant_id, message_id)))

    async def list_messages(
        self,
        tenant_id: str,
        direction: str | None = None,
        limit: int = 50,
        before: int | None = None,
        status: str | None = None,
    ) -> list[MessageRecord]:
        await turn()
        # "sending" is shown as "queued" (MessageRecord.public)
        statuses = (
            {MessageStatus.QUEUED, MessageStatus.SENDING}
            if status == MessageStatus.QUEUED
            else {status}
        )
        found = (
            m
            for m in reversed(self.tables.messages.values())
            if m.tenant_id == tenant_id
            and (not direction or m.direction == direction)
            and (not status or m.status in statuses)
            and (before is None or (m.id or 0) < before)
        )
        return [copy(m) for m in itertools.islice(found, limit)]

    def _queued(self, tenant_id: str) -> Iterable[MessageRecord]:
        """The tenant's send queue, in order."""
        return (
            m
            for m in self.tables.messages.values()
            if m.tenant_id == tenant_id
            and m.direction == "out"
            and m.status == MessageStatus.QUEUED
        )

    async def next_queued(self, tenant_id: str) -> MessageRecord | None:
        await turn()
        return copy_or_none(next(iter(self._queued(tenant_id)), None))

    async def count_queued(self, tenant_id: str) -> int:
        await turn()
        return sum(1 for _ in self._queued(tenant_id))

    async def update_message(self, tenant_id: str, message_id: str, **fields: Any) -> bool:
        await turn()
        message = self.tables.messages.get((tenant_id, message_id))
        if message is None:
            return False
        assign(message, {**fields, "updated_at": time.time()})
        return True

    async def mark_sent(
        self,
        tenant_id: str,
        message_id: str,
        wa_id: str,
        answer: IdempotentAnswer | None = None,
        incarnation: str | None = None,
    ) -> None:
        await turn()
        if answer is not None:
            self._check_life(tenant_id, incarnation)
            self.tables.idempotency[(answer.tenant_id, answer.key)] = copy(answer)
        message = self.tables.messages.get((tenant_id, message_id))
        if message is None:
            return
        message.wa_id, message.payload, message.updated_at = wa_id, None, time.time()
        if message.status in (MessageStatus.QUEUED, MessageStatus.SENDING):
            message.status = MessageStatus.SENT

    async def apply_receipt(
        self, tenant_id: str, wa_ids: Sequence[str], status: str, error: str | None = None
    ) -> list[str]:
        await turn()
        lower = moved_by(status)
        moved = [
            m
            for m in self.tables.messages.values()
            if m.tenant_id == tenant_id
            and m.direction == "out"
            and m.wa_id in wa_ids
            and m.status in lower
        ]
        now = time.time()
        for message in moved:
            message.status, message.updated_at = status, now
            if error:
                message.error = error
        return [m.message_id for m in moved]

    async def fail_interrupted_sends(self, tenant_id: str) -> int:
        await turn()
        now = time.time()
        interrupted = [
            m
            for m in self.tables.messages.values()
            if m.tenant_id == tenant_id
            and m.direction == "out"
            and m.status == MessageStatus.SENDING
        ]
        for message in interrupted:
            message.status, message.error, message.updated_at = (
                MessageStatus.FAILED,
                SEND_INTERRUPTED,
                now,
            )
        return len(interrupted)

    # --- media ---------------------------------------------------------------------
    async def save_media(
        self,
        tenant_id: str,
        message_id: str,
        mimetype: str,
        filename: str | None,
        data: bytes,
        incarnation: str | None = None,
    ) -> None:
        await turn()
        self._check_life(tenant_id, incarnation)
        media = Media(tenant_id, message_id, mimetype, filename, data)
        self.tables.media[(tenant_id, message_id)] = media

    async def get_media(
        self, tenant_id: str, message_id: str
    ) -> tuple[str, str | None, bytes] | None:
        await turn()
        media = self.tables.media.get((tenant_id, message_id))
        return (media.mimetype, media.filename, media.data) if media else None

    # --- idempotency and the JID cache ---------------------------------------------
    async def get_idempotent(
        self, tenant_id: str, key: str, max_age_s: float
    ) -> IdempotentAnswer | None:
        await turn()
        answer = self.tables.idempotency.get((tenant_id, key))
        fresh = answer is not None and answer.created_at > time.time() - max_age_s
        return copy(answer) if answer is not None and fresh else None

    async def put_idempotent(
        self, answer: IdempotentAnswer, incarnation: str | None = None
    ) -> None:
        await turn()
        self._check_life(answer.tenant_id, incarnation)
        self.tables.idempotency[(answer.tenant_id, answer.key)] = copy(answer)

    async def forget_idempotent(self, tenant_id: str, key: str) -> None:
        await turn()
        self.tables.idempotency.pop((tenant_id, key), None)

    async def get_jid(
        self, tenant_id: str, phone: str, max_age_s: float
    ) -> tuple[bool, str | None] | None:
        await turn()
        answer = self.tables.jid_cache.get((tenant_id, phone))
        if answer is None or answer.checked_at <= time.time() - max_age_s:
            return None
        return (answer.exists, answer.jid)

    async def put_jid(
        self,
        tenant_id: str,
        phone: str,
        exists_: bool,
        jid: str | None,
        incarnation: str | None = None,
    ) -> None:
        await turn()
        self._check_life(tenant_id, incarnation)
        answer = JidAnswer(tenant_id, phone, bool(exists_), jid, time.time())
        self.tables.jid_cache[(tenant_id, phone)] = answer

    # --- inbound events set aside --------------------------------------------------
    async def add_dead_inbound(self, tenant_id: str, event: str, error: str) -> int:
        await turn()
        dead_id = self._new_id("inbound_dead")
        error = error.replace("\x00", "\\x00")  # as SQL keeps it (PostgreSQL refuses NUL)
        row = DeadInbound(tenant_id, event, error, time.time(), dead_id)
        self.tables.inbound_dead[dead_id] = row
        return dead_id

    async def list_dead_inbound(
        self, tenant_id: str | None = None, limit: int = 100
    ) -> list[DeadInbound]:
        await turn()
        rows = self.tables.inbound_dead.values()
        found = (d for d in rows if not tenant_id or d.tenant_id == tenant_id)
        return [copy(d) for d in itertools.islice(found, limit)]

    async def get_dead_inbound(self, dead_id: int) -> DeadInbound | None:
        await turn()
        return copy_or_none(self.tables.inbound_dead.get(dead_id))

    async def drop_dead_inbound(self, dead_id: int) -> None:
        await turn()
        self.tables.inbound_dead.pop(dead_id, None)


def _key(message: MessageRecord) -> tuple[str, str]:
    return (message.tenant_id, message.message_id)


def _free(tenant: TenantRecord, node: str, now: float) -> bool:
    """Whether ``node`` may take ``tenant``: unowned, its own, or the lease ran out."""
    expired = tenant.lease_until is not None and tenant.lease_until < now
    return tenant.owner is None or tenant.owner == node or expired
