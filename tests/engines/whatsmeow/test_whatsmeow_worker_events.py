"""neonize's own protobuf events through the worker's handlers, out as zapmux events.

The worker runs in this process with a stand-in for neonize's *client* (the Go side
cannot run here); the events are real ``neonize.proto.Neonize_pb2`` values delivered
through the handlers the worker registered, and what comes out is decoded from the
frames the worker would put on the channel.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as e2e

from zapmux import events as ev
from zapmux.engines.base import OutgoingMessage
from zapmux.engines.whatsmeow import protocol
from zapmux.engines.whatsmeow.client import encode_outgoing
from zapmux.engines.whatsmeow.mapping import NO_ROUTE
from zapmux.engines.whatsmeow.worker import TenantWorker
from zapmux.inbound import message_payload

ME = pb.JID(User="5511999990000", Server="s.whatsapp.net", Device=7)


class NeonizeClientStandIn:
    """Just enough of ``NewAClient`` for the worker: handler registry, connect, calls."""

    def __init__(self, store: str, tenant_id: str) -> None:
        self.store, self.tenant_id = store, tenant_id
        self.handlers: dict[type, Any] = {}
        self.on_qr: Any = None
        self.connect_task: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stopped = False
        self.dials = 0
        self.sent: list[tuple[Any, Any]] = []
        self.lids: dict[str, str] = {}  # whatsmeow's LID↔phone store: LID user → phone
        self.lid_lookups: list[pb.JID] = []
        self.send_error: Exception | None = None  # what WhatsApp answers, as neonize raises it
        self.downloads: list[e2e.Message] = []
        self.download_result: Any = b"\x89PNG fake image bytes"  # bytes, an error, a future

    def qr(self, handler: Any) -> None:
        self.on_qr = handler

    def event(self, event_type: type) -> Any:
        return lambda handler: self.handlers.__setitem__(event_type, handler)

    async def connect(self, proxy: Any = None) -> asyncio.Future[None]:
        if self.connect_task.done():  # a new dial: neonize runs its Go session again
            self.connect_task = asyncio.get_running_loop().create_future()
        self.dials += 1
        return self.connect_task

    async def stop(self) -> None:
        self.stopped = True
        if not self.connect_task.done():
            self.connect_task.set_result(None)

    async def get_me(self) -> pb.Device:
        return pb.Device(JID=ME, PushName="Clínica Sorriso")

    async def send_message(self, to: Any, message: Any) -> pb.SendResponse:
        if self.send_error is not None:
            raise self.send_error
        self.sent.append((to, message))
        return pb.SendResponse(ID="3EB0ABC", Timestamp=1_700_000_000)

    async def download_any(self, message: e2e.Message) -> bytes:
        self.downloads.append(message)
        result = self.download_result
        if isinstance(result, BaseException):
            raise result
        if isinstance(result, asyncio.Future):
            return await result  # type: ignore[no-any-return]
        return result  # type: ignore[no-any-return]

    async def get_pn_from_lid(self, jid: pb.JID) -> pb.JID:
        self.lid_lookups.append(jid)
        phone = self.lids.get(jid.User)
        return pb.JID(User=phone, Server="s.whatsapp.net") if phone else pb.JID()

    async def is_on_whatsapp(self, *numbers: str) -> list[pb.IsOnWhatsAppResponse]:
        jid = pb.JID(User="551188887777", Server="s.whatsapp.net")
        return [pb.IsOnWhatsAppResponse(Query=numbers[0], JID=jid, IsIn=True)] + [
            pb.IsOnWhatsAppResponse(Query=n, IsIn=False) for n in numbers[1:]
        ]


class Harness:
    """A started worker, what it emitted, and a way to fire neonize events at it."""

    def __init__(self, **options: Any) -> None:
        self.frames: list[dict[str, Any]] = []
        self.refusals = 0  # how many events the "server" fails to record before it can
        self.worker = TenantWorker(
            "t1", "/nowhere/whatsmeow.db", self._emit, client_factory=NeonizeClientStandIn,
            clock=lambda: 1_000_000.0, **options,
        )  # fmt: skip

    async def _emit(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        if "id" in frame:  # the server's answer: recorded (ack) or not (nack)
            refused, self.refusals = self.refusals > 0, max(0, self.refusals - 1)
            self.worker.acknowledge({"type": "nack" if refused else "ack", "id": frame["id"]})

    @property
    def client(self) -> NeonizeClientStandIn:
        return self.worker.client  # type: ignore[no-any-return]

    @property
    def events(self) -> list[ev.Event]:
        return [protocol.decode_event(f) for f in self.frames if f["type"] == "event"]

    async def fire(self, raw: Any) -> list[ev.Event]:
        before = len(self.events)
        await self.client.handlers[type(raw)](self.client, raw)
        return self.events[before:]


@pytest.fixture
async def harness() -> Harness:
    h = Harness()
    await h.worker.start()
    return h


def incoming(content: e2e.Message, *, group: bool = False, from_me: bool = False) -> pb.Message:
    sender = pb.JID(User="5511988887777", Server="s.whatsapp.net")
    chat = pb.JID(User="120363000000", Server="g.us") if group else sender
    source = pb.MessageSource(Chat=chat, Sender=sender, IsGroup=group, IsFromMe=from_me)
    info = pb.MessageInfo(
        MessageSource=source, ID="MSG1", Pushname="Ana", Timestamp=1_700_000_123_456
    )
    return pb.Message(Info=info, Message=content)


async def test_text_message_becomes_incoming_message(harness: Harness) -> None:
    [event] = await harness.fire(incoming(e2e.Message(conversation="Oi, quero marcar")))
    assert event == ev.IncomingMessage(
        message_id="MSG1", chat="5511988887777@s.whatsapp.net",
        sender="5511988887777@s.whatsapp.net", phone="5511988887777", message_type="texto",
        text="Oi, quero marcar", timestamp=1_700_000_123.456, push_name="Ana",
    )  # fmt: skip


async def test_group_message_from_phone_keeps_flags(harness: Harness) -> None:
    [event] = await harness.fire(
        incoming(e2e.Message(conversation="bom dia"), group=True, from_me=True)
    )
    assert isinstance(event, ev.IncomingMessage)
    assert (event.is_group, event.from_me, event.chat) == (True, True, "120363000000@g.us")
    assert event.phone == "5511988887777"


async def test_lid_sender_uses_the_phone_jid(harness: Harness) -> None:
    raw = incoming(e2e.Message(conversation="oi"))
    raw.Info.MessageSource.Sender.CopyFrom(pb.JID(User="123456789012345", Server="lid"))
    raw.Info.MessageSource.SenderAlt.CopyFrom(pb.JID(User="5511977776666", Server="s.whatsapp.net"))
    [event] = await harness.fire(raw)
    assert isinstance(event, ev.IncomingMessage) and event.phone == "5511977776666"


async def test_extended_text_reply(harness: Harness) -> None:
    text = e2e.ExtendedTextMessage(text="sim", contextInfo=e2e.ContextInfo(stanzaID="ORIG"))
    [event] = await harness.fire(incoming(e2e.Message(extendedTextMessage=text)))
    assert isinstance(event, ev.IncomingMessage)
    assert (event.message_type, event.text, event.reply_to) == ("texto", "sim", "ORIG")


@pytest.mark.parametrize(
    ("content", "kind", "text"),
    [
        (e2e.Message(imageMessage=e2e.ImageMessage(caption="foto")), "imagem", "foto"),
        (e2e.Message(audioMessage=e2e.AudioMessage(PTT=True)), "audio", ""),
        (e2e.Message(videoMessage=e2e.VideoMessage(caption="v")), "video", "v"),
        (e2e.Message(documentMessage=e2e.DocumentMessage(fileName="a.pdf")), "documento", ""),
        (e2e.Message(stickerMessage=e2e.StickerMessage()), "figurinha", ""),
        (
            e2e.Message(locationMessage=e2e.LocationMessage(name="Clínica")),
            "localizacao",
            "Clínica",
        ),
        (e2e.Message(contactMessage=e2e.ContactMessage(displayName="Bia")), "contato", "Bia"),
        (e2e.Message(reactionMessage=e2e.ReactionMessage(text="👍")), "reacao", "👍"),
        (e2e.Message(pollCreationMessage=e2e.PollCreationMessage(name="?")), "outro", ""),
        (
            e2e.Message(
                ephemeralMessage=e2e.FutureProofMessage(
                    message=e2e.Message(imageMessage=e2e.ImageMessage(caption="efêmera"))
                )
            ),
            "imagem",
            "efêmera",
        ),
    ],
)
async def test_message_types_map_to_the_seeds_names(
    harness: Harness, content: e2e.Message, kind: str, text: str
) -> None:
    [event] = await harness.fire(incoming(content))
    assert isinstance(event, ev.IncomingMessage)
    assert (event.message_type, event.text) == (kind, text)


async def test_protocol_messages_are_not_delivered(harness: Harness) -> None:
    content = e2e.Message(protocolMessage=e2e.ProtocolMessage(type=0))
    assert await harness.fire(incoming(content)) == []


@pytest.mark.parametrize(
    ("kind", "status"),
    [(pb.Receipt.DELIVERED, "delivered"), (pb.Receipt.READ, "read"), (pb.Receipt.PLAYED, "read")],
)
async def test_receipts(harness: Harness, kind: int, status: str) -> None:
    chat = pb.JID(User="5511988887777", Server="s.whatsapp.net")
    raw = pb.Receipt(
        MessageSource=pb.MessageSource(Chat=chat, Sender=chat),
        MessageIDs=["A", "B"], Timestamp=1_700_000_000, Type=kind,
    )  # fmt: skip
    assert await harness.fire(raw) == [
        ev.Receipt(("A", "B"), "5511988887777@s.whatsapp.net", status, 1_700_000_000.0)  # type: ignore[arg-type]
    ]


async def test_retry_receipts_are_internal(harness: Harness) -> None:
    assert await harness.fire(pb.Receipt(MessageIDs=["A"], Type=pb.Receipt.RETRY)) == []


async def test_connected_reads_the_device(harness: Harness) -> None:
    assert await harness.fire(pb.Connected(status=True)) == [
        ev.Connected(
            phone="5511999990000", push_name="Clínica Sorriso", jid="5511999990000:7@s.whatsapp.net"
        )
    ]
    assert harness.worker.state == "connected"


async def test_pair_success_and_failure(harness: Harness) -> None:
    ok = pb.PairStatus(ID=ME, BusinessName="Clínica", Status=pb.PairStatus.SUCCESS)
    assert await harness.fire(ok) == [
        ev.PairSuccess(
            phone="5511999990000", jid="5511999990000:7@s.whatsapp.net", push_name="Clínica"
        )
    ]
    bad = pb.PairStatus(Status=pb.PairStatus.ERROR, Error="bad signature")
    [event] = await harness.fire(bad)
    assert isinstance(event, ev.Disconnected) and "bad signature" in event.reason


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (pb.LoggedOut(Reason=pb.ConnectFailureReason.LOGGED_OUT), ev.LoggedOut),
        (pb.StreamReplaced(), ev.Replaced),
        (pb.TemporaryBan(Code=pb.TemporaryBan.BLOCKED_BY_USERS, Expire=3600), ev.Banned),
        (pb.ClientOutdated(), ev.Failed),
        (pb.ConnectFailure(Reason=pb.ConnectFailureReason.MAIN_DEVICE_GONE), ev.LoggedOut),
        (pb.ConnectFailure(Reason=pb.ConnectFailureReason.TEMP_BANNED), ev.Banned),
    ],
)
async def test_permanent_ends_report_once_and_stop_the_worker(
    harness: Harness, raw: Any, expected: type[ev.Event]
) -> None:
    await harness.fire(pb.Connected(status=True))
    [event] = await harness.fire(raw)
    assert type(event) is expected
    assert harness.worker.ended.is_set() and harness.client.stopped
    assert await harness.fire(pb.Disconnected(status=True)) == []  # nothing after the end


@pytest.mark.parametrize(
    "raw",
    [
        pb.ConnectFailure(Reason=pb.ConnectFailureReason.INTERNAL_SERVER_ERROR),
        pb.Disconnected(status=True),
        pb.KeepAliveTimeout(ErrorCount=9, LastSuccess=1_000_000 - 600),
    ],
)
async def test_a_disconnect_stops_the_client_and_waits_to_dial_again(
    harness: Harness, raw: Any
) -> None:
    await harness.fire(pb.Connected(status=True))
    [event] = await harness.fire(raw)
    assert isinstance(event, ev.Disconnected)
    assert harness.client.stopped and harness.worker.state == "idle"
    assert not harness.worker.ended.is_set()  # the process stays for the next dial
    assert await harness.fire(pb.Disconnected(status=True)) == []  # the old client is done
    await harness.worker.start()  # the server's next connect, after its backoff
    assert harness.client.dials == 2 and harness.worker.state == "starting"
    [event] = await harness.fire(pb.Connected(status=True))
    assert isinstance(event, ev.Connected) and harness.worker.state == "connected"


async def test_temporary_ban_expiry(harness: Harness) -> None:
    [event] = await harness.fire(pb.TemporaryBan(Code=pb.TemporaryBan.BROADCAST_LIST, Expire=60))
    assert event == ev.Banned(reason="temporarily banned (broadcast_list)", expires_at=1_000_060.0)


async def test_a_recent_keepalive_miss_is_not_an_end(harness: Harness) -> None:
    assert await harness.fire(pb.KeepAliveTimeout(ErrorCount=1, LastSuccess=1_000_000 - 20)) == []
    assert not harness.worker.ended.is_set()


async def test_dial_failure_becomes_disconnected_and_the_worker_can_dial_again() -> None:
    h = Harness()
    await h.worker.start()
    h.client.connect_task.set_exception(RuntimeError("failed to dial whatsapp web websocket"))
    async with asyncio.timeout(2):
        await h.worker._wait_while("starting", 2)
        await h.worker._wait_while("parking", 2)
    assert h.events == [
        ev.Disconnected(reason=NO_ROUTE, detail="failed to dial whatsapp web websocket")
    ]
    assert h.worker.state == "idle" and not h.worker.ended.is_set()
    await h.worker.start()
    assert h.client.dials == 2 and h.worker.dials == 2


async def test_qr_codes_rotate_then_time_out() -> None:
    h = Harness(qr_first_s=0.15, qr_next_s=0.05, qr_total=3)
    await h.worker.start()
    for n in range(4):  # whatsmeow may offer more codes than zapmux shows
        await h.client.on_qr(h.client, f"2@code{n}".encode())
    await asyncio.wait_for(h.worker.ended.wait(), 2)
    codes = [e for e in h.events if isinstance(e, ev.QrCode)]
    assert [(c.code, c.index, c.total) for c in codes] == [
        ("2@code0", 1, 3), ("2@code1", 2, 3), ("2@code2", 3, 3),
    ]  # fmt: skip
    assert codes[0].expires_at == 1_000_000.15
    assert h.events[-1] == ev.QrTimeout() and h.client.stopped


async def test_a_scan_cancels_the_qr_timeout() -> None:
    h = Harness(qr_first_s=0.05, qr_total=1)
    await h.worker.start()
    await h.client.on_qr(h.client, b"2@only")
    await h.fire(pb.PairStatus(ID=ME, Status=pb.PairStatus.SUCCESS))
    await asyncio.sleep(0.15)
    assert not any(isinstance(e, ev.QrTimeout) for e in h.events)


async def test_commands_wait_for_the_connection(harness: Harness) -> None:
    command = {
        "type": "command",
        "id": 1,
        "op": "send",
        "args": {"to": "5511988887777", "text": "oi"},
    }
    reply = await harness.worker.handle(command)
    assert reply == {
        "type": "reply", "id": 1, "ok": False,
        "error": {"kind": "not_connected", "message": "WhatsApp session is starting"},
    }  # fmt: skip
    await harness.fire(pb.Connected(status=True))
    reply = await harness.worker.handle(command)
    assert reply["result"] == {"message_id": "3EB0ABC", "timestamp": 1_700_000_000.0}
    [(to, message)] = harness.client.sent
    assert (to.User, to.Server, message.conversation) == ("5511988887777", "s.whatsapp.net", "oi")


async def test_check_returns_the_jid_whatsapp_reports(harness: Harness) -> None:
    await harness.fire(pb.Connected(status=True))
    args = {"phones": ["5511988887777", "5511900000000"]}
    reply = await harness.worker.handle({"type": "command", "id": 2, "op": "check", "args": args})
    assert reply["result"] == [
        {"phone": "5511988887777", "exists": True, "jid": "551188887777@s.whatsapp.net"},
        {"phone": "5511900000000", "exists": False, "jid": None},
    ]


async def test_unknown_commands_are_refused(harness: Harness) -> None:
    reply = await harness.worker.handle({"type": "command", "id": 3, "op": "format_disk"})
    assert reply["error"]["kind"] == "invalid"


# -- incoming media ------------------------------------------------------------------


def image(caption: str = "raio-x", size: int = 22) -> e2e.Message:
    return e2e.Message(
        imageMessage=e2e.ImageMessage(
            caption=caption, mimetype="image/png", fileLength=size, directPath="/v/t62/x"
        )
    )


async def test_incoming_image_arrives_with_its_bytes(harness: Harness) -> None:
    [event] = await harness.fire(incoming(image()))
    assert isinstance(event, ev.IncomingMessage)
    assert (event.message_type, event.text) == ("imagem", "raio-x")
    assert event.media == ev.Media(
        kind="image", data=b"\x89PNG fake image bytes", mimetype="image/png", caption="raio-x"
    )
    [request] = harness.client.downloads
    assert request == e2e.Message(imageMessage=image().imageMessage)  # the part alone


@pytest.mark.parametrize(
    ("content", "expected", "asked_for"),
    [
        (
            e2e.Message(audioMessage=e2e.AudioMessage(PTT=True, mimetype="audio/ogg; codecs=opus")),
            ev.Media("audio", b"data", "audio/ogg; codecs=opus", ptt=True),
            "audioMessage",
        ),
        (
            e2e.Message(
                documentMessage=e2e.DocumentMessage(
                    fileName="exame.pdf", mimetype="application/pdf", caption="resultado"
                )
            ),
            ev.Media("document", b"data", "application/pdf", "exame.pdf", "resultado"),
            "documentMessage",
        ),
        (
            e2e.Message(videoMessage=e2e.VideoMessage(mimetype="video/mp4", caption="v")),
            ev.Media("video", b"data", "video/mp4", caption="v"),
            "videoMessage",
        ),
        (  # a round video note: whatsmeow's DownloadAny only looks in videoMessage
            e2e.Message(ptvMessage=e2e.VideoMessage(mimetype="video/mp4")),
            ev.Media("video", b"data", "video/mp4"),
            "videoMessage",
        ),
        (
            e2e.Message(stickerMessage=e2e.StickerMessage(mimetype="image/webp")),
            ev.Media("sticker", b"data", "image/webp"),
            "stickerMessage",
        ),
        (  # view-once and ephemeral wrappers are opened: DownloadAny does not
            e2e.Message(
                viewOnceMessage=e2e.FutureProofMessage(
                    message=e2e.Message(imageMessage=e2e.ImageMessage(mimetype="image/jpeg"))
                )
            ),
            ev.Media("image", b"data", "image/jpeg"),
            "imageMessage",
        ),
    ],
)
async def test_each_media_kind_is_downloaded(
    harness: Harness, content: e2e.Message, expected: ev.Media, asked_for: str
) -> None:
    harness.client.download_result = b"data"
    [event] = await harness.fire(incoming(content))
    assert isinstance(event, ev.IncomingMessage) and event.media == expected
    [request] = harness.client.downloads
    assert [field.name for field, _ in request.ListFields()] == [asked_for]


async def test_messages_without_media_download_nothing(harness: Harness) -> None:
    await harness.fire(incoming(e2e.Message(conversation="oi")))
    await harness.fire(incoming(e2e.Message(locationMessage=e2e.LocationMessage(name="x"))))
    assert harness.client.downloads == []


async def test_a_failed_download_still_delivers_the_message(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.client.download_result = RuntimeError("failed to download: 403 Forbidden")
    [event] = await harness.fire(incoming(image()))
    assert isinstance(event, ev.IncomingMessage)
    assert (event.message_type, event.text, event.media) == ("imagem", "raio-x", None)
    assert "the image of message MSG1 not downloaded: failed to download: 403" in caplog.text


async def test_media_over_the_limit_is_not_downloaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(media_max_bytes=1000)
    await h.worker.start()
    [event] = await h.fire(incoming(image(size=1001)))
    assert isinstance(event, ev.IncomingMessage) and event.media is None
    assert h.client.downloads == [] and "over the limit of 1000" in caplog.text

    h.client.download_result = b"x" * 1001  # the sender understated the size
    [event] = await h.fire(incoming(image(size=10)))
    assert isinstance(event, ev.IncomingMessage) and event.media is None
    assert len(h.client.downloads) == 1


async def test_a_slow_download_lets_the_message_go_on_in_order() -> None:
    h = Harness(media_wait_s=0.2)
    await h.worker.start()
    await h.fire(pb.Connected(status=True))
    hanging: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    h.client.download_result = hanging
    later = incoming(e2e.Message(conversation="depois"))
    later.Info.ID = "MSG2"
    handler = h.client.handlers[pb.Message]
    # neonize runs each handler call as its own task, in the order whatsmeow emitted.
    first = asyncio.ensure_future(handler(h.client, incoming(image())))
    second = asyncio.ensure_future(handler(h.client, later))
    await asyncio.wait_for(asyncio.gather(first, second), 2)
    messages = [e for e in h.events if isinstance(e, ev.IncomingMessage)]
    assert [(m.message_id, m.media) for m in messages] == [("MSG1", None), ("MSG2", None)]
    # Go's download still holds the FFI lock: no other call into Go meanwhile.
    reply = asyncio.ensure_future(
        h.worker.handle({"type": "command", "id": 9, "op": "check", "args": {"phones": ["1"]}})
    )
    await asyncio.sleep(0.05)
    assert not reply.done()
    hanging.set_result(b"late")
    assert (await asyncio.wait_for(reply, 2))["ok"] is True


async def test_media_survives_the_channel(harness: Harness) -> None:
    payload = bytes(range(256)) * 100
    harness.client.download_result = payload
    await harness.fire(incoming(image()))
    frame = protocol.pack(harness.frames[-1])
    event = protocol.decode_event(json.loads(frame[4:]))
    assert isinstance(event, ev.IncomingMessage) and event.media is not None
    assert event.media.data == payload


# -- outgoing ids ----------------------------------------------------------------------


async def test_the_send_result_carries_whatsapps_id_not_zapmuxs(harness: Harness) -> None:
    await harness.fire(pb.Connected(status=True))
    outgoing = OutgoingMessage(to="5511988887777@s.whatsapp.net", text="oi", message_id="ZM1")
    command = {"type": "command", "id": 4, "op": "send", "args": encode_outgoing(outgoing)}
    reply = await harness.worker.handle(command)
    # receipts carry the id whatsmeow generated; neonize cannot send with ours.
    assert reply["result"]["message_id"] == "3EB0ABC"


@pytest.mark.parametrize(
    ("whatsmeow_says", "kind"),
    [
        ("server returned error 463", "new_contact_restricted"),
        ("failed to get privacy token: info query returned status 429: rate-overlimit",
         "rate_limited"),
        ("server returned error 479", "engine"),
    ],
)  # fmt: skip
async def test_send_refusals_reach_the_server_as_stable_kinds(
    harness: Harness, whatsmeow_says: str, kind: str
) -> None:
    await harness.fire(pb.Connected(status=True))
    harness.client.send_error = RuntimeError(whatsmeow_says)
    reply = await harness.worker.handle(
        {"id": 7, "op": "send", "args": {"to": "5511988887777@s.whatsapp.net", "text": "lembrete"}}
    )
    assert reply["ok"] is False and reply["error"]["kind"] == kind
    assert kind in protocol.ERROR_KINDS
    if kind == "engine":
        assert reply["error"]["message"] == whatsmeow_says


# -- LIDs: senders whose number WhatsApp hides -------------------------------------------

LID = pb.JID(User="123456789012345", Server="lid")
LID_DEVICE = pb.JID(User="123456789012345", Server="lid", Device=12)


def from_lid(content: e2e.Message, *, alt: pb.JID | None = None) -> pb.Message:
    """A one-to-one message as WhatsApp sends it from a LID-addressed chat."""
    raw = incoming(content)
    source = raw.Info.MessageSource
    source.Chat.CopyFrom(LID)
    source.Sender.CopyFrom(LID_DEVICE)
    if alt is not None:
        source.SenderAlt.CopyFrom(alt)
    return raw


async def test_a_lid_sender_is_known_by_the_number_the_message_carries(harness: Harness) -> None:
    alt = pb.JID(User="5511977776666", Server="s.whatsapp.net")
    [event] = await harness.fire(from_lid(e2e.Message(conversation="oi"), alt=alt))
    assert isinstance(event, ev.IncomingMessage)
    assert (event.phone, event.chat) == ("5511977776666", "5511977776666@s.whatsapp.net")
    assert event.extra == {"lid": "123456789012345@lid"}
    assert harness.client.lid_lookups == []  # nothing to ask the store


async def test_a_lid_sender_is_resolved_through_whatsmeows_lid_store(harness: Harness) -> None:
    harness.client.lids["123456789012345"] = "5511977776666"
    [event] = await harness.fire(from_lid(e2e.Message(conversation="oi")))
    assert isinstance(event, ev.IncomingMessage)
    assert (event.phone, event.chat) == ("5511977776666", "5511977776666@s.whatsapp.net")
    assert event.extra == {"lid": "123456789012345@lid"}
    assert [(j.User, j.Server, j.Device) for j in harness.client.lid_lookups] == [
        ("123456789012345", "lid", 0)
    ]
    payload = message_payload("clinica", event)
    assert (payload["phone"], payload["lid"]) == ("5511977776666", "123456789012345@lid")


async def test_a_brazilian_number_without_the_ninth_digit_stays_as_whatsapp_has_it(
    harness: Harness,
) -> None:
    harness.client.lids["123456789012345"] = "551188887777"  # registered without the 9
    [event] = await harness.fire(from_lid(e2e.Message(conversation="oi")))
    assert isinstance(event, ev.IncomingMessage) and event.phone == "551188887777"


async def test_an_unknown_lid_is_delivered_as_the_lid(harness: Harness) -> None:
    [event] = await harness.fire(from_lid(e2e.Message(conversation="oi")))
    assert isinstance(event, ev.IncomingMessage)
    assert (event.phone, event.chat) == ("123456789012345", "123456789012345@lid")
    assert event.extra == {"lid": "123456789012345@lid"}


async def test_a_message_sent_from_the_phone_to_a_lid_chat_names_the_recipient(
    harness: Harness,
) -> None:
    raw = from_lid(e2e.Message(conversation="até amanhã"))
    source = raw.Info.MessageSource
    source.IsFromMe = True
    source.Sender.CopyFrom(pb.JID(User="999000111222333", Server="lid"))  # the tenant's LID
    source.SenderAlt.CopyFrom(ME)
    source.RecipientAlt.CopyFrom(pb.JID(User="5511977776666", Server="s.whatsapp.net"))
    [event] = await harness.fire(raw)
    assert isinstance(event, ev.IncomingMessage) and event.from_me
    assert (event.phone, event.chat) == (ME.User, "5511977776666@s.whatsapp.net")


async def test_receipts_from_a_lid_chat_name_it_by_its_number(harness: Harness) -> None:
    harness.client.lids["123456789012345"] = "5511977776666"
    source = pb.MessageSource(Chat=LID, Sender=LID_DEVICE)
    raw = pb.Receipt(MessageSource=source, MessageIDs=["3EB0ABC"], Type=pb.Receipt.READ,
                     Timestamp=1_700_000_000)  # fmt: skip
    [event] = await harness.fire(raw)
    assert event == ev.Receipt(
        message_ids=("3EB0ABC",), chat="5511977776666@s.whatsapp.net", status="read",
        timestamp=1_700_000_000.0,
    )  # fmt: skip


async def test_a_send_to_a_lid_chat_goes_to_that_lid(harness: Harness) -> None:
    await harness.fire(pb.Connected(status=True))
    reply = await harness.worker.handle(
        {"id": 1, "op": "send", "args": {"to": "123456789012345@lid", "text": "oi"}}
    )
    assert reply["ok"], reply
    [(to, _message)] = harness.client.sent
    assert (to.User, to.Server, to.Device) == ("123456789012345", "lid", 0)


async def test_a_message_the_server_could_not_record_is_sent_until_it_is() -> None:
    """A store hiccup on the server loses nothing: the worker resends until ``ack``."""
    harness = Harness(resend_base_s=0.01)
    await harness.worker.start()
    harness.refusals = 2
    first = await harness.fire(incoming(e2e.Message(conversation="não perca")))
    sent = [f for f in harness.frames if f.get("event") == "message"]
    assert len(sent) == 3 and len({f["id"] for f in sent}) == 1  # one event, three tries
    assert len(first) == 3 and all(e == first[0] for e in first)
    assert isinstance(first[0], ev.IncomingMessage) and first[0].text == "não perca"
    await harness.fire(incoming(e2e.Message(conversation="depois")))
    texts = [e.text for e in harness.events if isinstance(e, ev.IncomingMessage)]
    assert texts[-1] == "depois"  # the next one went after, once the first was recorded
