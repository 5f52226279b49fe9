"""Cloud and sandbox tenants side by side on two nodes sharing PostgreSQL: any node
sends for them and takes Meta's webhook, and a stopped node's cloud tenant moves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import LEASE_S, live_node, needs_postgres
from tests.engines.cloud.conftest import APP_SECRET, CUSTOMER, NUMBER_ID, TOKEN, credentials
from tests.fake_graph import FakeGraph, message_post, signed, status_post
from tests.helpers import LiveServer, Receiver, wait_for
from tests.sending.steps import wait_message_status

pytestmark = needs_postgres


def node(
    tmp_path: Path, name: str, database: str, receiver: Receiver, graph: FakeGraph
) -> LiveServer:
    return live_node(
        tmp_path / name, database, name, flask_url=receiver.url, cloud_api_url=graph.url
    )


async def test_cloud_and_sandbox_tenants_across_two_nodes(
    tmp_path: Path, database: str, receiver: Receiver
) -> None:
    async with FakeGraph() as graph:
        graph.register(NUMBER_ID, TOKEN)
        async with node(tmp_path, "node-b", database, receiver, graph) as b:
            async with node(tmp_path, "node-a", database, receiver, graph) as a:
                await _both_on_a(a, b, graph, receiver)
            # node a stopped: node b takes both tenants over, each with its own engine
            await wait_for(
                lambda: _runs_both(b), timeout=LEASE_S * 6, what="node b to take the tenants"
            )
            await b.wait_status("7", "connected")
            await b.wait_status("local", "connected")
            again = await b.http.post("/send/7", json={"phone": CUSTOMER, "message": "from b"})
            assert again.status_code == 200, again.text
            assert [m["text"]["body"] for m in graph.sent] == ["via b", "from b"]


async def _both_on_a(a: LiveServer, b: LiveServer, graph: FakeGraph, receiver: Receiver) -> None:
    created = await a.http.post(
        "/tenants", json={"tenantId": "7", "engine": "cloud", "cloud": credentials()}
    )
    assert created.json()["status"] == "connected", created.text
    await a.create_paired("local")
    assert "7" in a.gateway.supervisor.runners and "7" not in b.gateway.supervisor.runners
    # node b forwards the send to node a, which runs the tenant
    sent = await b.http.post("/send/7", json={"phone": CUSTOMER, "message": "via b"})
    assert sent.status_code == 200 and sent.json()["status"] == "sent", sent.text
    # Meta's webhook may reach either node: b records a status of what a sent...
    read = status_post(NUMBER_ID, graph.wamids[0], "read", CUSTOMER)
    assert (await _meta_posts(b, read)).status_code == 200
    await wait_message_status(a, "7", sent.json()["message_id"], "read")
    # ...and a customer's message, which reaches Flask
    text = message_post(NUMBER_ID, CUSTOMER, {"type": "text", "text": {"body": "oi"}})
    assert (await _meta_posts(b, text)).status_code == 200
    await wait_for(lambda: _flask_got(receiver, "oi"), what="the message at Flask")


async def _meta_posts(server: LiveServer, body: dict[str, Any]) -> httpx.Response:
    raw, headers = signed(body, APP_SECRET)
    return await server.http.post("/cloud/webhook", content=raw, headers=headers)


async def _runs_both(b: LiveServer) -> bool:
    return {"7", "local"} <= set(b.gateway.supervisor.runners)


async def _flask_got(receiver: Receiver, text: str) -> bool:
    return any(r.json.get("message") == text for r in receiver.received)
