"""Questions with answers: a poll goes out, votes and typed answers come back named."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import LiveServer, Receiver, make_settings
from tests.scheduling.steps import phone_votes, webhook_messages
from tests.sending.steps import message, send, wait_inbox

PHONE = "5511955550001"
OPTIONS = ["Confirmo", "Preciso remarcar"]


async def ask(server: LiveServer, phone: str = PHONE) -> str:
    await server.create_paired("clinica")
    asked = await send(server, "clinica", phone, "Você confirma amanhã às 10h?", options=OPTIONS)
    assert asked.status_code == 200, asked.text
    assert asked.json()["status"] == "sent"
    return str(asked.json()["message_id"])


async def test_a_question_goes_out_with_its_answers(server: LiveServer) -> None:
    question = await ask(server)
    logged = await message(server, "clinica", question)
    assert (logged["options"], logged["message_type"]) == (OPTIONS, "enquete")
    [received] = await wait_inbox(server, PHONE, 1)
    assert (received["message_id"], received["options"]) == (question, OPTIONS)
    assert received["text"] == "Você confirma amanhã às 10h?"


async def test_a_vote_reaches_the_webhook_as_voto(server: LiveServer, receiver: Receiver) -> None:
    question = await ask(server)
    voted = await phone_votes(server, "clinica", PHONE, question, ["Preciso remarcar"])
    assert voted.status_code == 201, voted.text
    [payload] = await webhook_messages(receiver, 1)
    assert (payload["message_type"], payload["message"]) == ("voto", "Preciso remarcar")
    assert payload["poll"] == {
        "message_id": question,
        "selected": ["Preciso remarcar"],
        "options": OPTIONS,
    }
    assert payload["phone"] == PHONE and payload["message_id"] != question

    # a changed vote is a new event; so is a vote taken back
    await phone_votes(server, "clinica", PHONE, question, ["Confirmo"])
    await phone_votes(server, "clinica", PHONE, question, [])
    _, changed, withdrawn = await webhook_messages(receiver, 3)
    assert (changed["message"], changed["poll"]["selected"]) == ("Confirmo", ["Confirmo"])
    assert (withdrawn["message"], withdrawn["poll"]["selected"]) == ("", [])
    log = await server.http.get("/tenants/clinica/messages?direction=in")
    newest = log.json()["messages"][1]
    assert (newest["message_type"], newest["poll"]["selected"]) == ("voto", ["Confirmo"])


@pytest.mark.parametrize(
    ("typed", "chosen"),
    [
        ("2", "Preciso remarcar"),
        (" 1. ", "Confirmo"),
        ("confirmo!", "Confirmo"),
        ("PRECISO REMARCAR", "Preciso remarcar"),
    ],
)
async def test_a_typed_answer_is_mapped_as_texto(
    server: LiveServer, receiver: Receiver, typed: str, chosen: str
) -> None:
    question = await ask(server)
    await server.customer_says(PHONE, "clinica", typed)
    [payload] = await webhook_messages(receiver, 1)
    assert (payload["message_type"], payload["message"]) == ("texto", typed)
    assert payload["poll"] == {"message_id": question, "selected": [chosen], "options": OPTIONS}


@pytest.mark.parametrize("typed", ["3", "talvez", "Obrigado!"])
async def test_other_texts_are_not_answers(
    server: LiveServer, receiver: Receiver, typed: str
) -> None:
    await ask(server)
    await server.customer_says(PHONE, "clinica", typed)
    [payload] = await webhook_messages(receiver, 1)
    assert "poll" not in payload and payload["message_type"] == "texto"


async def test_only_the_last_message_sent_takes_typed_answers(
    server: LiveServer, receiver: Receiver
) -> None:
    await ask(server)
    assert (await send(server, "clinica", PHONE, "Outra coisa")).status_code == 200
    await server.customer_says(PHONE, "clinica", "1")
    [payload] = await webhook_messages(receiver, 1)
    assert "poll" not in payload


@pytest.mark.parametrize(
    "body",
    [
        {"message": "?", "options": ["Só uma"]},
        {"message": "?", "options": [f"o{n}" for n in range(13)]},
        {"message": "?", "options": ["Sim", "sim"]},
        {"message": "?", "options": ["Sim", ""]},
        {"message": "?", "options": ["Sim", "x" * 101]},
        {"message": "?", "options": "Sim,Não"},
        {"message": "", "options": ["Sim", "Não"]},
        {"options": ["Sim", "Não"]},
        {"message": "?", "options": ["Sim", "Não"], "image": {"base64": "aGk="}},
    ],
)
async def test_bad_questions_are_422_and_send_nothing(
    server: LiveServer, body: dict[str, Any]
) -> None:
    await server.create_paired("clinica")
    refused = await server.http.post("/send/clinica", json={"phone": PHONE, **body})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "validation_error"
    assert (await server.http.get("/tenants/clinica/messages")).json()["messages"] == []


async def test_bad_votes_are_refused(server: LiveServer) -> None:
    question = await ask(server)
    wrong = await phone_votes(server, "clinica", PHONE, question, ["Talvez"])
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_input"
    both = await phone_votes(server, "clinica", PHONE, question, OPTIONS)
    assert both.status_code == 400
    unknown = await phone_votes(server, "clinica", PHONE, "3EB0NOPE", ["Confirmo"])
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "question_not_found"
    stranger = await phone_votes(server, "clinica", "5511955550002", question, ["Confirmo"])
    assert stranger.status_code == 404


async def test_a_scheduled_question_keeps_its_answers(server: LiveServer) -> None:
    await server.create_paired("clinica")
    asked = await send(
        server, "clinica", PHONE, "Confirma?", options=OPTIONS, send_at=time.time() + 0.5
    )
    assert asked.status_code == 202 and asked.json()["status"] == "scheduled"
    [received] = await wait_inbox(server, PHONE, 1)
    assert (received["message_id"], received["options"]) == (asked.json()["message_id"], OPTIONS)


async def test_a_vote_after_a_restart_is_still_named(tmp_path: Path, receiver: Receiver) -> None:
    """The answers are kept with the question in the message log, not in memory."""
    async with LiveServer(make_settings(tmp_path, flask_url=receiver.url)) as server:
        question = await ask(server)
    async with LiveServer(make_settings(tmp_path, flask_url=receiver.url)) as server:
        await server.wait_status("clinica", "connected")
        await phone_votes(server, "clinica", PHONE, question, ["Confirmo"])
        [payload] = await webhook_messages(receiver, 1)
        assert payload["poll"] == {
            "message_id": question,
            "selected": ["Confirmo"],
            "options": OPTIONS,
        }
