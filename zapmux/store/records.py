"""Plain values read from and written to the store."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from zapmux.redact import redact_urls
from zapmux.states import DeliveryStatus, MessageStatus, Status, Wanted


@dataclass(slots=True)
class TenantRecord:
    id: str
    engine: str | None = None  # None: the server's default engine (ZAPMUX_ENGINE)
    wanted: str = Wanted.RUNNING
    status: str = Status.STOPPED
    phone: str | None = None
    push_name: str | None = None
    jid: str | None = None
    since: float | None = None
    last_error: str | None = None
    detail: str | None = None
    reconnect_attempts: int = 0
    next_retry_at: float | None = None
    token_hash: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    webhook_events: str | None = None
    webhook_by: str | None = None  # "admin" / "tenant": who set the webhook
    owner: str | None = None
    lease_until: float | None = None
    incarnation: str | None = None  # which life of this id (set at creation)
    created_at: float = 0.0
    updated_at: float = 0.0
    opt_out_keywords: str | None = None  # JSON list; None = the defaults

    @property
    def events(self) -> list[str]:
        return json.loads(self.webhook_events) if self.webhook_events else []


#: The ``error`` of a message that was being handed to the engine when its runner died:
#: it may or may not have gone out (engines that cannot send with our id cannot tell).
SEND_INTERRUPTED = "interrupted by a restart while sending; it may have gone out"


@dataclass(slots=True)
class MessageRecord:
    tenant_id: str
    message_id: str
    direction: str  # "in" | "out"
    chat: str
    message_type: str
    status: str  # a MessageStatus
    timestamp: float
    phone: str | None = None
    text: str | None = None
    wa_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    push_name: str | None = None
    from_me: bool = False
    is_group: bool = False
    reply_to: str | None = None
    payload: str | None = None
    media_mimetype: str | None = None
    media_filename: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    send_at: float | None = None
    # out: a question, JSON {"options": [...], "secret": ...}; in: an answer's "poll"
    poll: str | None = None
    id: int | None = None

    @property
    def options(self) -> list[str] | None:
        """A question's answers, None for any other message."""
        return json.loads(self.poll)["options"] if self.poll else None

    def public(self) -> dict[str, Any]:
        """The message as the API shows it."""
        return {
            "message_id": self.message_id,
            "direction": self.direction,
            # "sending" lasts the instant of the hand-over; the API's statuses are
            # queued|sent|delivered|read|failed (and "received" for incoming)
            "status": MessageStatus.QUEUED if self.status == MessageStatus.SENDING else self.status,
            "chat": self.chat,
            "phone": self.phone,
            "message_type": self.message_type,
            "text": self.text,
            "push_name": self.push_name,
            "from_me": self.from_me,
            "is_group": self.is_group,
            "reply_to": self.reply_to,
            "has_media": self.media_mimetype is not None,
            "media_mimetype": self.media_mimetype,
            "media_filename": self.media_filename,
            "error": self.error,
            "error_code": self.error_code,
            "options": self.options if self.direction == "out" else None,
            # what a vote or typed answer chose (the webhook's "poll"), for incoming
            "poll": json.loads(self.poll) if self.poll and self.direction == "in" else None,
            "send_at": self.send_at,
            "timestamp": self.timestamp,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(slots=True)
class OptOut:
    """A number that wrote one of the tenant's opt-out keywords."""

    tenant_id: str
    phone: str
    keyword: str
    created_at: float
    message_id: str | None = None

    def public(self) -> dict[str, Any]:
        return {
            "phone": self.phone,
            "keyword": self.keyword,
            "message_id": self.message_id,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Delivery:
    """One webhook POST in the outbox."""

    delivery_id: str
    event: str
    target: str  # "flask" | "tenant:<id>" | "url:<url>" (see zapmux.outbox.Targets)
    body: str
    chat_key: str
    tenant_id: str | None = None
    status: str = DeliveryStatus.PENDING
    attempts: int = 0
    last_error: str | None = None
    created_at: float = 0.0
    next_attempt_at: float = 0.0
    delivered_at: float | None = None
    replayed_at: float | None = None
    id: int | None = None
    locked_until: float | None = None

    def public(self, url: str | None, stale: bool = False) -> dict[str, Any]:
        """The delivery as the API shows it; ``url``: where its target resolves now
        (None when it resolves nowhere), ``stale``: pinned to a URL that is no longer
        the default target."""
        return {
            "id": self.delivery_id,
            "status": self.status,
            "tenant_id": self.tenant_id,
            "event": self.event,
            "target": self.target if not self.target.startswith("url:") else "url",
            "url": redact_urls(url) if url else None,
            "stale": stale,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "created_at": self.created_at,
            "next_attempt_at": (
                self.next_attempt_at if self.status == DeliveryStatus.PENDING else None
            ),
            "delivered_at": self.delivered_at,
        }


@dataclass(frozen=True, slots=True)
class ClaimCursor:
    """Where the deliverer's last claim left off, so that the next may look only at
    what changed since: rows queued after ``last_id``, and the heads of ``chats`` (whose
    delivery it has just finished)."""

    last_id: int
    chats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Claimed:
    """What a claim locked for the claimer, and the newest outbox row up to which it
    has looked at every row (None: it stopped at its limit before)."""

    deliveries: list[Delivery]
    last_id: int | None


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one attempt, as the outbox records it."""

    delivery_id: str
    status: str  # delivered | pending | dead
    attempts: int
    last_error: str | None
    next_attempt_at: float | None = None  # when pending: the next attempt


@dataclass(slots=True)
class DeadInbound:
    """An inbound event zapmux could not record, set aside so the tenant's line moves."""

    tenant_id: str
    event: str  # the event as JSON (``events.to_json``)
    error: str
    created_at: float
    id: int | None = None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "event": _json_or_text(self.event),
            "error": self.error,
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class IdempotentAnswer:
    tenant_id: str
    key: str
    fingerprint: str
    status_code: int
    response: str
    created_at: float


@dataclass(slots=True)
class CloudAccount:
    """What a cloud tenant needs at Meta. Secrets: never returned, logged or shown."""

    tenant_id: str
    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str
    created_at: float = 0.0

    def __repr__(self) -> str:  # a traceback or a debug log must not print the secrets
        return (
            f"CloudAccount(tenant_id={self.tenant_id!r}, phone_number_id={self.phone_number_id!r})"
        )


@dataclass(slots=True)
class SandboxQr:
    code: str
    tenant_id: str
    issued_at: float
    expires_at: float
    current: bool


@dataclass(slots=True)
class SandboxSession:
    tenant_id: str
    phone: str
    push_name: str | None
    paired_at: float
    network_down: bool = False


@dataclass(slots=True)
class InboxMessage:
    phone: str
    tenant_id: str
    message_id: str
    received_at: float
    text: str | None = None
    media_kind: str | None = None
    media_mimetype: str | None = None
    media_filename: str | None = None
    media_size: int | None = None
    reply_to: str | None = None
    read: bool = False
    options: str | None = None  # a question's answers (JSON list)
    id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "tenant_id": self.tenant_id,
            "text": self.text,
            "media_kind": self.media_kind,
            "media_mimetype": self.media_mimetype,
            "media_filename": self.media_filename,
            "media_size": self.media_size,
            "reply_to": self.reply_to,
            "options": json.loads(self.options) if self.options else None,
            "read": self.read,
            "received_at": self.received_at,
        }


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw
