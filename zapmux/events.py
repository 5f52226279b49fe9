"""What an engine session tells zapmux, one small type per event.

Each event says when it is emitted and what zapmux does next. Events that subclass
:class:`PermanentDisconnect` end the session for good: nothing reconnects after them
until a person asks (like whatsmeow's ``PermanentDisconnect`` marker).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from zapmux.states import MessageStatus

MessageType = Literal[
    "texto",
    "imagem",
    "audio",
    "video",
    "documento",
    "figurinha",
    "localizacao",
    "contato",
    "reacao",
    "voto",
    "outro",
]
#: What a receipt reports: the message status it moves a message to (whatsmeow's
#: "played", a voice note listened to, arrives as read).
ReceiptStatus = Literal[
    MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED
]


class Event:
    """Base of every engine event."""


@dataclass(frozen=True, slots=True)
class QrCode(Event):
    """A new QR code to scan; the previous one is no longer valid.

    Emitted by an unpaired session after connect, then on every rotation
    (whatsmeow: the first lives 60 s, the next ones 20 s, 6 in all). Show it.
    """

    code: str
    expires_at: float
    index: int = 1
    total: int = 6


@dataclass(frozen=True, slots=True)
class QrTimeout(Event):
    """Every QR code expired without a scan; the session has stopped.

    zapmux moves the tenant to ``qr_timeout`` and does nothing more until asked.
    """


@dataclass(frozen=True, slots=True)
class PairSuccess(Event):
    """A phone scanned the code (or entered the pairing code); the session is now stored.

    A ``Connected`` follows.
    """

    phone: str
    jid: str
    push_name: str | None = None


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """The session is online and can send. zapmux resets its retry counter once stable."""

    phone: str | None = None
    push_name: str | None = None
    jid: str | None = None


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    """The connection dropped or could not be made, for a reason that may pass.

    The session is closed; zapmux reconnects it with exponential backoff and jitter.
    ``reason`` is for a person (``last_error``); ``detail``, when set, is the raw error
    behind a reason put in words (the tenant status's ``detail``).
    """

    reason: str
    detail: str | None = None


class PermanentDisconnect(Event):
    """Marker: after this event nothing reconnects by itself."""

    reason: str


@dataclass(frozen=True, slots=True)
class LoggedOut(PermanentDisconnect):
    """The device was unlinked (from the phone, or by logout); its session is wiped.

    The tenant needs a new pairing.
    """

    reason: str = "logged out"


@dataclass(frozen=True, slots=True)
class Replaced(PermanentDisconnect):
    """Another client opened this session (stream replaced). Not retried: it would fight."""

    reason: str = "another client took over this session"


@dataclass(frozen=True, slots=True)
class Banned(PermanentDisconnect):
    """WhatsApp banned the number (temporarily when ``expires_at`` is set)."""

    reason: str = "banned by WhatsApp"
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class Failed(PermanentDisconnect):
    """The session cannot go on (e.g. client outdated); a person must look."""

    reason: str = "failed"


@dataclass(frozen=True, slots=True)
class Media:
    """A media attachment, in or out."""

    kind: Literal["image", "document", "audio", "video", "sticker"]
    data: bytes
    mimetype: str = "application/octet-stream"
    filename: str | None = None
    caption: str | None = None
    ptt: bool = False
    url: str | None = None  # where it was fetched from, for engines that send by link


@dataclass(frozen=True, slots=True)
class PollVote:
    """What a vote on one of the tenant's questions (polls) says.

    WhatsApp carries the chosen answers as SHA-256 hashes of their text; zapmux maps
    them back to the texts it sent (``polls.py``). No hashes: the vote was taken back,
    or ``error`` says why it could not be read.
    """

    poll_id: str  # the question's id as the engine knows it (its wa_id)
    selected_hashes: tuple[str, ...] = ()  # hex SHA-256 of each chosen answer's text
    error: str | None = None


@dataclass(frozen=True, slots=True)
class IncomingMessage(Event):
    """A message reached the tenant's number (or was sent from its phone: ``from_me``).

    zapmux writes it to the message log and the outbox before the sink returns; only
    then may the engine acknowledge it.
    """

    message_id: str
    chat: str
    sender: str
    phone: str
    message_type: MessageType
    text: str
    timestamp: float
    push_name: str | None = None
    is_group: bool = False
    from_me: bool = False
    media: Media | None = None
    reply_to: str | None = None
    vote: PollVote | None = None  # message_type "voto": a vote on a question
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Receipt(Event):
    """Messages this tenant sent were delivered to, or read by, their recipient.

    The Cloud API also reports ``sent`` and ``failed``; a failure carries ``error``
    (``code``, what to do in ``message``, and Meta's own ``meta_code``). zapmux moves
    the message's status forward and queues the ``receipt`` webhook.
    """

    message_ids: tuple[str, ...]
    chat: str
    status: ReceiptStatus
    timestamp: float
    error: dict[str, Any] | None = None
    #: The engine may report the same receipt again (Meta repeats webhook posts):
    #: zapmux then queues its webhook only when the message's status moved.
    repeatable: bool = False


E = TypeVar("E", bound=Event)
#: What stands for a NUL character (U+0000) in text from an engine: PostgreSQL's text
#: cannot hold NUL, and the same text must be kept the same way on every store.
NUL_STANDIN = "\u2400"  # ␀, SYMBOL FOR NULL


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, tuple):
        return any(_has_nul(v) for v in value)
    if isinstance(value, Event | Media):
        # every incoming message passes here: its texts looked at in a plain loop, the
        # rest (None, numbers, media, a vote) only when there is something to look into
        for name in _texts(type(value)):  # type: ignore[arg-type]
            field = getattr(value, name)
            if field.__class__ is str:
                if "\x00" in field:
                    return True
            elif field is not None and field.__class__ not in _PLAIN and _has_nul(field):
                return True
    return False


_PLAIN = (bool, int, float)  # fields that hold no text


@functools.cache
def _texts(cls: type) -> tuple[str, ...]:
    """The fields of an event (or its media) that may hold text."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", NUL_STANDIN)
    if isinstance(value, tuple):
        return tuple(_storable(v) for v in value)
    if isinstance(value, Media):
        return storable(value)  # type: ignore[type-var]
    return value


def storable(event: E) -> E:
    """The event with every NUL in its text replaced by ``NUL_STANDIN`` (kept, visibly);
    the event itself when it holds none (nearly always)."""
    if not _has_nul(event):
        return event
    changes = {
        f.name: _storable(getattr(event, f.name))
        for f in dataclasses.fields(event)  # type: ignore[arg-type]
        if f.name != "extra"
    }
    return dataclasses.replace(event, **changes)  # type: ignore[type-var]


def message_to_json(message: IncomingMessage) -> str:
    """An incoming message as JSON (media bytes base64-encoded), to set aside and replay."""
    data = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    if message.media is not None:
        media = dataclasses.asdict(message.media)
        media["data"] = base64.b64encode(message.media.data).decode()
        data["media"] = media
    if message.vote is not None:
        data["vote"] = dataclasses.asdict(message.vote)
    return json.dumps(data, default=repr)


def message_from_json(raw: str) -> IncomingMessage:
    """The inverse of :func:`message_to_json`."""
    data = json.loads(raw)
    if data.get("media") is not None:
        data["media"] = Media(**{**data["media"], "data": base64.b64decode(data["media"]["data"])})
    if data.get("vote") is not None:
        vote = data["vote"]
        data["vote"] = PollVote(**{**vote, "selected_hashes": tuple(vote["selected_hashes"])})
    return IncomingMessage(**data)
