"""Two nodes on one PostgreSQL: any node answers, and a dead node's tenants move over."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.conftest import needs_postgres
from tests.helpers import (
    LiveServer,
    Receiver,
    make_settings,
    wait_for,
)
from tests.process import ZapmuxProcess

pytestmark = needs_postgres
LEASE_S = 1.5


async def test_any_node_answers_and_a_dead_nodes_tenant_moves(
    tmp_path: Path, database: str, receiver: Receiver
) -> None:
    node_a = ZapmuxProcess(
        tmp_path / "a",
        receiver.url,
        ZAPMUX_DATABASE_URL=database,
        ZAPMUX_NODE_ID="node-a",
        ZAPMUX_LEASE_SECONDS=str(LEASE_S),
    )
    (tmp_path / "a").mkdir()
    await node_a.start()
    settings = make_settings(
        tmp_path / "b",
        database_url=database,
        node_id="node-b",
        lease_seconds=LEASE_S,
        flask_url=receiver.url,
    )
    try:
        async with LiveServer(settings) as b:
            assert (await node_a.http.post("/tenants", json={"tenantId": "t1"})).status_code == 201
            # through node b: forwarded to node a, which runs t1
            qr = await wait_for(lambda: _qr(b), what="the QR through node b")
            assert (
                await b.http.post("/sandbox/scan", json={"qr": qr, "phone": "5511988887777"})
            ).status_code == 200
            await b.wait_status("t1", "connected")
            assert "t1" not in b.gateway.supervisor.runners
            sent = await b.http.post(
                "/send/t1", json={"phone": "5511999999999", "message": "via b"}
            )
            assert sent.status_code == 200 and sent.json()["status"] == "sent"

            # /clear-all asked of node b restarts node a's tenants too
            before = (await b.http.get("/tenants/t1/status")).json()["since"]
            cleared = await b.http.post("/clear-all")
            assert cleared.status_code == 200 and cleared.json()["tenants"] == 1
            await wait_for(lambda: _restarted(b, before), what="t1 restarted by node a")

            killed_at = time.time()
            await node_a.kill()
            await wait_for(
                lambda: _runs_here(b), timeout=LEASE_S * 4, what="node b to take t1 over"
            )
            # Connected by node b itself: the status node a stored before it died says
            # "connected" too, and a send in between would only be queued (202).
            await wait_for(
                lambda: _connected_since(b, killed_at), timeout=LEASE_S * 4, what="b to connect t1"
            )
            again = await b.http.post(
                "/send/t1", json={"phone": "5511999999999", "message": "after failover"}
            )
            assert again.status_code == 200
            inbox = (await b.http.get("/sandbox/phones/5511999999999/messages")).json()["messages"]
            assert [m["text"] for m in inbox] == ["via b", "after failover"]
            await b.http.post(
                "/sandbox/messages", json={"from": "5511999999999", "tenant_id": "t1", "text": "oi"}
            )
            await wait_for(lambda: _got(receiver), what="the webhook from node b")
    finally:
        await node_a.close()


async def _connected_since(b: LiveServer, when: float) -> bool:
    status = (await b.http.get("/tenants/t1/status")).json()
    return bool(status["status"] == "connected" and (status["since"] or 0) >= when)


async def _qr(b: LiveServer) -> str | None:
    response = await b.http.get("/tenants/t1/qr")
    return response.json().get("qr") if response.status_code == 200 else None


async def _restarted(b: LiveServer, before: float) -> bool:
    status = (await b.http.get("/tenants/t1/status")).json()
    return bool(status["status"] == "connected" and status["since"] > before)


async def _runs_here(b: LiveServer) -> bool:
    return "t1" in b.gateway.supervisor.runners


async def _got(receiver: Receiver) -> bool:
    return any(r.json.get("message") == "oi" for r in receiver.received)
