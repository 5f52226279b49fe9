"""The channel's frames: length-prefixed JSON, and every zapmux event round-tripped."""

from __future__ import annotations

import asyncio
import struct

import pytest

from zapmux import events as ev
from zapmux.engines.whatsmeow import protocol

EVENTS: list[ev.Event] = [
    ev.QrCode("2@abc", 1_700_000_060.0, 1, 6),
    ev.QrTimeout(),
    ev.PairSuccess("5511999990000", "5511999990000:7@s.whatsapp.net", "Clínica"),
    ev.Connected("5511999990000", "Clínica", "5511999990000:7@s.whatsapp.net"),
    ev.Disconnected("failed to dial"),
    ev.LoggedOut(),
    ev.Replaced(),
    ev.Banned(expires_at=1_700_003_600.0),
    ev.Failed("client outdated"),
    ev.IncomingMessage(
        "M1", "5511988887777@s.whatsapp.net", "5511988887777@s.whatsapp.net", "5511988887777",
        "imagem", "foto", 1_700_000_000.5, push_name="Ana",
        media=ev.Media("image", b"\x89PNG\x00", "image/png", caption="foto"),
    ),
    ev.Receipt(("A", "B"), "5511988887777@s.whatsapp.net", "read", 1_700_000_000.0),
]  # fmt: skip


def feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
async def test_events_round_trip_through_a_frame(event: ev.Event) -> None:
    frame = await protocol.read_frame(feed(protocol.pack(protocol.encode_event(event))))
    assert frame is not None and protocol.decode_event(frame) == event


async def test_frames_follow_each_other_and_end_cleanly() -> None:
    data = protocol.pack({"type": "hello", "pid": 1}) + protocol.pack({"type": "reply", "id": 1})
    reader = feed(data)
    assert (await protocol.read_frame(reader)) == {"type": "hello", "pid": 1}
    assert (await protocol.read_frame(reader)) == {"type": "reply", "id": 1}
    assert await protocol.read_frame(reader) is None


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00",  # a cut header
        struct.pack(">I", 10) + b"{}",  # a cut body
        struct.pack(">I", protocol.MAX_FRAME + 1),  # too large
        struct.pack(">I", 2) + b"[]",  # not an object
    ],
)
async def test_bad_frames_are_refused(data: bytes) -> None:
    with pytest.raises(protocol.ProtocolError):
        await protocol.read_frame(feed(data))


def test_unknown_events_are_refused() -> None:
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_event({"type": "event", "event": "teleport", "data": {}})
