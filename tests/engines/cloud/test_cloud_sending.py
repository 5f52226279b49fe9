"""Sending from a cloud tenant: what reaches Graph's /messages, the wamid kept as the
message's WhatsApp id, templates, media by link or upload, and throttling."""

from __future__ import annotations

import base64

import pytest

from tests.engines.cloud.conftest import CUSTOMER, NUMBER_ID, TOKEN, Cloud
from tests.fake_graph import OUTSIDE_WINDOW, PAIR_RATE, THROTTLED
from tests.sending.steps import wait_message_status
from tests.sending.test_media import PNG


async def test_text_goes_to_graph_with_the_bearer_token(cloud: Cloud) -> None:
    await cloud.create("7")
    sent = await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "Olá!"})
    assert sent.status_code == 200 and sent.json()["status"] == "sent", sent.text
    assert cloud.graph.sent == [
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "text",
            "text": {"body": "Olá!"},
        }
    ]
    assert cloud.graph.requests[-1] == ("POST", f"/v23.0/{NUMBER_ID}/messages", f"Bearer {TOKEN}")


async def test_a_template_goes_out_as_type_template(cloud: Cloud) -> None:
    await cloud.create("7")
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Maria"}]}]
    body = {
        "phone": CUSTOMER,
        "template": {"name": "lembrete_consulta", "language": "pt_BR", "components": components},
    }
    sent = await cloud.http.post("/tenants/7/send", json=body)
    assert sent.status_code == 200, sent.text
    out = cloud.graph.sent[0]
    assert out["type"] == "template"
    assert out["template"] == {
        "name": "lembrete_consulta",
        "language": {"code": "pt_BR"},
        "components": components,
    }
    logged = await cloud.http.get(f"/tenants/7/messages/{sent.json()['message_id']}")
    assert logged.json()["message_type"] == "template"


async def test_templates_are_refused_on_other_engines(cloud: Cloud) -> None:
    await cloud.server.create_paired("local")
    body = {"phone": CUSTOMER, "template": {"name": "x"}}
    refused = await cloud.http.post("/send/local", json=body)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "template_not_supported"


async def test_media_from_a_url_goes_by_link_and_base64_is_uploaded(
    cloud: Cloud, files: str
) -> None:
    await cloud.create("7")
    photo_url = f"{files}/photo.png"
    by_link = await cloud.http.post(
        "/send/7", json={"phone": CUSTOMER, "message": "receita", "image": {"url": photo_url}}
    )
    assert by_link.status_code == 200, by_link.text
    doc = {
        "base64": base64.b64encode(PNG).decode(),
        "filename": "r.pdf",
        "mimetype": "application/pdf",
    }
    uploaded = await cloud.http.post("/send/7", json={"phone": CUSTOMER, "document": doc})
    assert uploaded.status_code == 200, uploaded.text
    link, upload = cloud.graph.sent
    assert link["type"] == "image"
    assert link["image"] == {"link": photo_url, "caption": "receita"}
    assert upload["type"] == "document" and upload["document"]["filename"] == "r.pdf"
    assert cloud.graph.media[upload["document"]["id"]] == (PNG, "application/pdf")


@pytest.mark.parametrize("throttle", [THROTTLED, PAIR_RATE], ids=["130429", "131056"])
async def test_a_throttled_message_is_queued_and_sent_after_a_backoff(
    cloud: Cloud, throttle: tuple[int, dict[str, object]]
) -> None:
    await cloud.create("7")
    cloud.graph.fail_next += [throttle, throttle]
    sent = await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "devagar"})
    assert sent.status_code == 202 and sent.json()["status"] == "queued", sent.text
    later = await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "depois"})
    assert later.json()["status"] == "queued"  # nothing overtakes the waiting message
    await wait_message_status(cloud.server, "7", later.json()["message_id"], "sent", timeout=20)
    assert [m["text"]["body"] for m in cloud.graph.sent] == ["devagar", "depois"]
    assert (await cloud.server.status("7"))["status"] == "connected"


async def test_a_refused_message_fails_with_metas_code(cloud: Cloud) -> None:
    await cloud.create("7")
    cloud.graph.fail_next.append(OUTSIDE_WINDOW)
    sent = await cloud.http.post("/send/7", json={"phone": CUSTOMER, "message": "oi"})
    assert sent.status_code == 502, sent.text
    assert sent.json()["error"]["code"] == "outside_service_window"
    assert sent.json()["error"]["meta_code"] == 131047
    listed = (await cloud.http.get("/tenants/7/messages")).json()["messages"][0]
    assert listed["status"] == "failed" and "template" in listed["error"]
