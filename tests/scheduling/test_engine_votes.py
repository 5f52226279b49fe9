"""Votes as an engine that names the question by its own id reports them (whatsmeow: the
id WhatsApp gave the poll, not zapmux's), through the dispatcher into the outbox."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import make_settings, message_record
from zapmux.events import IncomingMessage, PollVote, message_from_json, message_to_json
from zapmux.hub import Hub
from zapmux.inbound import Dispatcher
from zapmux.outbox import Deliverer
from zapmux.store import open_store
from zapmux.store.base import Store
from zapmux.store.records import TenantRecord
from zapmux.webhooks import Webhooks

OPTIONS = ["Confirmo", "Preciso remarcar"]


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    backend = open_store("memory://")  # what a store keeps is not under test here
    await backend.migrate()
    await backend.create_tenant(TenantRecord(id="t"))
    yield backend
    await backend.close()


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _vote(store: Store, tmp_path: Path, vote: PollVote) -> dict[str, object]:
    settings = make_settings(tmp_path)
    hub = Hub()
    dispatcher = Dispatcher(store, hub, Webhooks(store, hub, Deliverer(settings, store)))
    event = IncomingMessage(
        message_id="VOTE1", chat="5511988887777@s.whatsapp.net",
        sender="5511988887777@s.whatsapp.net", phone="5511988887777", message_type="voto",
        text="", timestamp=time.time(), vote=vote,
    )  # fmt: skip
    await dispatcher.incoming("t", event)
    [delivery] = await store.list_deliveries()
    return dict(json.loads(delivery.body))


async def test_a_vote_names_the_question_by_zapmux_id(store: Store, tmp_path: Path) -> None:
    question = message_record(
        "t",
        "ZMQUESTION",
        "sent",
        "5511988887777",
        wa_id="3EB0FROMWHATSAPP",
        message_type="enquete",
        text="Confirma?",
        poll=json.dumps({"options": OPTIONS, "secret": "c2VjcmV0"}),
    )
    await store.add_message(question)
    payload = await _vote(store, tmp_path, PollVote("3EB0FROMWHATSAPP", (_hash("Confirmo"),)))
    assert (payload["message_type"], payload["message"]) == ("voto", "Confirmo")
    assert payload["poll"] == {
        "message_id": "ZMQUESTION",
        "selected": ["Confirmo"],
        "options": OPTIONS,
    }


async def test_a_vote_on_an_unknown_question_still_arrives(store: Store, tmp_path: Path) -> None:
    payload = await _vote(store, tmp_path, PollVote("3EB0ELSEWHERE", (_hash("x"),), "no secret"))
    assert payload["message_type"] == "voto" and payload["message"] == ""
    assert payload["poll"] == {
        "message_id": "3EB0ELSEWHERE",
        "selected": [],
        "options": [],
        "error": "no secret",
    }


def test_a_vote_set_aside_comes_back_intact() -> None:
    """Votes that cannot be recorded wait in the dead inbound events, as JSON."""
    vote = IncomingMessage(
        message_id="V", chat="c", sender="s", phone="5511988887777", message_type="voto",
        text="", timestamp=1.0, vote=PollVote("3EB0POLL", ("ab",), "why"),
    )  # fmt: skip
    assert message_from_json(message_to_json(vote)) == vote
