"""Tenant, message and webhook delivery states, and the sets the rest of zapmux reasons with.

They are ``StrEnum``s: each member *is* its string, so what the store keeps, the API
answers and webhooks carry is the same text as before they had names.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    STOPPED = "stopped"  # not running: never started, or stopped by a person
    CONNECTING = "connecting"  # a connection attempt is under way
    AWAITING_QR = "awaiting_qr"  # unpaired: showing QR codes, waiting for a scan
    CONNECTED = "connected"  # online; sends go out at once
    RECONNECTING = "reconnecting"  # dropped for a reason that may pass; backoff timer set
    QR_TIMEOUT = "qr_timeout"  # every QR code expired unscanned; waits for a person
    LOGGED_OUT = "logged_out"  # unlinked; session wiped; needs a new pairing
    REPLACED = "replaced"  # another client took the session
    BANNED = "banned"  # WhatsApp banned the number
    FAILED = "failed"  # cannot go on (client outdated, …); a person must look


class Wanted(StrEnum):
    """What a person asked of a tenant (``tenants.wanted``): a node that takes the tenant
    over connects it only when it is wanted running."""

    RUNNING = "running"
    STOPPED = "stopped"


#: Ends after which nothing retries by itself.
PERMANENT = frozenset({Status.LOGGED_OUT, Status.REPLACED, Status.BANNED, Status.FAILED})
#: Permanent ends that pairing cannot clear, only a person's start or restart (a
#: logged-out tenant simply pairs again).
NEEDS_RESTART = PERMANENT - {Status.LOGGED_OUT}
#: States in which a send waits in the queue instead of being refused.
WILL_CONNECT = frozenset({Status.CONNECTING, Status.RECONNECTING, Status.CONNECTED})
ALL = tuple(s.value for s in Status)


class MessageStatus(StrEnum):
    """Where a message is (``messages.status``; the API and webhooks show the value).

    Outgoing: ``scheduled`` → ``queued`` → ``sending`` → ``sent`` → ``delivered`` →
    ``read``, or ``failed`` / ``cancelled``. Incoming: ``received``.
    """

    SCHEDULED = "scheduled"  # waits for its send_at (scheduler.py)
    QUEUED = "queued"  # waits in the tenant's send queue
    SENDING = "sending"  # being handed to the engine; the API shows it as queued
    SENT = "sent"  # the engine took it
    DELIVERED = "delivered"  # it reached the recipient's phone
    READ = "read"  # the recipient opened it
    FAILED = "failed"  # it will not go out, or WhatsApp reported that it did not
    CANCELLED = "cancelled"  # cancelled before it went out
    RECEIVED = "received"  # an incoming message


#: How far an outgoing message has got. A receipt only moves a message up this order,
#: so a late ``delivered`` never overrides ``read``; a failure report ranks last.
PROGRESS: dict[str, int] = {
    MessageStatus.QUEUED: 0,
    MessageStatus.SENDING: 1,
    MessageStatus.SENT: 2,
    MessageStatus.DELIVERED: 3,
    MessageStatus.READ: 4,
    MessageStatus.FAILED: 5,
}


def moved_by(receipt: str) -> list[MessageStatus]:
    """The statuses a receipt of status ``receipt`` moves a message from: those below it
    in :data:`PROGRESS`, except ``queued`` (not handed to the engine, so no receipt is
    for it). KeyError for a status that is not in the order."""
    rank = PROGRESS[receipt]
    return [MessageStatus(s) for s, r in PROGRESS.items() if r < rank and s != MessageStatus.QUEUED]


class DeliveryStatus(StrEnum):
    """Where a webhook delivery is in the outbox (``outbox.status``)."""

    PENDING = "pending"  # waits for its next attempt
    DELIVERED = "delivered"  # the receiver answered 2xx
    DEAD = "dead"  # given up (refused, or too old to retry); it can be replayed
