"""What arrives from WhatsApp, turned into the message log and outbox rows.

Incoming messages reach the webhook in the old server's flat payload; other events
(``status``, ``qr``, ``receipt``, ``message.sent``) go, to tenants that asked for
them, in the envelope ``{event, tenant_id, timestamp, data}``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

from zapmux.config import Settings
from zapmux.events import Event, IncomingMessage, Receipt
from zapmux.hub import Hub
from zapmux.ids import empresa_id
from zapmux.metrics import Metrics
from zapmux.optouts import OptOuts, keywords_of, matched_keyword
from zapmux.outbox import Deliverer, new_delivery
from zapmux.polls import Polls, vote_text
from zapmux.store.base import Store
from zapmux.store.records import Delivery, MessageRecord, TenantRecord

log = logging.getLogger("zapmux.inbound")


def message_payload(tenant_id: str, m: IncomingMessage) -> dict[str, Any]:
    """The seed's payload for Flask's ``/webhook/whatsapp``, plus what it lacked."""
    payload: dict[str, Any] = {
        "phone": m.phone,
        "message": m.text,
        "message_type": m.message_type,
        "empresa_id": empresa_id(tenant_id),
        "message_id": m.message_id,
        "timestamp": int(m.timestamp),
        "push_name": m.push_name,
        "chat": m.chat,
        "is_group": m.is_group,
        "from_me": m.from_me,
        "tenant_id": tenant_id,
    }
    if m.media is not None:
        payload["media"] = {
            "url": f"/tenants/{tenant_id}/messages/{m.message_id}/media",
            "mimetype": m.media.mimetype,
            "filename": m.media.filename,
            "size": len(m.media.data),
        }
    return payload


class Dispatcher:
    """Records engine events and queues their webhooks."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        hub: Hub,
        deliverer: Deliverer,
        metrics: Metrics | None = None,
        optouts: OptOuts | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.hub = hub
        self.deliverer = deliverer
        self.metrics = metrics or Metrics()
        self.optouts = optouts or OptOuts(store)
        self.polls = Polls(store)
        # Envelopes are queued from separate tasks (one per status change); taking this
        # lock first keeps their rows in the order the changes happened.
        self.queue_lock = asyncio.Lock()

    def target(self, tenant: TenantRecord | None) -> tuple[str, str | None]:
        """Where this tenant's webhooks go, and with which secret."""
        if tenant and tenant.webhook_url:
            return tenant.webhook_url, tenant.webhook_secret
        return f"{self.settings.flask_url}/webhook/whatsapp", None

    async def handle(self, tenant_id: str, event: Event) -> None:
        if isinstance(event, IncomingMessage):
            await self.incoming(tenant_id, event)
        elif isinstance(event, Receipt):
            await self.receipt(tenant_id, event)

    async def answers(
        self, tenant: TenantRecord | None, tenant_id: str, m: IncomingMessage
    ) -> tuple[IncomingMessage, dict[str, Any]]:
        """The message as the webhook gets it: a vote with its answer's text, a typed
        answer with its question, an opt-out keyword recorded and flagged."""
        extra: dict[str, Any] = {}
        if m.vote is not None:
            extra["poll"] = await self.polls.vote(tenant_id, m.vote)
            m = dataclasses.replace(m, message_type="voto", text=vote_text(extra["poll"]))
        elif m.message_type == "texto":
            poll = await self.polls.typed_answer(tenant_id, m)
            if poll is not None:
                extra["poll"] = poll
            keyword = (
                None if m.from_me or m.is_group else matched_keyword(m.text, keywords_of(tenant))
            )
            if keyword is not None:
                # recorded first: a crash before the log below redelivers it, records again
                await self.optouts.record(tenant_id, m.phone, keyword, m.message_id)
                extra["opt_out"] = True
                logging.getLogger(f"zapmux.tenant.{tenant_id}").warning(
                    "🚫 %s opted out (wrote %r)", m.phone, m.text.strip()[:40]
                )
        return m, extra

    async def incoming(self, tenant_id: str, m: IncomingMessage) -> None:
        """Log the message and queue its webhook in one transaction (before the ack)."""
        tenant = await self.store.get_tenant(tenant_id)
        url, secret = self.target(tenant)
        m, extra = await self.answers(tenant, tenant_id, m)
        delivery = new_delivery(
            event="message",
            url=url,
            payload={**message_payload(tenant_id, m), **extra},
            chat_key=f"{tenant_id}:{m.chat}",
            tenant_id=tenant_id,
            secret=secret,
        )
        if m.media is not None:
            await self.store.save_media(
                tenant_id, m.message_id, m.media.mimetype, m.media.filename, m.media.data
            )
        record = MessageRecord(
            tenant_id=tenant_id,
            message_id=m.message_id,
            wa_id=m.message_id,
            direction="in",
            chat=m.chat,
            phone=m.phone,
            message_type=m.message_type,
            text=m.text,
            status="received",
            timestamp=m.timestamp,
            push_name=m.push_name,
            from_me=m.from_me,
            is_group=m.is_group,
            reply_to=m.reply_to,
            media_mimetype=m.media.mimetype if m.media else None,
            media_filename=m.media.filename if m.media else None,
            poll=json.dumps(extra["poll"]) if "poll" in extra else None,
        )
        if not await self.store.record_incoming(record, [delivery]):
            return  # seen before: already logged and queued
        self.metrics.inc("messages_received_total")
        self.deliverer.wake()
        logging.getLogger(f"zapmux.tenant.{tenant_id}").info(
            "📨 message from %s: %s", m.phone, (m.text or m.message_type)[:80]
        )
        self.hub.publish("message", tenant_id, record.public())

    async def receipt(self, tenant_id: str, r: Receipt) -> None:
        moved = await self.store.apply_receipt(tenant_id, r.message_ids, r.status)
        data = {
            "message_ids": moved or list(r.message_ids),
            "status": r.status,
            "chat": r.chat,
            "timestamp": r.timestamp,
        }
        await self.emit(tenant_id, "receipt", data, chat=r.chat)

    async def emit(self, tenant_id: str, event: str, data: dict[str, Any], chat: str = "") -> None:
        """Publish live, and queue a webhook when the tenant subscribed to ``event``."""
        envelope = self.hub.publish(event, tenant_id, data)
        await self.queue_webhook(tenant_id, envelope, chat)

    async def queue_webhook(self, tenant_id: str, envelope: dict[str, Any], chat: str = "") -> None:
        """Queue ``envelope`` for the tenant's webhook if it subscribed to its event."""
        event = envelope["event"]
        async with self.queue_lock:
            tenant = await self.store.get_tenant(tenant_id)
            if tenant is None or not tenant.webhook_url or event not in tenant.events:
                return
            delivery = new_delivery(
                event=event,
                url=tenant.webhook_url,
                payload=envelope,
                chat_key=f"{tenant_id}:{chat or event}",
                tenant_id=tenant_id,
                secret=tenant.webhook_secret,
            )
            await self.store.enqueue_deliveries([delivery])
        self.deliverer.wake()

    async def relay(self, payload: dict[str, Any]) -> Delivery:
        """The seed's ``POST /webhook``: forward a payload to Flask through the outbox."""
        tenant = str(payload.get("empresa_id", ""))
        delivery = new_delivery(
            event="relay",
            url=f"{self.settings.flask_url}/webhook/whatsapp",
            payload=payload,
            chat_key=f"relay:{tenant}:{payload.get('phone', '')}",
            tenant_id=tenant or None,
            secret=None,
        )
        delivery.created_at = time.time()
        await self.store.enqueue_deliveries([delivery])
        self.deliverer.wake()
        return delivery
