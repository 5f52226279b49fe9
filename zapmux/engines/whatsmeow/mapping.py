"""Pure functions from neonize's protobuf events to zapmux events (worker side only).

neonize (``neonize.proto.Neonize_pb2``) re-encodes whatsmeow's Go events as protobuf
messages; these functions read them and return the zapmux event, or None for those
zapmux ignores. Nothing here calls into Go, so the mapping is tested by building the
protobuf values directly. Importing this module loads neonize: only the worker does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as e2e

from zapmux import events as ev
from zapmux.phone import JID, LID_SERVER, USER_SERVER
from zapmux.states import MessageStatus

KEEPALIVE_MAX_FAIL_S = 180.0  # whatsmeow's KeepAliveMaxFailTime: then the socket is dead
#: What a tenant's ``last_error`` says when the dial never reached WhatsApp.
NO_ROUTE = "this server cannot reach WhatsApp (internet, DNS or ZAPMUX_WHATSMEOW_PROXY)"
# Go's words for a dial that went nowhere: DNS, routing, a proxy, a refused or timed-out
# TCP connection (whatsmeow wraps them in "failed to dial whatsapp web websocket").
_NO_ROUTE_SIGNS = (
    "failed to dial", "dial tcp", "no such host", "network is unreachable",
    "proxyconnect", "i/o timeout", "connection refused", "server misbehaving",
)  # fmt: skip

_Reason = pb.ConnectFailureReason
_LOGOUT_REASONS = {_Reason.LOGGED_OUT, _Reason.MAIN_DEVICE_GONE, _Reason.UNKNOWN_LOGOUT}
_RECEIPTS: dict[int, ev.ReceiptStatus] = {
    pb.Receipt.DELIVERED: MessageStatus.DELIVERED,
    pb.Receipt.READ: MessageStatus.READ,
    pb.Receipt.PLAYED: MessageStatus.READ,  # a voice note played was read first
}
# (field of waE2E.Message, zapmux message_type, where its text is), most specific first
_CONTENT: tuple[tuple[str, ev.MessageType, str | None], ...] = (
    ("conversation", "texto", None),
    ("extendedTextMessage", "texto", "text"),
    ("imageMessage", "imagem", "caption"),
    ("audioMessage", "audio", None),
    ("videoMessage", "video", "caption"),
    ("ptvMessage", "video", "caption"),
    ("documentMessage", "documento", "caption"),
    ("stickerMessage", "figurinha", None),
    ("lottieStickerMessage", "figurinha", None),
    ("locationMessage", "localizacao", "name"),
    ("liveLocationMessage", "localizacao", "caption"),
    ("contactMessage", "contato", "displayName"),
    ("contactsArrayMessage", "contato", "displayName"),
    ("reactionMessage", "reacao", "text"),
    ("pollUpdateMessage", "voto", None),
)
# Wrappers whose inner ``message`` is the real content.
_WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
)
MediaKind = Literal["image", "document", "audio", "video", "sticker"]
# waE2E fields with a downloadable attachment: zapmux's kind, and the field whatsmeow's
# DownloadAny looks in (it knows no ptvMessage, a round video of the same type).
_MEDIA: dict[str, tuple[MediaKind, str]] = {
    "imageMessage": ("image", "imageMessage"),
    "videoMessage": ("video", "videoMessage"),
    "ptvMessage": ("video", "videoMessage"),
    "audioMessage": ("audio", "audioMessage"),
    "documentMessage": ("document", "documentMessage"),
    "stickerMessage": ("sticker", "stickerMessage"),
}
_PLUMBING = frozenset({"messageContextInfo", "senderKeyDistributionMessage"})


def jid_text(jid: Any) -> str:
    """A neonize ``JID`` as the usual string (``user[:device]@server``); '' when empty."""
    if not jid.User and not jid.Server:
        return ""
    return str(JID(user=jid.User, server=jid.Server, device=jid.Device))


def to_neonize_jid(text: str) -> pb.JID:
    """A zapmux JID string (or bare phone) as neonize's ``JID`` message."""
    jid = JID.parse(text)
    return pb.JID(User=jid.user, Server=jid.server, Device=jid.device, RawAgent=0, Integrator=0)


def sender_phone(source: Any) -> str:
    """The sender's number in digits, preferring the phone JID over a LID."""
    return phone_of(source.Sender, source.SenderAlt) or source.Sender.User


def phone_of(*jids: Any) -> str | None:
    """The first phone number (digits of a ``s.whatsapp.net`` JID) among ``jids``."""
    for jid in jids:
        if jid.Server == USER_SERVER and jid.User.isdigit():
            return str(jid.User)
    return None


def lid_of(*jids: Any) -> Any | None:
    """The first LID (``@lid``: WhatsApp's hidden-number identity) among ``jids``."""
    return next((jid for jid in jids if jid.Server == LID_SERVER and jid.User), None)


