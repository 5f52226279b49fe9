"""Outgoing messages as neonize calls (worker side only; imports neonize).

The command's arguments are :func:`client.encode_outgoing`'s JSON: ``to`` (a JID),
``text``, ``reply_to``, ``media`` (:func:`protocol.encode_media`) and ``options`` (a
question with answers, sent as a single-choice poll).
"""

from __future__ import annotations

from typing import Any

from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage, Message

from zapmux.engines.whatsmeow import mapping, protocol


async def send(client: Any, args: dict[str, Any]) -> tuple[Any, bytes | None]:
    """Send text, media or a poll to ``args["to"]``: neonize's ``SendResponse``, and the
    poll's message secret (what its votes are encrypted with) for a poll."""
    to = mapping.to_neonize_jid(args["to"])
    text, reply_to, media = args.get("text") or "", args.get("reply_to"), args.get("media")
    if media is not None:
        return await send_media(client, to, protocol.decode_media(media), text), None
    if args.get("options"):
        poll = await poll_message(client, text, args["options"])
        response = await client.send_message(to, poll)
        return response, bytes(poll.messageContextInfo.messageSecret) or None
    return await client.send_message(to, text_message(text, reply_to)), None


async def poll_message(client: Any, question: str, options: list[str]) -> Message:
    """A single-choice poll, built by whatsmeow (it draws the poll's secret)."""
    from neonize.utils.enum import VoteType

    return await client.build_poll_vote_creation(question, list(options), VoteType.SINGLE)


def text_message(text: str, reply_to: str | None = None) -> Message:
    """A plain text, or one quoting the message ``reply_to`` by its id."""
    if not reply_to:
        return Message(conversation=text)
    context = ContextInfo(stanzaID=reply_to)
    return Message(extendedTextMessage=ExtendedTextMessage(text=text, contextInfo=context))


async def send_media(client: Any, to: Any, media: Any, text: str) -> Any:
    """Upload and send one attachment; the caption is the media's, else the text."""
    caption = media.caption or text or None
    if media.kind == "image":
        return await client.send_image(to, media.data, caption=caption)
    if media.kind == "video":
        return await client.send_video(to, media.data, caption=caption)
    if media.kind == "audio":
        return await client.send_audio(to, media.data, ptt=media.ptt)
    if media.kind == "sticker":
        return await client.send_sticker(to, media.data)
    return await client.send_document(
        to, media.data, caption=caption, filename=media.filename or "file",
        mimetype=media.mimetype,
    )  # fmt: skip
