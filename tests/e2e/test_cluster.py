"""Two nodes on one PostgreSQL: any node answers, and a dead node's tenants move over."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.conftest import LEASE_S, live_node, needs_postgres, process_node
from tests.helpers import LiveServer, Receiver, wait_for

pytestmark = needs_postgres


async def test_any_node_answers_and_a_dead_nodes_tenant_moves(
    tmp_path: Path, database: str, receiver: Receiver
) -> None:
    async with (
        process_node(tmp_path / "a", database, "node-a", ZAPMUX_FLASK_URL=receiver.url) as node_a,
        live_node(tmp_path / "b", database, "node-b", flask_url=receiver.url) as b,
    ):
        assert (await node_a.http.post("/tenants", json={"tenantId": "t1"})).status_code == 201
        await b.pair("t1", "5511988887777")  # through node b: forwarded to node a, runs t1
        assert "t1" not in b.gateway.supervisor.runners
        sent = await b.http.post("/send/t1", json={"phone": "5511999999999", "message": "via b"})
        assert sent.status_code == 200 and sent.json()["status"] == "sent"

        # /clear-all asked of node b restarts node a's tenants too
        before = (await b.status("t1"))["since"]
        cleared = await b.http.post("/clear-all")
        assert cleared.status_code == 200 and cleared.json()["tenants"] == 1
        await wait_for(lambda: _restarted(b, before), what="t1 restarted by node a")

        killed_at = time.time()
        await node_a.kill()
        await wait_for(lambda: _runs_here(b), timeout=LEASE_S * 4, what="node b to take t1 over")
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
        await b.customer_says("5511999999999", "t1", "oi")
        await wait_for(lambda: _got(receiver), what="the webhook from node b")


async def _connected_since(b: LiveServer, when: float) -> bool:
    status = await b.status("t1")
    return bool(status["status"] == "connected" and (status["since"] or 0) >= when)


async def _restarted(b: LiveServer, before: float) -> bool:
    status = await b.status("t1")
    return bool(status["status"] == "connected" and status["since"] > before)


async def _runs_here(b: LiveServer) -> bool:
    return "t1" in b.gateway.supervisor.runners


async def _got(receiver: Receiver) -> bool:
    return any(r.json.get("message") == "oi" for r in receiver.received)
