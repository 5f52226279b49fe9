"""Scheduled sends: a message with ``send_at`` waits in the store (status
``scheduled``) and joins its tenant's queue at that time.

One timer for the whole node, not one per tenant: it sleeps until the earliest due
time among the tenants this node runs (it holds their lease) and is woken early when
that may have changed — a new scheduled send, or a tenant taken over (a restart, or
another node's death on PostgreSQL). At its time a send to a number that opted out
meanwhile fails with ``opted_out``; the others go to the back of the queue, where
pacing applies as to any send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from zapmux.errors import InvalidSchedule, OptedOut
from zapmux.optouts import OptOuts
from zapmux.states import MessageStatus
from zapmux.store.base import Store
from zapmux.store.records import MessageRecord

log = logging.getLogger("zapmux.scheduler")

BATCH = 200  # due sends released per store round
RECHECK_S = 30.0  # the longest sleep: a node-wide safety net, not a poll per tenant
RETRY_S = 1.0  # after a store error
MAX_AHEAD_S = 366 * 24 * 3600.0
MAX_BEHIND_S = 60.0


class Scheduler:
    """Releases due scheduled sends into their tenants' queues, on one timer."""

    def __init__(
        self, store: Store, node: str, optouts: OptOuts, queued: Callable[[str, int], None]
    ) -> None:
        self.store = store
        self.node = node
        self.optouts = optouts
        # (tenant, how many joined): counts them into its queue and wakes it
        self.queued = queued
        self.wakeup = asyncio.Event()
        self.released = 0

    def wake(self) -> None:
        """The earliest due time may have changed: look again now."""
        self.wakeup.set()

    async def run(self) -> None:
        """Forever: release what is due, then sleep until the next due time (or a wake)."""
        while True:
            self.wakeup.clear()
            try:
                await self.release_due()
                due = await self.store.next_scheduled_at(self.node)
            except Exception:
                log.exception("❌ the scheduler could not read the store; trying again")
                due = time.time() + RETRY_S
            sleep = RECHECK_S if due is None else min(RECHECK_S, max(0.0, due - time.time()))
            if sleep > 0:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel
                # that arrives as the wake-up does (a stop changes every tenant's status,
                # which wakes this), and the server's stop would wait for it forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(sleep):
                        await self.wakeup.wait()

    async def release_due(self) -> int:
        """Queue (or fail, when opted out) every scheduled send due now; how many."""
        count = 0
        while batch := await self.store.due_scheduled(self.node, time.time(), BATCH):
            await self._release(batch)
            count += len(batch)
        self.released += count
        return count

    async def _release(self, batch: list[MessageRecord]) -> None:
        """One batch: opt-outs looked up at once, the rest promoted in one transaction."""
        opted_out = await self.optouts.opted_out([(r.tenant_id, r.phone or "") for r in batch])
        for record in batch:
            if (record.tenant_id, record.phone or "") in opted_out:
                await self._fail_opted_out(record)
        keys = [
            (r.tenant_id, r.message_id)
            for r in batch
            if (r.tenant_id, r.phone or "") not in opted_out
        ]
        promoted = await self.store.promote_scheduled(keys)
        for tenant_id, count in Counter(tenant_id for tenant_id, _ in promoted).items():
            self.queued(tenant_id, count)
        if promoted:
            log.info("⏰ %d scheduled message(s) joined their queues", len(promoted))

    async def _fail_opted_out(self, record: MessageRecord) -> None:
        try:
            await self.optouts.refuse_if_opted_out(record.tenant_id, record.phone or "")
        except OptedOut as exc:
            if await self.store.cancel_message(record.tenant_id, record.message_id):
                await self.store.update_message(
                    record.tenant_id,
                    record.message_id,
                    status=MessageStatus.FAILED,
                    error=exc.message,
                    error_code=exc.code,
                )
                logging.getLogger(f"zapmux.tenant.{record.tenant_id}").warning(
                    "❌ scheduled message %s not sent: %s", record.message_id, exc
                )


def check_send_at(send_at: float, now: float) -> None:
    """422 unless ``send_at`` is at most a minute past and at most a year ahead."""
    if send_at < now - MAX_BEHIND_S:
        raise InvalidSchedule(f"send_at {send_at:.0f} is more than a minute in the past")
    if send_at > now + MAX_AHEAD_S:
        raise InvalidSchedule(f"send_at {send_at:.0f} is more than a year ahead")