def unwrap(message: Any) -> Any:
    """The content inside ephemeral / view-once / document-with-caption wrappers."""
    for _ in range(4):  # wrappers nest at most a few levels
        for name in _WRAPPERS:
            if message.HasField(name) and message_field(message, name).HasField("message"):
                message = message_field(message, name).message
                break
        else:
            return message
    return message


def message_field(message: Any, name: str) -> Any:
    return getattr(message, name)


def content_of(message: Any) -> tuple[ev.MessageType, str]:
    """The seed's ``message_type`` and the text (body or caption) of a waE2E message."""
    message = unwrap(message)
    for name, kind, text_field in _CONTENT:
        if name == "conversation":
            if message.conversation:
                return kind, message.conversation
            continue
        if message.HasField(name):
            part = getattr(message, name)
            return kind, str(getattr(part, text_field, "") or "") if text_field else ""
    return "outro", ""


def message_event(raw: pb.Message) -> ev.IncomingMessage | None:
    """An incoming (or sent-from-phone) message; None for protocol-only messages."""
    info, source = raw.Info, raw.Info.MessageSource
    content = unwrap(raw.Message)
    if _is_protocol_only(content):
        return None
    kind, text = content_of(raw.Message)
    return ev.IncomingMessage(
        message_id=info.ID,
        chat=jid_text(source.Chat),
        sender=jid_text(source.Sender),
        phone=sender_phone(source),
        message_type=kind,
        text=text,
        timestamp=info.Timestamp / 1000.0,  # neonize gives messages in milliseconds
        push_name=info.Pushname or None,
        is_group=source.IsGroup,
        from_me=source.IsFromMe,
        reply_to=_reply_to(content) or None,
        vote=_vote_envelope(content),
    )


def _vote_envelope(content: Any) -> ev.PollVote | None:
    """A poll vote before decryption: which poll it answers (the worker decrypts it)."""
    if not content.HasField("pollUpdateMessage"):
        return None
    return ev.PollVote(poll_id=content.pollUpdateMessage.pollCreationMessageKey.ID)


def vote_of(poll_id: str, decrypted: Any) -> ev.PollVote:
    """A decrypted ``PollVoteMessage``: the chosen answers' SHA-256 hashes, in hex."""
    return ev.PollVote(poll_id, tuple(bytes(h).hex() for h in decrypted.selectedOptions))


def _is_protocol_only(content: Any) -> bool:
    # Group messages carry key distribution beside the content; alone, or a
    # protocolMessage (revoke, history-sync notice…), there is nothing to deliver.
    names = {field.name for field, _ in content.ListFields()} - _PLUMBING
    return not names or "protocolMessage" in names


def _reply_to(content: Any) -> str:
    if content.HasField("extendedTextMessage"):
        return str(content.extendedTextMessage.contextInfo.stanzaID)
    return ""


@dataclass(frozen=True, slots=True)
class Attachment:
    """The media of an incoming message, before download."""

    kind: MediaKind
    request: e2e.Message  # what neonize's download_any takes: the part alone
    size: int  # as the sender declared it (0 when unknown)
    mimetype: str
    filename: str | None
    caption: str | None
    ptt: bool

    def media(self, data: bytes) -> ev.Media:
        """The zapmux media once its bytes are in."""
        return ev.Media(self.kind, data, self.mimetype, self.filename, self.caption, self.ptt)


def attachment_of(message: Any) -> Attachment | None:
    """The downloadable attachment of a waE2E message (wrappers opened), if any."""
    content = unwrap(message)
    for name, (kind, request_field) in _MEDIA.items():
        if content.HasField(name):
            part = getattr(content, name)
            return Attachment(
                kind=kind,
                request=e2e.Message(**{request_field: part}),
                size=int(part.fileLength),
                mimetype=part.mimetype or "application/octet-stream",
                filename=getattr(part, "fileName", "") or None,
                caption=getattr(part, "caption", "") or None,
                ptt=bool(getattr(part, "PTT", False)),
            )
    return None


def dial_error(raw: str) -> ev.Disconnected:
    """The end of a dial that failed: in words when WhatsApp was never reached (the raw
    error kept as ``detail``), else as whatsmeow said it."""
    if any(sign in raw.lower() for sign in _NO_ROUTE_SIGNS):
        return ev.Disconnected(reason=NO_ROUTE, detail=raw)
    return ev.Disconnected(reason=raw)


def send_failure(raw: str) -> tuple[str, str]:
    """A failed send as (error kind, message): the refusals a person can act on get
    their own kind (``protocol.ERROR_KINDS``), the rest are ``engine`` errors."""
    text = raw.lower()
    if "server returned error 463" in text:
        return "new_contact_restricted", (
            "WhatsApp refused a first message to this contact (error 463): it does not "
            "let this number start a conversation with someone who never wrote to it"
        )
    if "rate-overlimit" in text or "returned error 429" in text or "status 429" in text:
        return "rate_limited", "WhatsApp is limiting this number's sends (rate-overlimit)"
    return "engine", raw


