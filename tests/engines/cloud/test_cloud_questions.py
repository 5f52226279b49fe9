"""Questions with answers on the Cloud API: reply buttons or a list go out, and the
customer's choice comes back to the webhook as a vote, as on the other engines."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.engines.cloud.conftest import CUSTOMER, NUMBER_ID, Cloud
from tests.engines.cloud.test_cloud_webhook import flask_posts
from tests.fake_graph import message_post

OPTIONS = ["Confirmo", "Preciso remarcar"]


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def ask(cloud: Cloud, options: list[str]) -> Any:
    body = {"phone": CUSTOMER, "message": "Você confirma amanhã às 10h?", "options": options}
    return await cloud.http.post("/send/7", json=body)


async def test_up_to_three_answers_go_out_as_reply_buttons(cloud: Cloud) -> None:
    await cloud.create("7")
    asked = await ask(cloud, OPTIONS)
    assert asked.status_code == 200, asked.text
    [sent] = cloud.graph.sent
    assert sent["type"] == "interactive"
    interactive = sent["interactive"]
    assert interactive["type"] == "button"
    assert interactive["body"] == {"text": "Você confirma amanhã às 10h?"}
    assert interactive["action"]["buttons"] == [
        {"type": "reply", "reply": {"id": _id(o), "title": o}} for o in OPTIONS
    ]


async def test_more_answers_go_out_as_a_list_with_meta_s_lengths(cloud: Cloud) -> None:
    await cloud.create("7")
    options = ["Segunda 9h", "Terça 10h", "Quarta 14h", "Quinta, no fim da tarde depois das 17h"]
    assert (await ask(cloud, options)).status_code == 200
    [sent] = cloud.graph.sent
    interactive = sent["interactive"]
    assert interactive["type"] == "list" and interactive["action"]["button"]
    [section] = interactive["action"]["sections"]
    rows = section["rows"]
    assert [r["id"] for r in rows] == [_id(o) for o in options]
    assert all(len(r["title"]) <= 24 for r in rows)
    assert rows[3]["title"].endswith("…") and rows[3]["description"] == options[3]


async def test_more_than_ten_answers_are_not_supported_on_cloud(cloud: Cloud) -> None:
    await cloud.create("7")
    refused = await ask(cloud, [f"Horário {n}" for n in range(11)])
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "not_supported"
    assert cloud.graph.sent == []


async def test_a_chosen_button_reaches_the_webhook_as_a_vote(cloud: Cloud) -> None:
    await cloud.create("7")
    question = (await ask(cloud, OPTIONS)).json()["message_id"]
    wamid = cloud.graph.wamids[0]
    reply = {
        "type": "interactive",
        "context": {"from": "5511988880000", "id": wamid},
        "interactive": {
            "type": "button_reply",
            "button_reply": {"id": _id("Preciso remarcar"), "title": "Preciso remarcar"},
        },
    }
    assert (await cloud.webhook(message_post(NUMBER_ID, CUSTOMER, reply))).status_code == 200
    [payload] = await flask_posts(cloud, 1)
    assert (payload["message_type"], payload["message"]) == ("voto", "Preciso remarcar")
    assert payload["poll"] == {
        "message_id": question,
        "selected": ["Preciso remarcar"],
        "options": OPTIONS,
    }


async def test_other_interactive_replies_stay_texts(cloud: Cloud) -> None:
    await cloud.create("7")
    reply = {
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Terça 10h"}},
    }
    assert (await cloud.webhook(message_post(NUMBER_ID, CUSTOMER, reply))).status_code == 200
    [payload] = await flask_posts(cloud, 1)
    assert (payload["message_type"], payload["message"]) == ("texto", "Terça 10h")
    assert "poll" not in payload
