"""Questions on whatsmeow: a single-choice poll built by neonize, votes decrypted in the
worker, with neonize's own protobuf types through the worker's handlers and commands
(the Go side cannot run here: the client is the stand-in of the worker-event tests)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waCommon import WACommon_pb2 as common
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as e2e
from neonize.utils.enum import VoteType

from tests.engines.whatsmeow.test_whatsmeow_worker_events import (
    Harness,
    NeonizeClientStandIn,
    incoming,
)
from zapmux import events as ev
from zapmux.engines.base import OutgoingMessage
from zapmux.engines.whatsmeow import protocol
from zapmux.engines.whatsmeow.client import encode_outgoing
from zapmux.engines.whatsmeow.worker import TenantWorker

SECRET = bytes(range(32))
OPTIONS = ["Confirmo", "Preciso remarcar"]


def sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class PollingClient(NeonizeClientStandIn):
    """The stand-in, plus what neonize's poll calls return (as whatsmeow builds them)."""

    def __init__(self, store: str, tenant_id: str) -> None:
        super().__init__(store, tenant_id)
        self.built: list[tuple[str, list[str], VoteType]] = []
        self.decrypted: list[pb.Message] = []
        self.vote_result: Any = e2e.PollVoteMessage(selectedOptions=[sha("Preciso remarcar")])

    async def build_poll_vote_creation(
        self, name: str, options: list[str], selectable_count: VoteType
    ) -> e2e.Message:
        self.built.append((name, options, selectable_count))
        poll = e2e.PollCreationMessage(
            name=name,
            options=[e2e.PollCreationMessage.Option(optionName=o) for o in options],
            selectableOptionsCount=1,
        )
        return e2e.Message(
            pollCreationMessage=poll,
            messageContextInfo=e2e.MessageContextInfo(messageSecret=SECRET),
        )

    async def decrypt_poll_vote(self, message: pb.Message) -> e2e.PollVoteMessage:
        self.decrypted.append(message)
        if isinstance(self.vote_result, BaseException):
            raise self.vote_result
        return self.vote_result  # type: ignore[no-any-return]


async def polling_harness() -> Harness:
    h = Harness()
    h.worker = TenantWorker(
        "t1", "/nowhere/whatsmeow.db", h._emit, client_factory=PollingClient,
        clock=lambda: 1_000_000.0,
    )  # fmt: skip
    await h.worker.start()
    await h.fire(pb.Connected(status=True))
    return h


def vote(poll_id: str = "3EB0POLL") -> pb.Message:
    key = common.MessageKey(remoteJID="5511988887777@s.whatsapp.net", fromMe=True, ID=poll_id)
    update = e2e.PollUpdateMessage(
        pollCreationMessageKey=key,
        vote=e2e.PollEncValue(encPayload=b"\x01" * 40, encIV=b"\x02" * 12),
    )
    raw = incoming(e2e.Message(pollUpdateMessage=update))
    raw.Info.ID = "VOTE1"
    return raw


async def test_options_go_out_as_a_single_choice_poll_and_its_secret_comes_back() -> None:
    h = await polling_harness()
    message = OutgoingMessage(
        to="5511988887777@s.whatsapp.net", text="Confirma?", options=tuple(OPTIONS)
    )
    command = {"type": "command", "id": 1, "op": "send", "args": encode_outgoing(message)}
    reply = await h.worker.handle(command)
    assert reply["ok"], reply
    assert reply["result"]["poll_secret"] == base64.b64encode(SECRET).decode()
    client: PollingClient = h.client  # type: ignore[assignment]
    assert client.built == [("Confirma?", OPTIONS, VoteType.SINGLE)]
    [(to, sent)] = client.sent
    assert to.User == "5511988887777" and sent.HasField("pollCreationMessage")
    assert [o.optionName for o in sent.pollCreationMessage.options] == OPTIONS


async def test_a_text_has_no_poll_secret() -> None:
    h = await polling_harness()
    args = encode_outgoing(OutgoingMessage(to="5511988887777@s.whatsapp.net", text="oi"))
    reply = await h.worker.handle({"type": "command", "id": 1, "op": "send", "args": args})
    assert "poll_secret" not in reply["result"]
    assert h.client.sent[0][1].conversation == "oi"


async def test_a_vote_is_decrypted_in_the_worker() -> None:
    h = await polling_harness()
    [event] = await h.fire(vote())
    assert isinstance(event, ev.IncomingMessage)
    assert (event.message_id, event.message_type, event.phone) == ("VOTE1", "voto", "5511988887777")
    assert event.vote == ev.PollVote("3EB0POLL", (sha("Preciso remarcar").hex(),))
    client: PollingClient = h.client  # type: ignore[assignment]
    assert client.decrypted[0].Info.ID == "VOTE1"  # the whole event, as whatsmeow wants it


async def test_a_vote_that_cannot_be_decrypted_still_arrives_saying_why() -> None:
    h = await polling_harness()
    client: PollingClient = h.client  # type: ignore[assignment]
    client.vote_result = RuntimeError("failed to get message secret: not found")
    [event] = await h.fire(vote())
    assert isinstance(event, ev.IncomingMessage) and event.vote is not None
    assert event.vote.selected_hashes == () and "message secret" in (event.vote.error or "")


async def test_votes_cross_the_channel_intact() -> None:
    event = ev.IncomingMessage(
        message_id="V", chat="c", sender="s", phone="5511988887777", message_type="voto",
        text="", timestamp=1.0, vote=ev.PollVote("3EB0POLL", ("ab", "cd"), None),
    )  # fmt: skip
    frame = json.loads(protocol.pack(protocol.encode_event(event))[4:])
    assert protocol.decode_event(frame) == event
