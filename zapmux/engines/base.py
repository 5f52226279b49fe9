"""The engine seam: what a WhatsApp session can do, and what it reports.

An :class:`Engine` opens one :class:`Session` per tenant. Commands are coroutines;
what happens on the network comes back as events (``zapmux.events``) through the
``EventSink`` given at open. Implementations: ``engines.sandbox`` (a simulated network,
part of the product), ``engines.whatsmeow`` (neonize, one worker process per tenant) and
``engines.cloud`` (Meta's WhatsApp Cloud API over HTTPS).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from zapmux.errors import ZapmuxError
from zapmux.events import Event, Media

EventSink = Callable[[Event], Awaitable[None]]


class NotConnected(ZapmuxError):
    """The session is not connected to WhatsApp (not yet, no longer, or its worker is
    gone): nothing was done. Raised by session commands. What it means is the caller's
    to say: the send queue keeps the message for later (``sending.py``); the API
    answers 409 ``tenant_not_connected`` (``api/errors.py``)."""

    status, code = 503, "not_connected"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to send to ``to`` (a JID string), text and/or media."""

    to: str
    text: str | None = None
    media: Media | None = None
    reply_to: str | None = None
    message_id: str | None = None  # zapmux's id; engines that can, send with it
    #: a question with these answers: a single-choice poll (``text`` is the question)
    options: tuple[str, ...] | None = None
    template: dict[str, Any] | None = None  # a Cloud API template: name, language, components


@dataclass(frozen=True, slots=True)
class SendResult:
    message_id: str
    timestamp: float
    poll_secret: str | None = None  # a poll's secret (base64), when the engine has one


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """WhatsApp's answer for one number: whether it exists and the JID it uses."""

    phone: str
    exists: bool
    jid: str | None


class Session(ABC):
    """One tenant's WhatsApp connection. Commands raise ``errors.ZapmuxError`` kinds;
    ``NotConnected`` when there is no connection."""

    tenant_id: str

    @abstractmethod
    async def connect(self) -> None:
        """Start connecting and return; the outcome arrives as events.

        Paired: ``Connected`` or ``Disconnected``/a permanent end. Unpaired: ``QrCode``
        events, then ``PairSuccess`` + ``Connected`` or ``QrTimeout``.
        """

    @abstractmethod
    async def disconnect(self) -> None:
        """Close the connection, keeping the stored session. Emits nothing."""

    async def pause(self) -> bool:
        """The connection dropped for a reason that may pass (after ``Disconnected``),
        and zapmux will reconnect after its backoff. True: keep this session, whose
        ``connect()`` is called again (the whatsmeow engine keeps its worker process);
        False: it is closed and a new one is opened. By default it disconnects."""
        await self.disconnect()
        return False

    @abstractmethod
    async def logout(self) -> None:
        """Unlink the device from WhatsApp and wipe the stored session. Emits nothing."""

    @abstractmethod
    async def pair_phone(self, phone: str) -> str:
        """Ask for a pairing code (``ABCD-EFGH``) to type on the phone ``phone``."""

    @abstractmethod
    async def send(self, message: OutgoingMessage) -> SendResult:
        """Send now; raise ``NotConnected`` when offline, ``EngineError`` on failure."""

    @abstractmethod
    async def check(self, phones: Sequence[str]) -> list[NumberInfo]:
        """Ask WhatsApp which of these numbers exist and at which JID."""

    @abstractmethod
    async def mark_read(self, chat: str, sender: str, message_ids: Sequence[str]) -> None:
        """Send read receipts for incoming messages."""


class Engine(ABC):
    """Opens sessions and manages their stored credentials."""

    name: ClassVar[str]
    #: Whether tenants pair by QR code or pairing code (the Cloud API does not).
    pairs: ClassVar[bool] = True
    #: Whether it can send Cloud API templates.
    templates: ClassVar[bool] = False
    #: The most answers a question can have on this engine (a poll: 12).
    max_options: ClassVar[int] = 12

    @abstractmethod
    def open_session(self, tenant_id: str, sink: EventSink) -> Session:
        """A new, unconnected session for the tenant, reporting to ``sink``."""

    @abstractmethod
    async def is_paired(self, tenant_id: str) -> bool:
        """Whether a stored session exists (the tenant can connect without a QR)."""

    @abstractmethod
    async def wipe(self, tenant_id: str) -> None:
        """Delete the tenant's stored session, if any."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare shared resources (called once at server start)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release shared resources (called once at server stop)."""
