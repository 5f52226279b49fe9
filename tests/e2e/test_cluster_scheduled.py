"""A scheduled send on PostgreSQL outlives the node that accepted it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.conftest import live_node, needs_postgres, process_node
from tests.helpers import Receiver, wait_for

pytestmark = needs_postgres
PHONE = "5511966660001"


async def test_a_dead_nodes_scheduled_send_goes_out_once_from_another(
    tmp_path: Path, database: str, receiver: Receiver
) -> None:
    async with (
        process_node(tmp_path / "a", database, "node-a", ZAPMUX_FLASK_URL=receiver.url) as node_a,
        live_node(tmp_path / "b", database, "node-b") as b,
    ):
        assert (await node_a.http.post("/tenants", json={"tenantId": "t1"})).status_code == 201
        await b.pair("t1", "5511988887777")  # through node b
        body = {"phone": PHONE, "message": "lembrete", "send_at": time.time() + 3}
        scheduled = await b.http.post("/send/t1", json=body)  # accepted by node a
        assert scheduled.status_code == 202, scheduled.text
        assert "t1" not in b.gateway.supervisor.runners
        await node_a.kill()

        async def arrived() -> list[object] | None:
            inbox = await b.http.get(f"/sandbox/phones/{PHONE}/messages")
            return inbox.json()["messages"] or None

        messages = await wait_for(arrived, timeout=20, what="the reminder from node b")
        assert [m["message_id"] for m in messages] == [scheduled.json()["message_id"]]
        assert messages[0]["received_at"] >= body["send_at"]
        assert "t1" in b.gateway.supervisor.runners
