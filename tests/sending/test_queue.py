"""The durable send queue: through reconnects and restarts, in order, bounded."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import LiveServer, Receiver, make_settings, message_record
from tests.sending.steps import (
    fault,
    inbox,
    message,
    send,
    wait_inbox,
    wait_message_status,
)


async def test_send_while_reconnecting_is_queued_then_delivered(server: LiveServer) -> None:
    await server.create_paired("acme")
    await fault(server, "acme", "network_down")
    await server.wait_status("acme", "reconnecting")
    queued = await send(server, "acme", "5511922220001", "na fila")
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert body["success"] is True and body["status"] == "queued" and body["message_id"]
    assert (await message(server, "acme", body["message_id"]))["status"] == "queued"
    assert await inbox(server, "5511922220001") == []

    await fault(server, "acme", "network_up")
    await server.wait_status("acme", "connected")
    phone = await wait_inbox(server, "5511922220001", 1)
    assert phone[0]["message_id"] == body["message_id"] and phone[0]["text"] == "na fila"
    await wait_message_status(server, "acme", body["message_id"], "delivered")


async def test_queued_messages_go_out_in_order(server: LiveServer) -> None:
    await server.create_paired("acme")
    await fault(server, "acme", "network_down")
    await server.wait_status("acme", "reconnecting")
    for n in range(5):
        assert (await send(server, "acme", "5511922220002", f"m{n}")).status_code == 202
    await fault(server, "acme", "network_up")
    # sends right after the reconnect must not overtake what waited
    await server.wait_status("acme", "connected")
    for n in range(5, 8):
        assert (await send(server, "acme", "5511922220002", f"m{n}")).status_code in (200, 202)
    phone = await wait_inbox(server, "5511922220002", 8)
    assert [m["text"] for m in phone] == [f"m{n}" for n in range(8)]


async def test_queue_survives_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    async with LiveServer(make_settings(tmp_path, flask_url=receiver.url)) as server:
        await server.create_paired("acme")
        await fault(server, "acme", "network_down")
        await server.wait_status("acme", "reconnecting")
        queued = await send(server, "acme", "5511922220003", "depois do restart")
        assert queued.status_code == 202
    async with LiveServer(make_settings(tmp_path, flask_url=receiver.url)) as server:
        await server.wait_status("acme", "reconnecting")
        assert await inbox(server, "5511922220003") == []
        await fault(server, "acme", "network_up")
        phone = await wait_inbox(server, "5511922220003", 1)
        assert phone[0]["message_id"] == queued.json()["message_id"]
        await wait_message_status(server, "acme", queued.json()["message_id"], "delivered")


async def test_never_paired_tenant_is_409_with_its_state(server: LiveServer) -> None:
    created = await server.http.post("/tenants", json={"tenantId": "novo"})
    assert created.status_code == 201
    refused = await send(server, "novo", "5511922220004", "oi")
    assert refused.status_code == 409
    error = refused.json()["error"]
    assert error["code"] == "tenant_not_connected"
    assert error["status"] in {"stopped", "awaiting_qr", "connecting"}
    assert error["status"] in error["message"]


async def test_permanent_end_is_409_and_nothing_is_queued(server: LiveServer) -> None:
    await server.create_paired("acme")
    await fault(server, "acme", "ban")
    await server.wait_status("acme", "banned")
    refused = await send(server, "acme", "5511922220005", "oi")
    assert refused.status_code == 409
    assert refused.json()["error"] == {
        "code": "tenant_not_connected",
        "message": refused.json()["error"]["message"],
        "status": "banned",
    }
    log = (await server.http.get("/tenants/acme/messages")).json()["messages"]
    assert log == []


async def test_full_queue_is_429_with_retry_after(settings_for: object, receiver: Receiver) -> None:
    settings = settings_for(flask_url=receiver.url, send_queue_max=2)  # type: ignore[operator]
    async with LiveServer(settings) as server:
        await server.create_paired("acme")
        await fault(server, "acme", "network_down")
        await server.wait_status("acme", "reconnecting")
        for n in range(2):
            assert (await send(server, "acme", "5511922220006", f"m{n}")).status_code == 202
        full = await send(server, "acme", "5511922220006", "m2")
        assert full.status_code == 429
        assert full.json()["error"]["code"] == "rate_limited"
        assert int(full.headers["Retry-After"]) >= 1
        log = (await server.http.get("/tenants/acme/messages")).json()["messages"]
        assert len(log) == 2


async def test_queued_number_not_on_whatsapp_ends_failed(server: LiveServer) -> None:
    await server.create_paired("acme")
    await server.http.post("/sandbox/phones", json={"phone": "5511922220007", "on_whatsapp": False})
    await fault(server, "acme", "network_down")
    await server.wait_status("acme", "reconnecting")
    doomed = await send(server, "acme", "5511922220007", "ninguém")
    after = await send(server, "acme", "5511922220008", "alguém")
    assert doomed.status_code == after.status_code == 202
    await fault(server, "acme", "network_up")
    failed = await wait_message_status(server, "acme", doomed.json()["message_id"], "failed")
    assert "not on WhatsApp" in failed["error"]
    await wait_inbox(server, "5511922220008", 1)  # the queue moved on
    assert await inbox(server, "5511922220007") == []


async def test_a_message_cut_off_mid_send_ends_failed_after_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    """What kill -9 leaves while a message is with WhatsApp: a ``sending`` row. It may
    have gone out, so it is not sent again: it ends ``failed`` and says why."""
    settings = make_settings(tmp_path, flask_url=receiver.url)
    async with LiveServer(settings) as server:
        await server.create_paired("acme")
        cut = message_record("acme", "ZMCUT", "sending", "5511922220009", text="cut")
        await server.gateway.store.add_message(cut)
    async with LiveServer(settings) as server:
        await server.wait_status("acme", "connected")
        message = (await server.http.get("/tenants/acme/messages/ZMCUT")).json()
        assert message["status"] == "failed" and "may have gone out" in message["error"]
        assert (await server.http.get("/sandbox/phones/5511922220009/messages")).json()[
            "messages"
        ] == []
