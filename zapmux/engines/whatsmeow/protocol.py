"""The channel between the server and a whatsmeow worker: typed, length-prefixed JSON.

Each frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON,
one object per frame, with a ``type``:

- ``hello``   worker → server, once, after neonize is imported: ``{"pid"}``.
- ``heartbeat`` worker → server, every few seconds: ``{"state", "rss_kb"}``.
- ``command`` server → worker: ``{"id", "op", "args"}``; ``op`` is one of :data:`OPS`.
- ``reply``   worker → server: ``{"id", "ok": true, "result"}`` or
  ``{"id", "ok": false, "error": {"kind", "message"}}`` (kinds: :data:`ERROR_KINDS`).
- ``event``   worker → server: ``{"event": <name>, "data": {...}}``, a zapmux event
  (:func:`encode_event` / :func:`decode_event`). A message or receipt also carries an
  ``id``: the server answers it with ``ack`` once the event is durably recorded, or
  ``nack`` when it could not be (the worker sends it again until it is).
- ``ack``/``nack`` server → worker: ``{"id"}`` of such an event.

The channel is two inherited pipes, never the worker's stdout (neonize and Go print
there): commands flow server → worker on one, replies and events worker → server on
the other. Two one-way pipes rather than one socket so that a failed write (to a
worker that is exiting) cannot discard what the worker said last. This module must
not import neonize (the server imports it).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from dataclasses import asdict, fields
from typing import Any

from zapmux import events as ev

MAX_FRAME = 64 * 1024 * 1024  # media travels base64-encoded inside a frame
MAX_MEDIA_BYTES = 40 * 1024 * 1024  # base64 (×4/3) plus the rest must fit in a frame
#: The worker's store (a SQLite path or a postgres URL with a password) travels in the
#: environment, not on the command line that every local user can read.
STORE_ENV = "ZAPMUX_WHATSMEOW_STORE"
_HEADER = struct.Struct(">I")

OPS = frozenset({"connect", "pair_phone", "send", "check", "mark_read", "logout", "stop"})
ERROR_KINDS = frozenset(
    {"not_connected", "invalid", "engine", "new_contact_restricted", "rate_limited"}
)

_EVENT_TYPES: dict[str, type[ev.Event]] = {
    "qr": ev.QrCode,
    "qr_timeout": ev.QrTimeout,
    "pair_success": ev.PairSuccess,
    "connected": ev.Connected,
    "disconnected": ev.Disconnected,
    "logged_out": ev.LoggedOut,
    "replaced": ev.Replaced,
    "banned": ev.Banned,
    "failed": ev.Failed,
    "message": ev.IncomingMessage,
    "receipt": ev.Receipt,
}
_EVENT_NAMES = {cls: name for name, cls in _EVENT_TYPES.items()}


class ProtocolError(Exception):
    """A frame that is too large, truncated or not a JSON object."""


def pack(message: dict[str, Any]) -> bytes:
    """One frame: length prefix + compact JSON."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("truncated frame header") from exc
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes exceeds {MAX_FRAME}")
    try:
        body = await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("truncated frame body") from exc
    message = json.loads(body)
    if not isinstance(message, dict) or "type" not in message:
        raise ProtocolError("a frame must be a JSON object with a 'type'")
    return message


async def open_channel(
    read_fd: int, write_fd: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Asyncio streams over a pair of pipe ends (each fd is owned from now on)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_FRAME, loop=loop)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(read_fd, "rb", 0)
    )
    transport, flow = await loop.connect_write_pipe(
        asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", 0)
    )
    writer = asyncio.StreamWriter(transport, flow, None, loop)
    return reader, writer


def encode_event(event: ev.Event) -> dict[str, Any]:
    """An ``event`` frame for a zapmux event."""
    data = {f.name: getattr(event, f.name) for f in fields(event)}  # type: ignore[arg-type]
    if isinstance(event, ev.IncomingMessage) and event.media is not None:
        data["media"] = encode_media(event.media)
    if isinstance(event, ev.IncomingMessage) and event.vote is not None:
        data["vote"] = asdict(event.vote)
    return {"type": "event", "event": _EVENT_NAMES[type(event)], "data": data}


def decode_event(message: dict[str, Any]) -> ev.Event:
    """The zapmux event an ``event`` frame carries."""
    cls = _EVENT_TYPES.get(message.get("event", ""))
    if cls is None:
        raise ProtocolError(f"unknown event {message.get('event')!r}")
    data = dict(message.get("data") or {})
    if cls is ev.IncomingMessage and data.get("media") is not None:
        data["media"] = decode_media(data["media"])
    if cls is ev.IncomingMessage and data.get("vote") is not None:
        vote = data["vote"]
        data["vote"] = ev.PollVote(**{**vote, "selected_hashes": tuple(vote["selected_hashes"])})
    if cls is ev.Receipt:
        data["message_ids"] = tuple(data.get("message_ids", ()))
    return cls(**data)


def encode_media(media: ev.Media) -> dict[str, Any]:
    """Media as JSON, the bytes base64-encoded."""
    data = {f.name: getattr(media, f.name) for f in fields(media)}
    data["data"] = base64.b64encode(media.data).decode()
    return data


def decode_media(data: dict[str, Any]) -> ev.Media:
    """The inverse of :func:`encode_media`."""
    return ev.Media(**{**data, "data": base64.b64decode(data["data"])})
