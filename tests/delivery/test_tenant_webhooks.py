"""A tenant's own webhook: its URL and secret override the Flask URL, and the event
kinds it asks for arrive as envelopes ``{event, tenant_id, timestamp, data}``."""

from __future__ import annotations

from typing import Any

from tests.delivery.conftest import SECRET, StartNode
from tests.helpers import Receiver, wait_for
from tests.process import ServerProcess, signature_ok

TENANT_SECRET = "salao-secret-1234"
EVENTS = ["message", "message.sent", "qr", "receipt", "status"]
CUSTOMER = "5511987650001"


def _envelopes(hooks: Receiver, event: str) -> list[dict[str, Any]]:
    return [hit.json for hit in hooks.received if hit.headers["X-Zapmux-Event"] == event]


async def test_tenant_webhook_gets_envelopes_signed_with_its_secret(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(receiver.url)
    async with Receiver() as hooks:
        await _tenant_webhook_flow(node, receiver, hooks)


async def _tenant_webhook_flow(node: ServerProcess, flask: Receiver, hooks: Receiver) -> None:
    assert (await node.http.post("/tenants", json={"tenantId": "salao"})).status_code == 201
    put = await node.http.put(
        "/tenants/salao/webhook",
        json={"url": f"{hooks.url}/hooks/salao", "secret": TENANT_SECRET, "events": EVENTS},
    )
    assert put.status_code == 200, put.text
    view = (await node.http.get("/tenants/salao/webhook")).json()["webhook"]
    assert view["url"] == f"{hooks.url}/hooks/salao" and view["events"] == EVENTS
    assert view["secret_set"] and TENANT_SECRET not in str(view) and view["default"] is False

    # Pair again from the start so that the QR and the status changes happen now.
    await node.http.post("/tenants/salao/stop")
    await node.wait_status("salao", "stopped")
    await node.http.post("/tenants/salao/start")
    qrs = await wait_for(lambda: _async(_envelopes(hooks, "qr")), what="a qr envelope")
    scan = await node.http.post(
        "/sandbox/scan", json={"qr": qrs[-1]["data"]["qr"], "phone": "5511912340000"}
    )
    assert scan.status_code == 200, scan.text
    await node.wait_status("salao", "connected")

    await node.customer_says(CUSTOMER, "salao", "boa tarde")
    sent = await node.http.post("/send/salao", json={"phone": CUSTOMER, "message": "confirmado"})
    assert sent.status_code == 200, sent.text
    await wait_for(lambda: _async(_envelopes(hooks, "message.sent")), what="message.sent")
    assert (await node.http.post(f"/sandbox/phones/{CUSTOMER}/read")).status_code == 200

    async def read_receipt() -> bool:
        return any(e["data"]["status"] == "read" for e in _envelopes(hooks, "receipt"))

    await wait_for(read_receipt, what="a read receipt")
    await wait_for(lambda: _async(_connected(hooks)), what="a connected status envelope")

    # Every request to the tenant's URL is signed with the tenant's secret, not the global one.
    assert all(hit.path == "/hooks/salao" for hit in hooks.received)
    assert all(signature_ok(hit, TENANT_SECRET) for hit in hooks.received)
    assert not any(signature_ok(hit, SECRET) for hit in hooks.received)
    for event in ("qr", "status", "receipt", "message.sent"):
        for envelope in _envelopes(hooks, event):
            assert set(envelope) == {"event", "tenant_id", "timestamp", "data"}
            assert envelope["event"] == event and envelope["tenant_id"] == "salao"
    (message,) = _envelopes(hooks, "message")  # the seed's flat payload, as to Flask
    assert message["message"] == "boa tarde" and message["phone"] == CUSTOMER
    assert message["empresa_id"] == "salao" and "event" not in message
    (out,) = _envelopes(hooks, "message.sent")
    assert out["data"]["text"] == "confirmado" and out["data"]["direction"] == "out"
    assert not flask.received  # the override took everything

    # Removed: back to the Flask URL, the seed's payload, the global secret.
    assert (await node.http.delete("/tenants/salao/webhook")).status_code == 200
    assert (await node.http.get("/tenants/salao/webhook")).json()["webhook"]["default"] is True
    await node.customer_says(CUSTOMER, "salao", "obrigado")
    await wait_for(lambda: _async(flask.received), what="the message at the Flask URL")
    assert flask.received[0].path == "/webhook/whatsapp"
    assert flask.received[0].json["message"] == "obrigado" and signature_ok(
        flask.received[0], SECRET
    )


def _connected(hooks: Receiver) -> bool:
    return any(e["data"]["status"] == "connected" for e in _envelopes(hooks, "status"))


async def _async(value: Any) -> Any:
    return value
