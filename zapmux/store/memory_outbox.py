"""The webhook outbox of the in-memory store: enqueue, claim (the oldest pending row of
each chat, locked for the claimer), record outcomes, list, replay and prune, as
``store/sql_outbox.py`` does on SQL."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Sequence

from zapmux.states import DeliveryStatus
from zapmux.store.memory_base import MemoryTables, copy, copy_or_none, duplicate, turn
from zapmux.store.records import Delivery, DeliveryResult


class MemoryOutbox(MemoryTables):
    """Mixed into ``MemoryStore``."""

    def _deliveries_taken(self, deliveries: Sequence[Delivery]) -> bool:
        """Whether any of these ids is in the outbox already (or twice among them)."""
        ids = [d.delivery_id for d in deliveries]
        return len(set(ids)) < len(ids) or any(i in self.tables.outbox for i in ids)

    def _insert_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        if self._deliveries_taken(deliveries):
            raise duplicate("outbox", [d.delivery_id for d in deliveries])
        now = time.time()
        for d in deliveries:
            d.created_at = d.created_at or now
            d.next_attempt_at = d.next_attempt_at or now
            row = copy(d)
            row.id = self._new_id("outbox")
            self.tables.outbox[row.delivery_id] = row

    def _heads(self) -> list[Delivery]:
        """The oldest pending row of each chat: the only one of it that may go next."""
        heads: dict[str, Delivery] = {}
        for d in self.tables.outbox.values():
            if d.status == DeliveryStatus.PENDING:
                heads.setdefault(d.chat_key, d)
        return list(heads.values())

    async def enqueue_deliveries(
        self, deliveries: Sequence[Delivery], incarnation: str | None = None
    ) -> None:
        await turn()
        self._check_life(deliveries[0].tenant_id if deliveries else None, incarnation)
        self._insert_deliveries(deliveries)

    async def claim_deliveries(self, limit: int, lock_s: float) -> list[Delivery]:
        await turn()
        now = time.time()
        due = [d for d in self._heads() if d.next_attempt_at <= now and _unlocked(d, now)]
        claimed = sorted(due, key=lambda d: (d.next_attempt_at, d.id or 0))[:limit]
        for d in claimed:
            d.locked_until = now + lock_s
        return [copy(d) for d in claimed]

    async def finish_deliveries(self, results: Sequence[DeliveryResult]) -> None:
        await turn()
        now = time.time()
        for r in results:
            d = self.tables.outbox.get(r.delivery_id)
            if d is None:
                continue
            d.status, d.attempts, d.last_error = r.status, r.attempts, r.last_error
            d.locked_until = None
            if r.next_attempt_at is not None:
                d.next_attempt_at = r.next_attempt_at
            d.delivered_at = now if r.status == DeliveryStatus.DELIVERED else None

    async def release_deliveries(self, delivery_ids: Sequence[str] | None = None) -> int:
        await turn()
        locked = [
            d
            for d in self.tables.outbox.values()
            if d.status == DeliveryStatus.PENDING
            and d.locked_until is not None
            and (delivery_ids is None or d.delivery_id in delivery_ids)
        ]
        for d in locked:
            d.locked_until = None
        return len(locked)

    async def purge_delivered(self, older_than: float) -> int:
        await turn()
        old = [
            d.delivery_id
            for d in self.tables.outbox.values()
            if d.status == DeliveryStatus.DELIVERED
            and d.delivered_at is not None
            and d.delivered_at < older_than
        ]
        for delivery_id in old:
            del self.tables.outbox[delivery_id]
        return len(old)

    async def list_deliveries(
        self, status: str | None = None, tenant_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        await turn()
        found = (
            d
            for d in reversed(self.tables.outbox.values())
            if (not status or d.status == status) and (not tenant_id or d.tenant_id == tenant_id)
        )
        return [copy(d) for d in itertools.islice(found, limit)]

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        await turn()
        return copy_or_none(self.tables.outbox.get(delivery_id))

    def _chosen(self, delivery_id: str | None, tenant_id: str | None) -> list[Delivery]:
        """One given delivery unless it is in flight now; else every dead one (of a tenant)."""
        if delivery_id:
            d = self.tables.outbox.get(delivery_id)
            idle = d is not None and (
                d.status != DeliveryStatus.PENDING or _unlocked(d, time.time())
            )
            return [d] if d is not None and idle else []
        return [
            d
            for d in self.tables.outbox.values()
            if d.status == DeliveryStatus.DEAD and (not tenant_id or d.tenant_id == tenant_id)
        ]

    async def discard_deliveries(
        self, *, delivery_id: str | None = None, tenant_id: str | None = None
    ) -> int:
        await turn()
        chosen = self._chosen(delivery_id, tenant_id)
        for d in chosen:
            del self.tables.outbox[d.delivery_id]
        return len(chosen)

    async def retry_deliveries(
        self, *, delivery_id: str | None = None, tenant_id: str | None = None
    ) -> int:
        await turn()
        chosen = self._chosen(delivery_id, tenant_id)
        now = time.time()
        for d in chosen:
            d.status, d.next_attempt_at, d.replayed_at = DeliveryStatus.PENDING, now, now
            d.locked_until, d.last_error = None, None
        return len(chosen)

    async def count_deliveries(self, statuses: Sequence[str] | None = None) -> dict[str, int]:
        await turn()
        rows = self.tables.outbox.values()
        return dict(Counter(d.status for d in rows if statuses is None or d.status in statuses))


def _unlocked(d: Delivery, now: float) -> bool:
    return d.locked_until is None or d.locked_until < now
