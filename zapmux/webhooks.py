"""Queueing webhooks: every event bound for a webhook becomes an outbox row first.

Incoming messages go to the tenant's webhook, else to Flask, in the old server's flat
payload (inbound.py records them and builds it). Other events (``status``, ``qr``,
``receipt``, ``message.sent``) are published live and, to tenants that asked for
them, queued in the envelope ``{event, tenant_id, timestamp, data}``. The seed's
``POST /webhook`` relays a payload to Flask the same way. The outbox's ``Deliverer``
posts the rows (outbox.py).
"""

from __future__ import annotations

import time
from typing import Any

from zapmux.errors import TenantNotFound
from zapmux.hub import Hub
from zapmux.locks import KeyedLocks
from zapmux.outbox import FLASK, Deliverer, new_delivery, pinned_target, tenant_target
from zapmux.store.base import Store, TenantStore
from zapmux.store.records import Delivery, TenantRecord


class Webhooks:
    """Turns events into outbox rows for each tenant's webhook, and wakes the deliverer."""

    def __init__(
        self,
        store: Store,
        hub: Hub,
        deliverer: Deliverer,
        tenants: TenantStore | None = None,
    ) -> None:
        self.store = store
        self.tenants = tenants or store  # the node's TenantDirectory: from memory
        self.hub = hub
        self.deliverer = deliverer
        # Envelopes are queued from separate tasks (one per status change); taking the
        # tenant's lock first keeps their rows in the order the changes happened.
        self.queue_locks = KeyedLocks()

    async def tenant(self, tenant_id: str) -> TenantRecord | None:
        """The tenant's record as its webhooks need it (its URL, secret, events)."""
        return await self.tenants.get_tenant(tenant_id)

    def wake(self) -> None:
        """New rows are in the outbox: the deliverer looks at once."""
        self.deliverer.queued()

    @staticmethod
    def target(tenant_id: str, tenant: TenantRecord | None) -> str:
        """Where this tenant's messages go: its webhook, else the Flask URL (both
        resolved when each attempt is made, so a changed URL applies to queued rows)."""
        return tenant_target(tenant_id) if tenant and tenant.webhook_url else FLASK

    def message_delivery(
        self, tenant: TenantRecord, payload: dict[str, Any], chat: str
    ) -> Delivery:
        """The outbox row of an incoming message (written with the message, before the
        engine's acknowledgement)."""
        return new_delivery(
            event="message",
            target=self.target(tenant.id, tenant),
            payload=payload,
            chat_key=f"{tenant.id}:{chat}",
            tenant_id=tenant.id,
        )

    async def emit(self, tenant_id: str, event: str, data: dict[str, Any], chat: str = "") -> None:
        """Publish live, and queue a webhook when the tenant subscribed to ``event``."""
        envelope = self.hub.publish(event, tenant_id, data)
        await self.queue_webhook(tenant_id, envelope, chat)

    async def queue_webhook(self, tenant_id: str, envelope: dict[str, Any], chat: str = "") -> None:
        """Queue ``envelope`` for the tenant's webhook if it subscribed to its event."""
        event = envelope["event"]
        async with self.queue_locks.hold(tenant_id):
            tenant = await self.tenant(tenant_id)
            if tenant is None or not tenant.webhook_url or event not in tenant.events:
                return
            delivery = new_delivery(
                event=event,
                target=tenant_target(tenant_id),
                payload=envelope,
                chat_key=f"{tenant_id}:{chat or event}",
                tenant_id=tenant_id,
            )
            try:
                await self.store.enqueue_deliveries([delivery], tenant.incarnation)
            except TenantNotFound:
                return  # deleted meanwhile: its webhooks went with it
        self.wake()

    async def relay(self, payload: dict[str, Any], url: str | None = None) -> Delivery:
        """The seed's ``POST /webhook``: forward a payload to Flask through the outbox
        (or to ``url``, an explicit destination, which stays pinned)."""
        tenant = str(payload.get("empresa_id", ""))
        delivery = new_delivery(
            event="relay",
            target=pinned_target(url) if url else FLASK,
            payload=payload,
            chat_key=f"relay:{tenant}:{payload.get('phone', '')}",
            tenant_id=tenant or None,
        )
        delivery.created_at = time.time()
        await self.store.enqueue_deliveries([delivery])
        self.wake()
        return delivery
