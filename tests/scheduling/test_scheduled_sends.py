"""Scheduled sends: kept durably, sent at their time through the queue, cancellable."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.helpers import LiveServer, Receiver, make_settings, wait_for
from tests.sending.steps import fault, inbox, message, send, wait_inbox, wait_message_status

PHONE = "5511933330001"


async def test_a_scheduled_send_waits_for_its_time(server: LiveServer) -> None:
    await server.create_paired("clinica")
    send_at = time.time() + 1.5
    response = await send(server, "clinica", PHONE, "Lembrete: amanhã às 10h", send_at=send_at)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["success"], body["status"], body["send_at"]) == (True, "scheduled", send_at)
    listed = await server.http.get("/tenants/clinica/messages?status=scheduled")
    assert [m["message_id"] for m in listed.json()["messages"]] == [body["message_id"]]
    assert listed.json()["messages"][0]["send_at"] == send_at
    assert await inbox(server, PHONE) == []

    [arrived] = await wait_inbox(server, PHONE, 1)
    assert arrived["message_id"] == body["message_id"]
    assert arrived["received_at"] >= send_at  # never early
    await wait_message_status(server, "clinica", body["message_id"], "delivered")
    listed = await server.http.get("/tenants/clinica/messages?status=scheduled")
    assert listed.json()["messages"] == []


async def test_a_cancelled_reminder_never_goes_out(server: LiveServer) -> None:
    await server.create_paired("clinica")
    now = time.time()
    first = await send(server, "clinica", PHONE, "às 10h", send_at=now + 1)
    second = await send(server, "clinica", PHONE, "remarcado: às 11h", send_at=now + 1.5)
    first_id = first.json()["message_id"]
    cancelled = await server.http.delete(f"/tenants/clinica/messages/{first_id}")
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["status"], cancelled.json()["message_id"]) == ("cancelled", first_id)
    again = await server.http.delete(f"/tenants/clinica/messages/{first_id}")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"

    [arrived] = await wait_inbox(server, PHONE, 1)  # the later one came: the first is past
    assert arrived["message_id"] == second.json()["message_id"]
    assert (await message(server, "clinica", first_id))["status"] == "cancelled"
    listed = await server.http.get("/tenants/clinica/messages?status=cancelled")
    assert [m["message_id"] for m in listed.json()["messages"]] == [first_id]


async def test_cancel_is_409_once_sent_and_404_for_nothing(server: LiveServer) -> None:
    await server.create_paired("clinica")
    sent = await send(server, "clinica", PHONE, "já foi")
    assert sent.status_code == 200
    refused = await server.http.delete(f"/tenants/clinica/messages/{sent.json()['message_id']}")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "not_cancellable"
    assert refused.json()["error"]["status"] in {"sent", "delivered"}
    missing = await server.http.delete("/tenants/clinica/messages/ZMNOPE")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "message_not_found"


async def test_a_queued_message_can_be_cancelled(server: LiveServer) -> None:
    await server.create_paired("clinica")
    await fault(server, "clinica", "network_down")
    await server.wait_status("clinica", "reconnecting")
    queued = await send(server, "clinica", PHONE, "na fila")
    kept = await send(server, "clinica", PHONE, "este vai")
    assert queued.status_code == kept.status_code == 202
    response = await server.http.delete(f"/tenants/clinica/messages/{queued.json()['message_id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    await fault(server, "clinica", "network_up")
    [arrived] = await wait_inbox(server, PHONE, 1)
    assert arrived["message_id"] == kept.json()["message_id"]


async def test_send_at_out_of_range_is_422_and_stores_nothing(server: LiveServer) -> None:
    await server.create_paired("clinica")
    now = time.time()
    for send_at in (now - 120, now + 400 * 24 * 3600):
        refused = await send(server, "clinica", PHONE, "x", send_at=send_at)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["code"] == "invalid_send_at"
    for not_a_time in ("amanhã", True, "1767000000"):
        refused = await send(server, "clinica", PHONE, "x", send_at=not_a_time)
        assert refused.status_code == 422 and refused.json()["success"] is False
    log = await server.http.get("/tenants/clinica/messages")
    assert log.json()["messages"] == []


async def test_a_send_at_just_past_goes_out_now(server: LiveServer) -> None:
    await server.create_paired("clinica")
    response = await send(server, "clinica", PHONE, "atrasado", send_at=time.time() - 30)
    assert response.status_code == 202 and response.json()["status"] == "scheduled"
    await wait_inbox(server, PHONE, 1)


async def test_idempotency_keys_hold_for_scheduled_sends(server: LiveServer) -> None:
    await server.create_paired("clinica")
    send_at = time.time() + 3600
    first = await send(server, "clinica", PHONE, "lembrete", key="appt-1", send_at=send_at)
    again = await send(server, "clinica", PHONE, "lembrete", key="appt-1", send_at=send_at)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    moved = await send(server, "clinica", PHONE, "lembrete", key="appt-1", send_at=send_at + 60)
    assert moved.status_code == 409
    assert moved.json()["error"]["code"] == "idempotency_key_reused"
    listed = await server.http.get("/tenants/clinica/messages?status=scheduled")
    assert len(listed.json()["messages"]) == 1


async def test_at_its_time_a_reminder_joins_the_back_of_the_queue(server: LiveServer) -> None:
    await server.create_paired("clinica")
    reminder = await send(server, "clinica", PHONE, "lembrete", send_at=time.time() + 1)
    await fault(server, "clinica", "network_down")
    await server.wait_status("clinica", "reconnecting")
    waiting = await send(server, "clinica", PHONE, "já estava na fila")
    assert waiting.status_code == 202
    await wait_message_status(server, "clinica", reminder.json()["message_id"], "queued")
    await fault(server, "clinica", "network_up")
    arrived = await wait_inbox(server, PHONE, 2)
    assert [m["text"] for m in arrived] == ["já estava na fila", "lembrete"]


async def test_scheduled_sends_survive_a_restart(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, flask_url=receiver.url)
    async with LiveServer(settings) as server:
        await server.create_paired("clinica")
        scheduled = await send(server, "clinica", PHONE, "depois", send_at=time.time() + 2)
        assert scheduled.status_code == 202
    async with LiveServer(make_settings(tmp_path, flask_url=receiver.url)) as server:
        [arrived] = await wait_inbox(server, PHONE, 1)
        assert arrived["message_id"] == scheduled.json()["message_id"]


async def test_a_scheduled_send_to_a_stopped_tenant_waits_queued(server: LiveServer) -> None:
    await server.create_paired("clinica")
    scheduled = await send(server, "clinica", PHONE, "lembrete", send_at=time.time() + 0.5)
    assert (await server.http.post("/tenants/clinica/stop")).status_code == 200
    message_id = scheduled.json()["message_id"]
    await wait_message_status(server, "clinica", message_id, "queued")
    assert (await server.http.post("/tenants/clinica/start")).status_code == 200

    async def arrived() -> bool:
        return any(m["message_id"] == message_id for m in await inbox(server, PHONE))

    await wait_for(arrived, what="the reminder after the restart of the tenant")


async def test_reminders_that_join_the_queue_count_toward_its_limit(
    settings_for: Any, receiver: Receiver
) -> None:
    """The queue's depth is kept in memory: a reminder released into the queue must be
    counted there, or the queue would take more than its limit."""
    async with LiveServer(settings_for(flask_url=receiver.url, send_queue_max=2)) as server:
        await server.create_paired("clinica")
        await fault(server, "clinica", "network_down")
        await server.wait_status("clinica", "reconnecting")
        assert (await send(server, "clinica", PHONE, "na fila")).status_code == 202
        reminder = await send(server, "clinica", PHONE, "lembrete", send_at=time.time() + 0.5)
        await wait_message_status(server, "clinica", reminder.json()["message_id"], "queued")
        full = await send(server, "clinica", PHONE, "demais")
        assert full.status_code == 429, full.text
        assert full.json()["error"]["code"] == "rate_limited"


async def test_a_cancelled_queued_message_frees_its_place(
    settings_for: Any, receiver: Receiver
) -> None:
    async with LiveServer(settings_for(flask_url=receiver.url, send_queue_max=2)) as server:
        await server.create_paired("clinica")
        await fault(server, "clinica", "network_down")
        await server.wait_status("clinica", "reconnecting")
        sent = [await send(server, "clinica", PHONE, f"m{n}") for n in range(2)]
        assert [r.status_code for r in sent] == [202, 202]
        assert (await send(server, "clinica", PHONE, "m2")).status_code == 429
        first = sent[0].json()["message_id"]
        assert (await server.http.delete(f"/tenants/clinica/messages/{first}")).status_code == 200
        room = await send(server, "clinica", PHONE, "m3")
        assert room.status_code == 202, room.text
        await fault(server, "clinica", "network_up")
        arrived = await wait_inbox(server, PHONE, 2)
        assert [m["text"] for m in arrived] == ["m1", "m3"]
