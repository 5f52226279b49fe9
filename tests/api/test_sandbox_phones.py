"""A phone's message in the sandbox: handed to a live session at once, kept while none is."""

from __future__ import annotations

import asyncio

from tests.helpers import LiveServer, Receiver, wait_for

CUSTOMER = "5511955554444"


async def _texts_logged(server: LiveServer, tenant_id: str) -> list[str]:
    listed = (await server.http.get(f"/tenants/{tenant_id}/messages")).json()["messages"]
    return [m["text"] for m in listed if m["direction"] == "in"]


async def test_a_message_to_a_connected_tenant_is_recorded_when_the_phone_is_answered(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("live")
    said = [{"from": CUSTOMER, "tenant_id": "live", "text": f"mensagem {n}"} for n in range(30)]
    answers = await asyncio.gather(
        *(server.http.post("/sandbox/messages", json=body) for body in said)
    )
    assert [a.status_code for a in answers] == [201] * 30
    # no waiting: each 201 came once zapmux had the message in its log
    assert sorted(await _texts_logged(server, "live")) == sorted(b["text"] for b in said)
    await wait_for(lambda: receiver.got(30), what="the webhooks")


async def test_messages_to_a_stopped_tenant_wait_and_arrive_in_order_after_it_starts(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("later")
    assert (await server.http.post("/tenants/later/stop")).status_code == 200
    await server.wait_status("later", "stopped")
    for n in range(3):
        said = {"from": CUSTOMER, "tenant_id": "later", "text": f"antes {n}"}
        assert (await server.http.post("/sandbox/messages", json=said)).status_code == 201
    assert await _texts_logged(server, "later") == []  # kept by the network, not delivered

    assert (await server.http.post("/tenants/later/start")).status_code == 200
    await server.wait_status("later", "connected")
    said = {"from": CUSTOMER, "tenant_id": "later", "text": "depois"}
    assert (await server.http.post("/sandbox/messages", json=said)).status_code == 201
    await wait_for(lambda: receiver.got(4), what="the four webhooks")
    assert [hit.json["message"] for hit in receiver.received] == [
        "antes 0",
        "antes 1",
        "antes 2",
        "depois",
    ]
