"""What Meta posts to ``/cloud/webhook``, checked and turned into zapmux events.

A post is ``{"object": "whatsapp_business_account", "entry": [{"changes": [{"field":
"messages", "value": {...}}]}]}``; each ``value`` names the business number in
``metadata.phone_number_id`` and carries ``contacts`` + ``messages`` (a customer wrote)
or ``statuses`` (what became of a message the business sent). The post is signed:
``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body under the app secret>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from zapmux.engines.cloud import questions
from zapmux.events import IncomingMessage, MessageType, Receipt
from zapmux.phone import JID
from zapmux.states import MessageStatus

#: Meta's message types → zapmux's ``message_type`` (what the other engines produce).
MESSAGE_TYPES: dict[str, MessageType] = {
    "text": "texto",
    "image": "imagem",
    "audio": "audio",
    "voice": "audio",
    "video": "video",
    "document": "documento",
    "sticker": "figurinha",
    "location": "localizacao",
    "contacts": "contato",
    "reaction": "reacao",
    "button": "texto",  # a template's quick-reply button: its text is the answer
    "interactive": "texto",  # a reply button or list row: its title (a vote on a question)
}
MEDIA_TYPES = {"image": "image", "audio": "audio", "voice": "audio", "video": "video",
               "document": "document", "sticker": "sticker"}  # fmt: skip
#: The message statuses Meta reports (``statuses[].status``) that become receipts.
RECEIPTS = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.FAILED)
#: Meta's failure codes that mean something a person can act on.
FAILURES: dict[int, tuple[str, str]] = {
    131047: (
        "outside_service_window",
        "more than 24 hours have passed since the customer last wrote: only a template "
        "message can reach them now",
    ),
    131026: (
        "undeliverable",
        "WhatsApp could not deliver it: the number may not be on WhatsApp, or its app "
        "cannot receive this message yet",
    ),
    130429: ("throttled", "over the number's throughput: send more slowly"),
    131056: ("throttled", "too many messages to this customer in a short time: wait a little"),
}


@dataclass(frozen=True, slots=True)
class Change:
    """One ``entry[].changes[].value`` of a post: what concerns one business number."""

    phone_number_id: str
    value: dict[str, Any]


def signature_ok(body: bytes, header: str, app_secret: str) -> bool:
    """Whether ``header`` is ``sha256=`` + the body's HMAC under ``app_secret``
    (compared in constant time)."""
    expected = "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


def changes(payload: Any) -> list[Change]:
    """The changes of a post that name a business number, in order."""
    found = []
    for entry in _dicts(payload.get("entry") if isinstance(payload, dict) else None):
        for change in _dicts(entry.get("changes")):
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            number = (value.get("metadata") or {}).get("phone_number_id")
            if isinstance(number, str | int) and str(number):
                found.append(Change(str(number), value))
    return found


def _dicts(items: Any) -> Iterator[dict[str, Any]]:
    return (i for i in items if isinstance(i, dict)) if isinstance(items, list) else iter(())


def failure(errors: Any) -> dict[str, Any]:
    """A status's ``errors[]`` as zapmux's error: our code, what to do, Meta's code."""
    first = next(_dicts(errors), {})
    meta_code = first.get("code")
    known = FAILURES.get(meta_code) if isinstance(meta_code, int) else None
    code, advice = known or ("meta_error", "")
    details = (first.get("error_data") or {}).get("details") or first.get("message") or ""
    message = advice or str(details or first.get("title") or "the message failed")
    return {"code": code, "message": message, "meta_code": meta_code, "meta_message": details}


def receipts(value: dict[str, Any]) -> list[Receipt]:
    """``statuses[]`` as receipts (sent, delivered, read, failed with its error)."""
    found = []
    for status in _dicts(value.get("statuses")):
        kind = status.get("status")
        if kind not in RECEIPTS or not status.get("id"):
            continue
        found.append(
            Receipt(
                message_ids=(str(status["id"]),),
                chat=str(JID(str(status.get("recipient_id", "")))),
                status=kind,
                timestamp=_time(status.get("timestamp")),
                error=failure(status.get("errors")) if kind == MessageStatus.FAILED else None,
                repeatable=True,
            )
        )
    return found


def names(value: dict[str, Any]) -> dict[str, str]:
    """The senders' profile names by WhatsApp id, from ``contacts[]``."""
    return {
        str(c.get("wa_id")): str((c.get("profile") or {}).get("name"))
        for c in _dicts(value.get("contacts"))
        if (c.get("profile") or {}).get("name")
    }


def incoming(message: dict[str, Any], push_names: dict[str, str]) -> IncomingMessage | None:
    """One ``messages[]`` item as the message the other engines produce (no media bytes
    yet: the engine downloads them); None for what is not a message."""
    kind, sender = str(message.get("type") or ""), str(message.get("from") or "")
    if not sender or not message.get("id") or kind == "system":
        return None
    chat = str(JID(sender))
    context = message.get("context") or {}
    reaction = message.get("reaction") or {}
    vote = questions.vote_of(message)
    return IncomingMessage(
        message_id=str(message["id"]),
        chat=chat,
        sender=chat,
        phone=sender,
        message_type="voto" if vote else MESSAGE_TYPES.get(kind, "outro"),
        text=text_of(kind, message),
        timestamp=_time(message.get("timestamp")),
        push_name=push_names.get(sender),
        reply_to=reaction.get("message_id") or context.get("id"),
        vote=vote,
        extra=_extra(kind, message),
    )


def text_of(kind: str, message: dict[str, Any]) -> str:
    """What the customer wrote or chose, as the ``message`` of the webhook."""
    body = _part(message, kind)
    if kind == "text":
        return str(body.get("body") or "")
    if kind in MEDIA_TYPES:
        return str(body.get("caption") or "")
    if kind == "location":
        place = body.get("name") or body.get("address")
        return str(place or f"{body.get('latitude')},{body.get('longitude')}")
    if kind == "contacts":
        people = message.get("contacts") or []
        return ", ".join(str((p.get("name") or {}).get("formatted_name") or "") for p in people)
    if kind == "reaction":
        return str(body.get("emoji") or "")
    if kind == "button":
        return str(body.get("text") or body.get("payload") or "")
    if kind == "interactive":
        reply = body.get(str(body.get("type"))) or {}
        return str(reply.get("title") or "")
    return ""


def _extra(kind: str, message: dict[str, Any]) -> dict[str, object]:
    body = _part(message, kind)
    if kind in MEDIA_TYPES:
        return {"cloud_media": body}
    if kind == "interactive":
        reply = body.get(str(body.get("type"))) or {}
        return {"reply": {"id": reply.get("id"), "title": reply.get("title")}}
    if kind == "button":
        return {"reply": {"id": body.get("payload"), "title": body.get("text")}}
    return {}


def _part(message: dict[str, Any], kind: str) -> dict[str, Any]:
    """The message's object of its type (``message["text"]`` for a text), or {}."""
    part = message.get(kind)
    return part if isinstance(part, dict) else {}


def _time(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return time.time()
