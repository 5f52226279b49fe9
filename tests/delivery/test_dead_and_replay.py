"""What the receiver refuses goes to ``dead`` (listed, never retried by itself) and is
replayed on request with the same delivery id; what may pass is retried."""

from __future__ import annotations

from typing import Any

from tests.delivery.conftest import SECRET, StartNode
from tests.helpers import Receiver, wait_for
from tests.process import ServerProcess, signature_ok


async def _one(node: ServerProcess, **params: Any) -> dict[str, Any] | None:
    rows = await node.deliveries(**params)
    return rows[0] if len(rows) == 1 else None


async def test_400_is_dead_listed_then_replayed(receiver: Receiver, start_node: StartNode) -> None:
    node = await start_node(receiver.url)
    await node.create_paired("loja2", "5511977770000")
    receiver.statuses = [400]
    await node.customer_says("5511966660001", "loja2", "quero agendar")

    dead = await wait_for(
        lambda: _one(node, status="dead", tenant_id="loja2"), what="the dead delivery"
    )
    assert dead["event"] == "message" and dead["attempts"] == 1
    assert dead["last_error"] == "HTTP 400" and dead["next_attempt_at"] is None
    assert dead["url"] == f"{receiver.url}/webhook/whatsapp"
    assert len(receiver.received) == 1  # a 400 is not retried

    replay = await node.http.post(f"/deliveries/{dead['id']}/retry")
    assert replay.status_code == 200 and replay.json()["retried"] == 1
    done = await wait_for(
        lambda: _one(node, status="delivered", tenant_id="loja2"), what="the replay"
    )
    assert done["id"] == dead["id"] and done["attempts"] == 2 and done["last_error"] is None
    assert [hit.answered for hit in receiver.received] == [400, 200]
    assert {hit.headers["X-Zapmux-Delivery"] for hit in receiver.received} == {dead["id"]}
    assert all(signature_ok(hit, SECRET) for hit in receiver.received)
    assert await node.deliveries(status="dead") == []

    unknown = await node.http.post("/deliveries/nope/retry")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "delivery_not_found"


async def test_retry_dead_per_tenant_and_the_limit(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(receiver.url)
    await node.create_paired("loja3", "5511955550000")
    await node.create_paired("loja4", "5511944440000")
    # A redirect is not followed (it would turn the POST into a GET) and is dead too.
    receiver.statuses = [301, 422]
    await node.customer_says("5511933330001", "loja3", "oi")
    await wait_for(lambda: _one(node, status="dead", tenant_id="loja3"), what="loja3 dead")
    await node.customer_says("5511933330002", "loja4", "olá")
    await wait_for(lambda: _one(node, status="dead", tenant_id="loja4"), what="loja4 dead")
    assert len(await node.deliveries(status="dead")) == 2
    assert len(await node.deliveries(status="dead", limit=1)) == 1
    assert (await node.http.get("/deliveries", params={"limit": 0})).status_code == 422
    assert (await node.http.get("/deliveries", params={"status": "lost"})).status_code == 422

    only = await node.http.post("/deliveries/retry-dead", params={"tenant_id": "loja4"})
    assert only.json() == {"success": True, "retried": 1}
    await wait_for(lambda: _one(node, status="delivered", tenant_id="loja4"), what="loja4")
    assert (await _one(node, tenant_id="loja3") or {}).get("status") == "dead"

    rest = await node.http.post("/deliveries/retry-dead")
    assert rest.json() == {"success": True, "retried": 1}
    await wait_for(lambda: _one(node, status="delivered", tenant_id="loja3"), what="loja3")
    assert [hit.answered for hit in receiver.received] == [301, 422, 200, 200]


async def test_5xx_429_and_timeouts_are_retried_until_delivered(
    receiver: Receiver, start_node: StartNode
) -> None:
    node = await start_node(receiver.url, ZAPMUX_DELIVERY_TIMEOUT_S="0.5")
    await node.create_paired("loja5", "5511922220000")
    receiver.statuses = [503, 429, 500, 408]
    await node.customer_says("5511911110009", "loja5", "tem horário?")
    done = await wait_for(
        lambda: _one(node, status="delivered", tenant_id="loja5"), what="the delivery"
    )
    assert done["attempts"] == 5
    assert [hit.answered for hit in receiver.received] == [503, 429, 500, 408, 200]

    receiver.delay = 1.0  # longer than ZAPMUX_DELIVERY_TIMEOUT_S: a timeout, retried
    await node.customer_says("5511911110009", "loja5", "alô?")

    async def retried_after_timeout() -> bool:
        return sum(hit.json["message"] == "alô?" for hit in receiver.received) >= 2

    await wait_for(retried_after_timeout, what="a retry after the timeout")
    rows = await node.deliveries(tenant_id="loja5", status="pending")
    assert rows and rows[0]["last_error"].startswith("timed out after 0.5s")
    receiver.delay = 0

    async def both_delivered() -> bool:
        return len(await node.deliveries(status="delivered", tenant_id="loja5")) == 2

    await wait_for(both_delivered, what="the timed-out delivery to go through")
