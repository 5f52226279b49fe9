"""Meta's webhook: the verification handshake, the signature, inbound messages in the
other engines' exact shape, each once, and statuses moving sent messages."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.engines.cloud.conftest import APP_SECRET, CUSTOMER, NUMBER_ID, VERIFY, Cloud
from tests.fake_graph import message_post, post, status_post
from tests.helpers import wait_for
from tests.sending.steps import wait_message_status

TEXT = {"type": "text", "text": {"body": "Quero remarcar"}}


async def flask_posts(cloud: Cloud, count: int) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        posts = [r.json for r in cloud.receiver.received if r.path == "/webhook/whatsapp"]
        return posts if len(posts) >= count else None

    return list(await wait_for(check, what=f"{count} posts to Flask"))


async def test_the_verification_handshake_answers_the_challenge(cloud: Cloud) -> None:
    await cloud.create("7")
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    ok = await cloud.http.get("/cloud/webhook", params=query)
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    for wrong in ({"hub.verify_token": "nope"}, {"hub.mode": "unsubscribe"}):
        refused = await cloud.http.get("/cloud/webhook", params={**query, **wrong})
        assert refused.status_code == 403


async def test_an_unsigned_or_wrongly_signed_post_stores_nothing(cloud: Cloud) -> None:
    await cloud.create("7")
    body = message_post(NUMBER_ID, CUSTOMER, TEXT)
    unsigned = await cloud.http.post("/cloud/webhook", json=body)
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "signature_missing"
    wrong = await cloud.webhook(body, secret="not-the-app-secret")
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "signature_invalid"
    unknown = await cloud.webhook(message_post("999", CUSTOMER, TEXT))
    assert unknown.status_code == 403
    await asyncio.sleep(0.3)
    assert (await cloud.http.get("/tenants/7/messages")).json()["messages"] == []
    assert cloud.receiver.received == []


async def test_a_message_reaches_flask_in_the_shape_other_engines_produce(cloud: Cloud) -> None:
    await cloud.create("7")
    await cloud.server.create_paired("local")
    await cloud.http.post(
        "/sandbox/messages", json={"from": CUSTOMER, "tenant_id": "local", "text": "oi"}
    )
    wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    answer = await cloud.webhook(message_post(NUMBER_ID, CUSTOMER, TEXT, message_id=wamid))
    assert answer.status_code == 200, answer.text
    # written before the 200: the log has it at once
    logged = (await cloud.http.get("/tenants/7/messages")).json()["messages"]
    assert [m["message_id"] for m in logged] == [wamid]
    sandbox, cloudy = sorted(await flask_posts(cloud, 2), key=lambda p: p["tenant_id"] == "7")
    assert set(cloudy) == set(sandbox)
    assert cloudy["phone"] == CUSTOMER and cloudy["message"] == "Quero remarcar"
    assert cloudy["message_type"] == "texto" and cloudy["empresa_id"] == 7
    assert cloudy["push_name"] == "Maria Cliente" and cloudy["message_id"] == wamid
    assert cloudy["chat"] == f"{CUSTOMER}@s.whatsapp.net" and cloudy["from_me"] is False


async def test_meta_posting_the_same_message_again_reaches_flask_once(cloud: Cloud) -> None:
    await cloud.create("7")
    body = message_post(NUMBER_ID, CUSTOMER, TEXT, message_id="wamid.REPEATED")
    for _ in range(3):
        assert (await cloud.webhook(body)).status_code == 200
    await flask_posts(cloud, 1)
    await asyncio.sleep(0.5)
    assert len(await flask_posts(cloud, 1)) == 1


async def test_each_kind_of_message_maps_to_its_message_type(cloud: Cloud) -> None:
    await cloud.create("7")
    media_id = cloud.graph.add_media(b"OggS-voice", "audio/ogg")
    kinds: list[tuple[dict[str, Any], str, str]] = [
        ({"type": "audio", "audio": {"id": media_id, "mime_type": "audio/ogg", "voice": True}}, "audio", ""),
        ({"type": "location", "location": {"latitude": -23.5, "longitude": -46.6, "name": "Clínica"}}, "localizacao", "Clínica"),
        ({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍"}}, "reacao", "👍"),
        ({"type": "button", "button": {"payload": "CONFIRMAR", "text": "Confirmar"}}, "texto", "Confirmar"),
        ({"type": "interactive", "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Terça 10h"}}}, "texto", "Terça 10h"),
        ({"type": "unsupported", "errors": [{"code": 131051}]}, "outro", ""),
    ]  # fmt: skip
    for n, (message, _, _) in enumerate(kinds):
        body = message_post(NUMBER_ID, CUSTOMER, message, message_id=f"wamid.K{n}")
        assert (await cloud.webhook(body)).status_code == 200
    posts = {p["message_id"]: p for p in await flask_posts(cloud, len(kinds))}
    for n, (_, message_type, text) in enumerate(kinds):
        assert (posts[f"wamid.K{n}"]["message_type"], posts[f"wamid.K{n}"]["message"]) == (
            message_type,
            text,
        )
    voice = posts["wamid.K0"]["media"]
    assert voice["mimetype"] == "audio/ogg" and voice["size"] == len(b"OggS-voice")
    fetched = await cloud.http.get(voice["url"])
    assert fetched.status_code == 200 and fetched.content == b"OggS-voice"


async def test_statuses_move_the_sent_message_forward(cloud: Cloud) -> None:
    await cloud.create("7")
    sent = await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "oi"})
    message_id = sent.json()["message_id"]
    wamid = cloud.graph.wamids[0]
    for status in ("sent", "delivered", "read", "delivered"):
        answer = await cloud.webhook(status_post(NUMBER_ID, wamid, status, CUSTOMER))
        assert answer.status_code == 200
    await wait_message_status(cloud.server, "7", message_id, "read")


async def test_a_failed_status_says_what_to_do(cloud: Cloud) -> None:
    await cloud.create("7")
    await cloud.http.put(
        "/tenants/7/webhook",
        json={"url": f"{cloud.receiver.url}/hook", "events": ["message", "receipt"]},
    )
    first = (await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "a"})).json()
    second = (await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "b"})).json()
    for n, meta in enumerate([131047, 131026]):
        wamid = cloud.graph.wamids[n]
        body = status_post(NUMBER_ID, wamid, "failed", CUSTOMER, error_code=meta)
        for _ in range(2):  # Meta repeats itself; the receipt is queued once
            assert (await cloud.webhook(body)).status_code == 200
    a = await wait_message_status(cloud.server, "7", first["message_id"], "failed")
    b = await wait_message_status(cloud.server, "7", second["message_id"], "failed")
    assert a["error"].startswith("outside_service_window") and "template" in a["error"]
    assert b["error"].startswith("undeliverable")

    async def receipts() -> list[dict[str, Any]] | None:
        found = [r.json for r in cloud.receiver.received if r.path == "/hook"]
        return found if len(found) >= 2 else None

    envelopes = await wait_for(receipts, what="two receipts")
    await asyncio.sleep(0.3)
    assert len([r for r in cloud.receiver.received if r.path == "/hook"]) == 2
    errors = [e["data"]["error"] for e in envelopes]
    assert [(e["code"], e["meta_code"]) for e in errors] == [
        ("outside_service_window", 131047),
        ("undeliverable", 131026),
    ]


async def test_a_post_for_several_numbers_needs_every_tenants_secret(cloud: Cloud) -> None:
    await cloud.create("7")
    cloud.graph.register("200", "EAAGother")
    other = await cloud.http.post(
        "/tenants",
        json={
            "tenantId": "8",
            "engine": "cloud",
            "cloud": {
                "phone_number_id": "200",
                "access_token": "EAAGother",
                "app_secret": "another-apps-secret",
                "verify_token": "v8",
            },
        },
    )
    assert other.status_code == 201
    both = message_post(NUMBER_ID, CUSTOMER, TEXT)
    both["entry"] += post("200", {"messages": []})["entry"]
    answer = await cloud.webhook(both, secret=APP_SECRET)
    assert answer.status_code == 403  # tenant 8's app never signed it
    await asyncio.sleep(0.3)
    assert cloud.receiver.received == []


async def test_an_attachment_over_the_media_limit_arrives_without_its_file(
    cloud: Cloud,
) -> None:
    await cloud.create("7")
    limit = cloud.server.settings.media_max_bytes
    media_id = cloud.graph.add_media(b"\0" * (limit + 1), "video/mp4")
    video = {
        "type": "video",
        "video": {"id": media_id, "mime_type": "video/mp4", "caption": "olha"},
    }
    body = message_post(NUMBER_ID, CUSTOMER, video, message_id="wamid.BIG")
    assert (await cloud.webhook(body)).status_code == 200
    (arrived,) = await flask_posts(cloud, 1)
    assert arrived["message_type"] == "video" and arrived["message"] == "olha"
    assert "media" not in arrived
    downloads = [path for method, path, _ in cloud.graph.requests if path.startswith("/download")]
    assert downloads == []  # Meta said how large it is: not fetched at all
