"""Message status from receipts, the message log, and the message.sent event."""

from __future__ import annotations

from tests.helpers import LiveServer, Receiver, wait_for
from tests.sending.steps import message, send, wait_inbox, wait_message_status


async def test_status_goes_sent_delivered_read(server: LiveServer) -> None:
    await server.create_paired("acme")
    sent = await send(server, "acme", "5511944440001", "confirma?")
    message_id = sent.json()["message_id"]
    delivered = await wait_message_status(server, "acme", message_id, "delivered")
    assert delivered["direction"] == "out" and delivered["text"] == "confirma?"
    read = await server.http.post("/sandbox/phones/5511944440001/read")
    assert read.json()["read"] == 1
    await wait_message_status(server, "acme", message_id, "read")


async def test_unknown_message_is_404(server: LiveServer) -> None:
    await server.create_paired("acme")
    missing = await server.http.get("/tenants/acme/messages/NOPE")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "message_not_found"


async def test_message_sent_event_reaches_the_webhook(
    server: LiveServer, receiver: Receiver
) -> None:
    await server.create_paired("acme")
    hook = {"url": f"{receiver.url}/hook", "events": ["message.sent"]}
    assert (await server.http.put("/tenants/acme/webhook", json=hook)).status_code == 200
    sent = await send(server, "acme", "5511944440002", "evento")

    async def sent_event() -> dict[str, object] | None:
        bodies = [r.json for r in receiver.received if r.path == "/hook"]
        return next((b for b in bodies if b["event"] == "message.sent"), None)

    envelope = await wait_for(sent_event, what="a message.sent webhook")
    assert envelope["tenant_id"] == "acme"
    assert envelope["data"]["message_id"] == sent.json()["message_id"]
    assert envelope["data"]["phone"] == "5511944440002"


async def test_the_log_lists_both_directions_with_filter_and_paging(server: LiveServer) -> None:
    await server.create_paired("acme")
    out_ids = [
        (await send(server, "acme", "5511944440003", f"saída {n}")).json()["message_id"]
        for n in range(3)
    ]
    await wait_inbox(server, "5511944440003", 3)
    for n in range(2):
        await server.customer_says("5511944440003", "acme", f"entrada {n}")

    async def log_in() -> list[dict[str, object]] | None:
        r = await server.http.get("/tenants/acme/messages", params={"direction": "in"})
        rows = r.json()["messages"]
        return rows if len(rows) == 2 else None

    incoming = await wait_for(log_in, what="two incoming messages in the log")
    assert [m["text"] for m in incoming] == ["entrada 1", "entrada 0"]  # newest first
    assert {m["direction"] for m in incoming} == {"in"}
    outgoing = (
        await server.http.get("/tenants/acme/messages", params={"direction": "out"})
    ).json()["messages"]
    assert [m["message_id"] for m in outgoing] == out_ids[::-1]

    seen: list[str] = []
    params: dict[str, object] = {"limit": 2}
    while True:
        page = (await server.http.get("/tenants/acme/messages", params=params)).json()
        seen += [m["message_id"] for m in page["messages"]]
        if page["next_before"] is None:
            break
        params["before"] = page["next_before"]
    assert len(seen) == len(set(seen)) == 5
    assert set(out_ids) <= set(seen)


async def test_the_log_refuses_a_bad_direction(server: LiveServer) -> None:
    await server.create_paired("acme")
    bad = await server.http.get("/tenants/acme/messages", params={"direction": "sideways"})
    assert bad.status_code == 422


async def test_a_logged_message_shows_the_resolved_jid(server: LiveServer) -> None:
    await server.create_paired("acme")
    sent = await send(server, "acme", "5511944440004", "oi")
    logged = await message(server, "acme", sent.json()["message_id"])
    assert logged["chat"] == "5511944440004@s.whatsapp.net"
