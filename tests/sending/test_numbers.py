"""Numbers: the JID WhatsApp reports (Brazil's ninth digit), checks, not_on_whatsapp."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import LiveServer, Receiver
from tests.sending.steps import inbox, paced_server, send, wait_inbox


async def register(server: LiveServer, phone: str, on_whatsapp: bool = True) -> None:
    response = await server.http.post(
        "/sandbox/phones", json={"phone": phone, "on_whatsapp": on_whatsapp}
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("registered", "asked", "text"),
    [
        pytest.param("551188887777", "5511988887777", "com o nove", id="registered-without-9"),
        pytest.param("5511977776666", "551177776666", "sem o nove", id="registered-with-9"),
    ],
)
async def test_a_number_is_reached_as_whatsapp_registered_it(
    server: LiveServer, registered: str, asked: str, text: str
) -> None:
    """Brazil's ninth digit: a send reaches the number as WhatsApp knows it, either way."""
    await server.create_paired("acme")
    await register(server, registered)
    sent = await send(server, "acme", asked, text)
    assert sent.status_code == 200, sent.text
    assert sent.json()["phone"] == asked
    assert sent.json()["jid"] == f"{registered}@s.whatsapp.net"
    landed = await wait_inbox(server, registered, 1)
    assert landed[0]["text"] == text
    assert await inbox(server, asked) == []


async def test_queued_send_resolves_the_ninth_digit_too(server: LiveServer) -> None:
    await server.create_paired("acme")
    await register(server, "551166665555")
    await server.http.post("/sandbox/tenants/acme/fault", json={"kind": "network_down"})
    await server.wait_status("acme", "reconnecting")
    queued = await send(server, "acme", "5511966665555", "na fila")
    assert queued.status_code == 202
    await server.http.post("/sandbox/tenants/acme/fault", json={"kind": "network_up"})
    await wait_inbox(server, "551166665555", 1)
    logged = await server.http.get(f"/tenants/acme/messages/{queued.json()['message_id']}")
    assert logged.json()["chat"] == "551166665555@s.whatsapp.net"


async def test_not_on_whatsapp_is_422_and_nothing_is_sent(server: LiveServer) -> None:
    await server.create_paired("acme")
    await register(server, "5511955554444", on_whatsapp=False)
    refused = await send(server, "acme", "5511955554444", "oi")
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "not_on_whatsapp"
    assert await inbox(server, "5511955554444") == []
    log = (await server.http.get("/tenants/acme/messages")).json()["messages"]
    assert log == []


async def test_not_on_whatsapp_is_422_even_over_the_pace(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with paced_server(tmp_path, receiver.url, 1, 1) as server:
        await register(server, "5511955554443", on_whatsapp=False)
        assert (await send(server, "acme", "5511955554442", "gasta o ritmo")).status_code == 200
        refused = await send(server, "acme", "5511955554443", "oi")
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "not_on_whatsapp"


async def test_check_reports_each_number(server: LiveServer) -> None:
    await server.create_paired("acme")
    await register(server, "551133332222")
    await register(server, "5511944443333", on_whatsapp=False)
    checked = await server.http.post(
        "/tenants/acme/check",
        json={"phones": ["5511933332222", "5511944443333", "+55 11 91234-5678"]},
    )
    assert checked.status_code == 200, checked.text
    assert checked.json() == {
        "success": True,
        "results": [
            {"phone": "5511933332222", "exists": True, "jid": "551133332222@s.whatsapp.net"},
            {"phone": "5511944443333", "exists": False, "jid": None},
            {"phone": "5511912345678", "exists": True, "jid": "5511912345678@s.whatsapp.net"},
        ],
    }


async def test_check_needs_a_connection(server: LiveServer) -> None:
    await server.http.post("/tenants", json={"tenantId": "novo"})
    refused = await server.http.post("/tenants/novo/check", json={"phones": ["5511912345678"]})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "tenant_not_connected"


async def test_check_refuses_a_malformed_number(server: LiveServer) -> None:
    await server.create_paired("acme")
    bad = await server.http.post("/tenants/acme/check", json={"phones": ["abc"]})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_phone"
