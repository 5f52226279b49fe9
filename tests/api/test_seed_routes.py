"""Every route of the old server, through real HTTP, with the old server's bodies."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import LiveServer, Receiver, wait_for


async def test_health_is_open_and_ok(server: LiveServer) -> None:
    response = await server.http.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_create_tenant_with_seed_body_then_qr_then_scan(server: LiveServer) -> None:
    created = await server.http.post("/tenants", json={"tenantId": "empresa1"})
    assert created.status_code == 201
    body = created.json()
    assert body["success"] is True and body["tenant_id"] == "empresa1"
    assert body["token"].startswith("zt_")

    qr = await server.http.get("/tenants/empresa1/qr")
    assert qr.status_code == 200
    data = qr.json()
    assert data["status"] == "awaiting_qr" and data["qr"].startswith("2@")
    assert data["qr_image"].startswith("data:image/png;base64,")
    assert data["expires_at"] > 0

    scanned = await server.http.post(
        "/sandbox/scan", json={"qr": data["qr"], "phone": "5511988887777"}
    )
    assert scanned.status_code == 200
    status = await server.wait_status("empresa1", "connected")
    assert status["connected"] is True and status["phone"] == "5511988887777"

    after = await server.http.get("/tenants/empresa1/qr")
    assert after.status_code == 200
    assert after.json()["status"] == "connected" and after.json()["qr"] is None


async def test_create_existing_tenant_is_409(server: LiveServer) -> None:
    assert (await server.http.post("/tenants", json={"tenant_id": "dup"})).status_code == 201
    again = await server.http.post("/tenants", json={"tenantId": "dup"})
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "tenant_exists"


async def test_qr_formats_png_and_text(server: LiveServer) -> None:
    await server.http.post("/tenants", json={"tenantId": "fmt"})
    png = await server.http.get("/tenants/fmt/qr", params={"format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    text = await server.http.get("/tenants/fmt/qr", params={"format": "text"})
    assert text.status_code == 200 and "█" in text.text


async def test_send_seed_route_reaches_the_phone(server: LiveServer) -> None:
    await server.create_paired("1")
    sent = await server.http.post(
        "/send/1", json={"phone": "5511999999999", "message": "Lembrete: amanhã 10h"}
    )
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert body["success"] is True and body["status"] == "sent"
    assert body["tenant_id"] == "1" and body["phone"] == "5511999999999"
    assert body["jid"] == "5511999999999@s.whatsapp.net" and body["message_id"]

    inbox = (await server.http.get("/sandbox/phones/5511999999999/messages")).json()["messages"]
    assert [m["text"] for m in inbox] == ["Lembrete: amanhã 10h"]
    assert inbox[0]["message_id"] == body["message_id"]


async def test_tenants_send_route_is_the_same(server: LiveServer) -> None:
    await server.create_paired("loja")
    sent = await server.http.post(
        "/tenants/loja/send", json={"phone": "+55 (11) 97777-6666", "message": "oi"}
    )
    assert sent.status_code == 200
    assert sent.json()["phone"] == "5511977776666"


async def test_incoming_message_reaches_flask_with_seed_payload(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("365")
    sent = await server.http.post(
        "/sandbox/messages", json={"from": "5511999999999", "tenant_id": "365", "text": "Confirmo"}
    )
    assert sent.status_code == 201
    await wait_for(receiver.got, what="the webhook")
    hit = receiver.received[0]
    assert hit.path == "/webhook/whatsapp"
    payload = hit.json
    assert payload["phone"] == "5511999999999"
    assert payload["message"] == "Confirmo"
    assert payload["message_type"] == "texto"
    assert payload["empresa_id"] == 365  # a JSON number for an all-digit id
    assert payload["tenant_id"] == "365"
    assert payload["message_id"] == sent.json()["message_id"]
    assert payload["is_group"] is False and payload["from_me"] is False
    assert payload["chat"] == "5511999999999@s.whatsapp.net"
    assert isinstance(payload["timestamp"], int) and payload["push_name"]
    assert hit.headers["X-Zapmux-Delivery"]


async def test_empresa_id_stays_a_string_for_non_numeric_ids(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("loja-a")
    await server.http.post(
        "/sandbox/messages", json={"from": "5511999999999", "tenant_id": "loja-a", "text": "x"}
    )
    await wait_for(receiver.got, what="the webhook")
    assert receiver.received[0].json["empresa_id"] == "loja-a"


async def test_relay_webhook_goes_through_the_outbox(
    server: LiveServer, receiver: Receiver
) -> None:
    body = {"phone": "5511999999999", "message": "Texto", "message_type": "texto", "empresa_id": 1}
    relayed = await server.http.post("/webhook", json=body)
    assert relayed.status_code == 202
    delivery_id = relayed.json()["delivery_id"]
    await wait_for(receiver.got, what="the relayed webhook")
    assert receiver.received[0].json == body
    assert receiver.received[0].headers["X-Zapmux-Delivery"] == delivery_id


async def test_list_tenants_and_status(server: LiveServer) -> None:
    await server.create_paired("a1")
    await server.http.post("/tenants", json={"tenantId": "b2"})
    listed = (await server.http.get("/tenants")).json()
    assert listed["success"] is True
    states = {t["tenant_id"]: t["status"] for t in listed["tenants"]}
    assert states == {"a1": "connected", "b2": "awaiting_qr"}
    for t in listed["tenants"]:
        assert {"tenant_id", "status", "phone", "push_name"} <= t.keys()

    status = (await server.http.get("/status")).json()
    assert status["status"] == "running" and status["engine"] == "sandbox"
    assert status["tenants"]["total"] == 2 and status["tenants"]["connected"] == 1
    assert status["tenants"]["awaiting_qr"] == 1
    assert {c["tenant_id"] for c in status["connections"]} == {"a1", "b2"}
    assert status["version"] and status["uptime_s"] >= 0

    first = (await server.http.get("/tenants", params={"limit": 1})).json()
    assert [t["tenant_id"] for t in first["tenants"]] == ["a1"] and first["next"] == "a1"
    rest = (await server.http.get("/tenants", params={"limit": 1, "after": "a1"})).json()
    assert [t["tenant_id"] for t in rest["tenants"]] == ["b2"]
    page = (await server.http.get("/status", params={"limit": 1, "after": "a1"})).json()
    assert [c["tenant_id"] for c in page["connections"]] == ["b2"]
    assert page["tenants"]["total"] == 2 and page["tenants"]["connected"] == 1

    one = (await server.http.get("/tenants/a1/status")).json()
    for key in (
        "tenant_id",
        "status",
        "connected",
        "phone",
        "push_name",
        "since",
        "last_error",
        "reconnect_attempts",
        "next_retry_at",
    ):
        assert key in one


async def test_delete_tenant_logs_out_and_removes_it(server: LiveServer) -> None:
    await server.create_paired("gone")
    deleted = await server.http.delete("/tenants/gone")
    assert deleted.status_code == 200 and deleted.json()["success"] is True
    assert (await server.http.get("/tenants/gone/status")).status_code == 404
    assert not await server.gateway.engine.is_paired("gone")
    listed = (await server.http.get("/tenants")).json()["tenants"]
    assert listed == []


async def test_restart_reopens_the_connection(server: LiveServer) -> None:
    await server.create_paired("r1")
    restarted = await server.http.post("/restart/r1")
    assert restarted.status_code == 200
    await server.wait_status("r1", "connected")


async def test_clear_all_restarts_every_tenant(server: LiveServer) -> None:
    await server.create_paired("c1")
    await server.create_paired("c2", phone="5511988880001")
    cleared = await server.http.post("/clear-all")
    assert cleared.status_code == 200 and cleared.json()["tenants"] == 2
    await server.wait_status("c1", "connected")
    await server.wait_status("c2", "connected")


async def test_clear_all_with_purge_needs_pairing_again(server: LiveServer) -> None:
    await server.create_paired("p1")
    cleared = await server.http.post("/clear-all", json={"purge_sessions": True})
    assert cleared.status_code == 200 and cleared.json()["purged_sessions"] is True
    await server.wait_status("p1", "awaiting_qr")


@pytest.mark.parametrize("path", ["/tenants/nope/status", "/tenants/nope/qr", "/send/nope"])
async def test_unknown_tenant_is_404(server: LiveServer, path: str) -> None:
    if path.startswith("/send"):
        response = await server.http.post(path, json={"phone": "5511999999999", "message": "x"})
    else:
        response = await server.http.get(path)
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": {"code": "tenant_not_found", "message": "no tenant 'nope'"},
    }


async def test_status_says_in_words_why_a_tenant_is_not_connected(server: LiveServer) -> None:
    """/status and each tenant's status carry ``reason``: words an operator acts on;
    ``last_error`` keeps the raw error."""
    assert (await server.http.post("/tenants", json={"tenantId": "words"})).status_code == 201
    await server.http.post("/tenants/words/stop")
    await server.wait_status("words", "stopped")
    await server.create_paired("words2")
    fault = await server.http.post("/sandbox/tenants/words2/fault", json={"kind": "network_down"})
    assert fault.status_code == 200, fault.text
    down = await server.wait_status("words2", "reconnecting")
    assert down["reason"] == "This server cannot reach WhatsApp right now; it retries by itself."
    assert down["last_error"]  # the raw error, one look away

    async def reconnecting_in_status() -> dict[str, Any] | None:
        # (between two retries the tenant is "connecting" for a moment)
        body = (await server.http.get("/status")).json()
        views = {c["tenant_id"]: c for c in body["connections"]}
        return views if views["words2"]["status"] == "reconnecting" else None

    views = await wait_for(reconnecting_in_status, what="/status to show words2 reconnecting")
    assert views["words"]["reason"].startswith("This number was never linked")
    assert views["words2"]["reason"].startswith("This server cannot reach WhatsApp")
    await server.http.post("/sandbox/tenants/words2/fault", json={"kind": "network_up"})
    up = await server.wait_status("words2", "connected", timeout=20)
    assert up["reason"] is None
