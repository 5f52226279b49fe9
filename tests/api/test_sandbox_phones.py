"""A phone's message in the sandbox: handed to a live session at once, kept while none is."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.helpers import LiveServer, Receiver, make_settings, wait_for
from zapmux.store.memory import MemoryStore

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


async def test_the_front_door_answers_a_phone_as_the_full_route_does(server: LiveServer) -> None:
    """api/hot.py writes a phone's 201 itself: the bytes and headers the route sends."""
    await server.create_paired("door")
    said = {
        "from": "+55 11 95555-4444",
        "tenant_id": "door",
        "text": "olá",
        "message_id": 'ção "1"',
    }
    fast = await server.http.post("/sandbox/messages", json=said)
    full = await server.http.post("/sandbox/messages?via=stack", json=said)  # the whole stack
    assert fast.status_code == full.status_code == 201
    assert fast.json() == {
        "success": True,
        "message_id": 'ção "1"',
        "tenant_id": "door",
        "from": CUSTOMER,
    }
    assert fast.content == full.content
    assert [(k, v) for k, v in fast.headers.items() if k != "date"] == [
        (k, v) for k, v in full.headers.items() if k != "date"
    ]
    assert await _texts_logged(server, "door") == ["olá"]  # the same message, handed twice


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


class RecordingFailsOnce(MemoryStore):
    """A store that is away the first time a message is to be recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def record_incoming(self, *args: Any, **kwargs: Any) -> bool:
        if self.failures:
            self.failures -= 1
            raise OSError("the store is away (test)")
        return await super().record_incoming(*args, **kwargs)


async def test_a_message_the_store_could_not_take_is_handed_over_again_on_reconnect(
    tmp_path: Path, receiver: Receiver
) -> None:
    store = RecordingFailsOnce()
    settings = make_settings(tmp_path, flask_url=receiver.url)
    async with LiveServer(settings, store=store) as server:
        await server.create_paired("away")
        assert (await server.http.post("/tenants/away/stop")).status_code == 200
        await server.wait_status("away", "stopped")
        said = {"from": CUSTOMER, "tenant_id": "away", "text": "guardada"}
        assert (await server.http.post("/sandbox/messages", json=said)).status_code == 201

        assert (await server.http.post("/tenants/away/start")).status_code == 200
        # the first hand-over fails (the session ends, the tenant reconnects), the next one
        # reads what still waits in the network's queue
        await wait_for(receiver.got, what="the message after the reconnect")
        assert store.failures == 0
        assert [hit.json["message"] for hit in receiver.received] == ["guardada"]

        # handed over live this time: the session ends before zapmux has it, so the
        # network keeps it (the phone still gets its 201) and hands it over after
        await server.wait_status("away", "connected")
        store.failures = 1
        said = {"from": CUSTOMER, "tenant_id": "away", "text": "ao vivo"}
        assert (await server.http.post("/sandbox/messages", json=said)).status_code == 201
        await wait_for(lambda: receiver.got(2), what="the live message after the reconnect")
        assert [hit.json["message"] for hit in receiver.received] == ["guardada", "ao vivo"]
