"""One bad inbound message never silences a tenant (issue 14, 2)."""

from __future__ import annotations

import json
import time

from sqlalchemy import text

from tests.helpers import Receiver, wait_for
from tests.reliability.conftest import LiveFactory
from zapmux.events import IncomingMessage, message_to_json

CUSTOMER = "5511977770000"


async def webhook_texts(receiver: Receiver) -> list[str]:
    return [r.json["message"] for r in receiver.received if r.path == "/webhook/whatsapp"]


async def test_nul_from_whatsapp_is_kept_visibly_and_the_line_moves_on(
    live: LiveFactory, receiver: Receiver
) -> None:
    async with live() as server:
        await server.create_paired("P1")
        await server.customer_says(CUSTOMER, "P1", "poison\u0000byte")
        await server.customer_says(CUSTOMER, "P1", "after")
        await wait_for(
            lambda: _has(receiver, "after"), what="the message after the NUL", timeout=15
        )
        assert await webhook_texts(receiver) == ["poison\u2400byte", "after"]
        log = (await server.http.get("/tenants/P1/messages?direction=in")).json()["messages"]
        assert [m["text"] for m in log] == ["after", "poison\u2400byte"]
        assert (await server.status("P1"))["status"] == "connected"


async def test_a_message_that_cannot_be_recorded_is_set_aside_visibly(
    live: LiveFactory, receiver: Receiver
) -> None:
    async with live() as server:
        await server.create_paired("P1")
        await server.customer_says(CUSTOMER, "P1", "too long an id", message_id="X" * 200)
        await server.customer_says(CUSTOMER, "P1", "next")
        await wait_for(lambda: _has(receiver, "next"), what="the message behind it")
        assert await webhook_texts(receiver) == ["next"]
        listed = (await server.http.get("/inbound/dead?tenant_id=P1")).json()
        [dead] = listed["events"]
        assert dead["tenant_id"] == "P1" and dead["event"]["text"] == "too long an id"
        assert "message_id is 200 characters long" in dead["error"]
        replay = await server.http.post(f"/inbound/dead/{dead['id']}/replay")
        assert replay.status_code == 409
        assert replay.json()["error"]["code"] == "replay_failed"
        assert len((await server.http.get("/inbound/dead")).json()["events"]) == 1
        assert (await server.status("P1"))["status"] == "connected"


async def test_a_set_aside_event_is_replayed_into_the_webhook(
    live: LiveFactory, receiver: Receiver
) -> None:
    async with live() as server:
        await server.create_paired("P1")
        message = IncomingMessage(
            message_id="3EB0REPLAYED", chat=f"{CUSTOMER}@s.whatsapp.net",
            sender=f"{CUSTOMER}@s.whatsapp.net", phone=CUSTOMER, message_type="texto",
            text="set aside once", timestamp=time.time(),
        )  # fmt: skip
        store = server.gateway.store
        dead_id = await store.add_dead_inbound("P1", message_to_json(message), "store was down")
        replay = await server.http.post(f"/inbound/dead/{dead_id}/replay")
        assert replay.status_code == 200, replay.text
        await wait_for(lambda: _has(receiver, "set aside once"), what="the replayed message")
        assert (await server.http.get("/inbound/dead")).json()["events"] == []
        missing = await server.http.post(f"/inbound/dead/{dead_id}/replay")
        assert missing.status_code == 404


async def test_a_store_failure_while_handing_over_reconnects_instead_of_going_silent(
    live: LiveFactory, receiver: Receiver
) -> None:
    async with live() as server:
        await server.create_paired("P1")
        engine = server.gateway.store.engine  # type: ignore[attr-defined]
        async with engine.begin() as conn:  # the outbox is away: nothing can be recorded
            await conn.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
        await server.customer_says(CUSTOMER, "P1", "while broken")
        await server.wait_status("P1", "reconnecting")
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE outbox_away RENAME TO outbox"))
        await wait_for(lambda: _has(receiver, "while broken"), what="the message", timeout=15)
        await server.wait_status("P1", "connected")
        assert await webhook_texts(receiver) == ["while broken"]


async def test_text_postgresql_cannot_store_gets_400_from_the_api_on_every_store(
    live: LiveFactory,
) -> None:
    async with live() as server:
        await server.create_paired("P1")
        send = await server.http.post(
            "/send/P1", json={"phone": CUSTOMER, "message": "poison\u0000byte"}
        )
        bad_key = await server.http.post(
            "/send/P1", json={"phone": CUSTOMER, "message": "x", "poison\u0000key": 1}
        )
        message = await server.http.get("/tenants/P1/messages/%00")
        retry = await server.http.post("/deliveries/%00/retry")
        listing = await server.http.get("/deliveries?tenant_id=%00")
        for response in (send, bad_key, message, retry, listing):
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "nul_character"
        log = (await server.http.get("/tenants/P1/messages")).json()["messages"]
        assert log == []  # nothing was sent or logged


async def _has(receiver: Receiver, text_: str) -> bool:
    return any(
        r.path == "/webhook/whatsapp" and json.loads(r.body).get("message") == text_
        for r in receiver.received
    )
