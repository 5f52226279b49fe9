"""What arrives from WhatsApp, turned into the message log and outbox rows.

Incoming messages are logged together with their webhook (the old server's flat
payload); receipts move the status of sent messages and go to the webhook as
``receipt`` events. The rows are queued through webhooks.py.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, get_args

from sqlalchemy.exc import DataError, IntegrityError, StatementError

from zapmux.errors import Conflict, TenantNotFound
from zapmux.events import (
    Event,
    IncomingMessage,
    MessageType,
    Receipt,
    message_from_json,
    message_to_json,
)
from zapmux.hub import Hub
from zapmux.ids import empresa_id
from zapmux.metrics import Metrics
from zapmux.optouts import OptOuts, keywords_of, matched_keyword
from zapmux.polls import Polls, vote_text
from zapmux.states import MessageStatus
from zapmux.store.base import Store
from zapmux.store.records import DeadInbound, MessageRecord, TenantRecord
from zapmux.webhooks import Webhooks

log = logging.getLogger("zapmux.inbound")
MESSAGE_TYPES = frozenset(get_args(MessageType))
#: The longest value each bounded column of the message log holds (on every store).
_LIMITS = {"message_id": 128, "chat": 128, "phone": 32, "reply_to": 128}


class Unstorable(ValueError):
    """An inbound event zapmux can never record as it is (it would fail every time)."""


def check_storable(m: IncomingMessage) -> None:
    """Refuse, the same way on every store, what the message log cannot hold."""
    for name, limit in _LIMITS.items():
        value = getattr(m, name)
        if value is not None and len(value) > limit:
            raise Unstorable(f"{name} is {len(value)} characters long (at most {limit})")
    if not m.message_id:
        raise Unstorable("the message has no id")
    if m.message_type not in MESSAGE_TYPES:
        raise Unstorable(f"unknown message type {m.message_type!r}")
    if m.media is not None and len(m.media.mimetype) > 128:
        raise Unstorable("the media type is over 128 characters long")


def never_storable(exc: Exception) -> bool:
    """Whether recording failed because of the event itself (so retrying cannot help),
    rather than because the store is away for a while (which a retry outlives)."""
    if isinstance(exc, Unstorable | DataError | IntegrityError):
        return True
    if isinstance(exc, StatementError):  # failed before the database saw it
        return isinstance(exc.orig, ValueError | TypeError)
    return isinstance(exc, ValueError | TypeError | KeyError)  # a mapping bug: it would recur


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
    for key, value in m.extra.items():  # what an engine adds (the sender's LID…)
        payload.setdefault(key, value)
    if m.media is not None:
        payload["media"] = {
            "url": f"/tenants/{tenant_id}/messages/{m.message_id}/media",
            "mimetype": m.media.mimetype,
            "filename": m.media.filename,
            "size": len(m.media.data),
        }
    return payload


class Dispatcher:
    """Records engine events (messages, receipts) and queues their webhooks."""

    def __init__(
        self,
        store: Store,
        hub: Hub,
        webhooks: Webhooks,
        metrics: Metrics | None = None,
        optouts: OptOuts | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.webhooks = webhooks
        self.metrics = metrics or Metrics()
        self.optouts = optouts or OptOuts(store)
        self.polls = Polls(store)

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
                incarnation = tenant.incarnation if tenant else None
                await self.optouts.record(tenant_id, m.phone, keyword, m.message_id, incarnation)
                extra["opt_out"] = True
                logging.getLogger(f"zapmux.tenant.{tenant_id}").warning(
                    "🚫 %s opted out (wrote %r)", m.phone, m.text.strip()[:40]
                )
        return m, extra

    async def incoming(self, tenant_id: str, m: IncomingMessage) -> None:
        """Log the message and queue its webhook in one transaction (before the ack).

        A message that can never be recorded is set aside as a dead inbound event
        (listed, replayable) so that the messages behind it still arrive; a failure
        that may pass (the store is away) raises, and the engine hands it over again.
        """
        tenant = await self.webhooks.tenant(tenant_id)
        if tenant is None:
            log.warning("message %s for deleted tenant %s dropped", m.message_id, tenant_id)
            return
        try:
            await self._record(tenant, m)
        except TenantNotFound:
            log.warning("message %s for deleted tenant %s dropped", m.message_id, tenant_id)
        except Exception as exc:
            if not never_storable(exc):
                raise
            await self._set_aside(tenant_id, m, exc)

    async def _set_aside(self, tenant_id: str, m: IncomingMessage, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"[:1000]
        dead_id = await self.store.add_dead_inbound(tenant_id, message_to_json(m), error)
        self.metrics.inc("inbound_dead_total")
        logging.getLogger(f"zapmux.tenant.{tenant_id}").error(
            "❌ message %s from %s cannot be recorded (%s); set aside as dead inbound "
            "event %d (GET /inbound/dead)",
            m.message_id[:128],
            m.phone[:32],
            error,
            dead_id,
        )

    async def replay(self, dead: DeadInbound) -> None:
        """Record a set-aside event again; it leaves the dead list once recorded."""
        tenant = await self.webhooks.tenant(dead.tenant_id)
        if tenant is None:
            raise TenantNotFound(f"no tenant {dead.tenant_id!r}")
        try:
            await self._record(tenant, message_from_json(dead.event))
        except (TenantNotFound, OSError):
            raise
        except Exception as exc:
            raise Conflict(
                f"the event still cannot be recorded: {type(exc).__name__}: {exc}"[:500],
                code="replay_failed",
            ) from exc
        await self.store.drop_dead_inbound(dead.id or 0)

    async def _record(self, tenant: TenantRecord, m: IncomingMessage) -> None:
        check_storable(m)
        tenant_id = tenant.id
        m, extra = await self.answers(tenant, tenant_id, m)
        delivery = self.webhooks.message_delivery(
            tenant, {**message_payload(tenant_id, m), **extra}, m.chat
        )
        if m.media is not None:
            await self.store.save_media(
                tenant_id,
                m.message_id,
                m.media.mimetype,
                m.media.filename,
                m.media.data,
                tenant.incarnation,
            )
        record = MessageRecord(
            tenant_id=tenant_id,
            message_id=m.message_id,
            # No WhatsApp id of its own to keep: only outgoing messages are looked up by
            # it (receipts, votes). Unset, its ix_messages_wa entry goes at the end of
            # the tenant's unset ones, a page every incoming row shares, where the id
            # (random) took a page of its own in every commit.
            wa_id=None,
            direction="in",
            chat=m.chat,
            phone=m.phone,
            message_type=m.message_type,
            text=m.text,
            status=MessageStatus.RECEIVED,
            timestamp=m.timestamp,
            push_name=m.push_name,
            from_me=m.from_me,
            is_group=m.is_group,
            reply_to=m.reply_to,
            media_mimetype=m.media.mimetype if m.media else None,
            media_filename=m.media.filename if m.media else None,
            poll=json.dumps(extra["poll"]) if "poll" in extra else None,
        )
        if not await self.store.record_incoming(record, [delivery], tenant.incarnation):
            return  # seen before: already logged and queued
        self.metrics.inc("messages_received_total")
        self.webhooks.wake()
        logging.getLogger(f"zapmux.tenant.{tenant_id}").info(
            "📨 message from %s: %s", m.phone, (m.text or m.message_type)[:80]
        )
        if self.hub.subscribers:  # the message as the API shows it, for whoever listens
            self.hub.publish("message", tenant_id, record.public())

    async def receipt(self, tenant_id: str, r: Receipt) -> None:
        error = f"{r.error['code']}: {r.error['message']}" if r.error else None
        moved = await self.store.apply_receipt(tenant_id, r.message_ids, r.status, error)
        if r.repeatable and not moved:
            return  # told before: its webhook is already queued
        data: dict[str, Any] = {
            "message_ids": moved or list(r.message_ids),
            "status": r.status,
            "chat": r.chat,
            "timestamp": r.timestamp,
        }
        if r.error:
            data["error"] = r.error
        await self.webhooks.emit(tenant_id, "receipt", data, chat=r.chat)
