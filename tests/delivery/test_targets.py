"""A queued delivery names its target (the Flask URL, or a tenant's webhook) and
resolves URL and secret at each attempt: a changed URL never strands the outbox.
A relay with an explicit destination stays pinned; a stuck row can be discarded."""

from __future__ import annotations

from typing import Any

from tests.delivery.conftest import SECRET, StartNode
from tests.helpers import Receiver, wait_for
from tests.process import ServerProcess, signature_ok

GONE = "http://127.0.0.1:9"  # the discard port: nothing listens
CUSTOMER = "5511987650002"


async def _failed_once(node: ServerProcess) -> list[dict[str, Any]] | None:
    rows = await node.deliveries(status="pending")
    return rows if any(r["attempts"] >= 1 for r in rows) else None


async def test_a_changed_flask_url_applies_to_queued_rows_after_a_restart(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(GONE)
    await node.create_paired("loja7", "5511977771234")
    await node.customer_says(CUSTOMER, "loja7", "primeira")
    await node.customer_says(CUSTOMER, "loja7", "segunda")  # waits behind the first
    await wait_for(lambda: _failed_once(node), what="the first attempt to fail")
    (first, *_) = await node.deliveries(status="pending")
    assert first["target"] == "flask" and first["url"] == f"{GONE}/webhook/whatsapp"

    await node.stop()
    node.env["ZAPMUX_FLASK_URL"] = receiver.url  # the operator fixes FLASK_URL
    await node.start()

    await wait_for(lambda: receiver.got(2), timeout=20, what="both messages at the new URL")
    assert [hit.json["message"] for hit in receiver.received] == ["primeira", "segunda"]
    assert all(hit.path == "/webhook/whatsapp" for hit in receiver.received)
    assert all(signature_ok(hit, SECRET) for hit in receiver.received)


async def test_a_changed_tenant_webhook_applies_to_queued_rows(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(receiver.url)
    await node.create_paired("salao7", "5511977775678")
    put = await node.http.put("/tenants/salao7/webhook", json={"url": f"{GONE}/old"})
    assert put.status_code == 200, put.text
    await node.customer_says(CUSTOMER, "salao7", "oi")
    await wait_for(lambda: _failed_once(node), what="the attempt at the old URL")
    (row,) = await node.deliveries(status="pending")
    assert row["target"] == "tenant:salao7" and row["url"] == f"{GONE}/old"

    async with Receiver() as hooks:
        new_secret = "salao-new-secret-99"
        put = await node.http.put(
            "/tenants/salao7/webhook", json={"url": f"{hooks.url}/new", "secret": new_secret}
        )
        assert put.status_code == 200, put.text

        await wait_for(hooks.got, timeout=20, what="the message at the new webhook")
        (hit,) = hooks.received
        assert hit.path == "/new" and hit.json["message"] == "oi"
        assert hit.headers["X-Zapmux-Delivery"] == row["id"]
        assert signature_ok(hit, new_secret)  # the secret in force now, not the old one
    assert receiver.received == []  # never to Flask: the tenant has a webhook


async def test_a_relay_with_an_explicit_url_stays_pinned_and_is_flagged_stale(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(receiver.url)
    body = {"phone": CUSTOMER, "message": "relayed", "empresa_id": 7}
    pinned = await node.http.post("/webhook", params={"url": f"{GONE}/pinned"}, json=body)
    assert pinned.status_code == 202, pinned.text
    relayed = await node.http.post("/webhook", json={**body, "phone": "5511900000001"})
    assert relayed.status_code == 202

    await wait_for(receiver.got, what="the unpinned relay at Flask")
    await wait_for(lambda: _failed_once(node), what="the pinned relay to fail")
    (row,) = await node.deliveries(status="pending")
    assert row["id"] == pinned.json()["delivery_id"]
    assert row["target"] == "url" and row["url"] == f"{GONE}/pinned" and row["stale"] is True
    assert len(receiver.received) == 1  # the pinned one never goes to Flask

    bad = await node.http.post("/webhook", params={"url": "ftp://x/y"}, json=body)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_url"


async def test_discarding_a_stuck_row_lets_its_chat_go_on(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(receiver.url)
    body = {"phone": CUSTOMER, "message": "one", "empresa_id": 8}
    stuck = await node.http.post("/webhook", params={"url": f"{GONE}/x"}, json=body)
    # the same chat (tenant 8, this phone): it waits behind the stuck row
    behind = await node.http.post("/webhook", json={**body, "message": "two"})
    await wait_for(lambda: _failed_once(node), what="the stuck row to fail")
    assert receiver.received == []
    waiting, head = await node.deliveries(status="pending")
    assert waiting["attempts"] == 0 and head["attempts"] >= 1

    async def discarded() -> Any:
        # 409 delivery_in_flight while an attempt is under way: "try again", as it says
        answer = await node.http.post(f"/deliveries/{stuck.json()['delivery_id']}/discard")
        assert answer.status_code in {200, 409}, answer.text
        return answer.json() if answer.status_code == 200 else None

    assert (await wait_for(discarded, what="the discard"))["discarded"] == 1

    await wait_for(receiver.got, what="the row behind it")
    assert receiver.received[0].headers["X-Zapmux-Delivery"] == behind.json()["delivery_id"]
    assert all(r["id"] != stuck.json()["delivery_id"] for r in await node.deliveries())

    unknown = await node.http.post("/deliveries/nope/discard")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "delivery_not_found"


async def test_discard_dead_removes_only_dead_rows_of_the_tenant_asked(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(receiver.url)
    receiver.status = 400
    for tenant in ("9", "10"):
        body = {"phone": CUSTOMER, "message": "x", "empresa_id": int(tenant)}
        assert (await node.http.post("/webhook", json=body)).status_code == 202

    async def two_dead() -> bool:
        return len(await node.deliveries(status="dead")) == 2

    await wait_for(two_dead, what="two dead rows")
    one = await node.http.post("/deliveries/discard-dead", params={"tenant_id": "9"})
    assert one.json() == {"success": True, "discarded": 1}
    assert [r["tenant_id"] for r in await node.deliveries()] == ["10"]
    rest = await node.http.post("/deliveries/discard-dead")
    assert rest.json() == {"success": True, "discarded": 1}
    assert await node.deliveries() == []