def receipt_event(raw: pb.Receipt) -> ev.Receipt | None:
    """Delivered / read / played receipts; the others (retry, sender…) are internal."""
    status = _RECEIPTS.get(raw.Type)
    if status is None or not raw.MessageIDs:
        return None
    return ev.Receipt(
        message_ids=tuple(raw.MessageIDs),
        chat=jid_text(raw.MessageSource.Chat),
        status=status,
        timestamp=float(raw.Timestamp),  # receipts are in seconds
    )


def connected_event(me: pb.Device | None) -> ev.Connected:
    """Online; ``me`` is the stored device (phone, push name) when known."""
    if me is None or not me.HasField("JID") or not me.JID.User:
        return ev.Connected()
    return ev.Connected(phone=me.JID.User, push_name=me.PushName or None, jid=jid_text(me.JID))


def pair_event(raw: pb.PairStatus) -> ev.Event:
    """A phone scanned the QR (or typed the code): success, or a failed pairing."""
    if raw.Status == pb.PairStatus.SUCCESS:
        return ev.PairSuccess(
            phone=raw.ID.User, jid=jid_text(raw.ID), push_name=raw.BusinessName or None
        )
    return ev.Disconnected(reason=f"pairing failed: {raw.Error or 'unknown error'}")


def logged_out_event(raw: pb.LoggedOut) -> ev.LoggedOut:
    reason = pb.ConnectFailureReason.Name(raw.Reason) if raw.Reason else "LOGGED_OUT"
    where = "while connecting" if raw.OnConnect else "from the phone"
    return ev.LoggedOut(reason=f"logged out {where} ({reason.lower()})")


def temporary_ban_event(raw: pb.TemporaryBan, now: float) -> ev.Banned:
    """A temporary ban; ``Expire`` is a duration in seconds."""
    code = pb.TemporaryBan.TempBanReason.Name(raw.Code) if raw.Code else "UNKNOWN"
    expires = now + raw.Expire if raw.Expire > 0 else None
    return ev.Banned(reason=f"temporarily banned ({code.lower()})", expires_at=expires)


def connect_failure_event(raw: pb.ConnectFailure, now: float) -> ev.Event:
    """WhatsApp refused the login: a logout, a ban, an outdated client, or transient."""
    name = pb.ConnectFailureReason.Name(raw.Reason) if raw.Reason else "GENERIC"
    detail = f"connect failure {name.lower()}" + (f": {raw.Message}" if raw.Message else "")
    if raw.Reason in _LOGOUT_REASONS:
        return ev.LoggedOut(reason=detail)
    if raw.Reason == _Reason.TEMP_BANNED:
        return ev.Banned(reason=detail)
    if raw.Reason in (_Reason.CLIENT_OUTDATED, _Reason.BAD_USER_AGENT):
        return ev.Failed(reason=detail)
    return ev.Disconnected(reason=detail)


def keepalive_event(raw: pb.KeepAliveTimeout, now: float) -> ev.Disconnected | None:
    """Keep-alive pings failing for too long: the connection is dead, end it."""
    if raw.LastSuccess and now - raw.LastSuccess >= KEEPALIVE_MAX_FAIL_S:
        return ev.Disconnected(reason=f"keep-alive timeout ({raw.ErrorCount} failed pings)")
    return None


_Mapper = Callable[[Any, float], ev.Event | None]
_MAPPERS: dict[type, _Mapper] = {
    pb.Message: lambda raw, now: message_event(raw),
    pb.Receipt: lambda raw, now: receipt_event(raw),
    pb.PairStatus: lambda raw, now: pair_event(raw),
    pb.LoggedOut: lambda raw, now: logged_out_event(raw),
    pb.StreamReplaced: lambda raw, now: ev.Replaced(),
    pb.TemporaryBan: temporary_ban_event,
    pb.ClientOutdated: lambda raw, now: ev.Failed(reason="client outdated: update neonize"),
    pb.ConnectFailure: connect_failure_event,
    pb.Disconnected: lambda raw, now: ev.Disconnected(reason="connection closed by WhatsApp"),
    pb.KeepAliveTimeout: keepalive_event,
}

#: The neonize event types the worker subscribes to (``Connected`` needs the device).
SUBSCRIBED: tuple[type, ...] = (pb.Connected, *_MAPPERS)


def to_event(raw: Any, now: float) -> ev.Event | None:
    """The zapmux event for a neonize event (not ``Connected``: see :func:`connected_event`)."""
    mapper = _MAPPERS.get(type(raw))
    return mapper(raw, now) if mapper else None
