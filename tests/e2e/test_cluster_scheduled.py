"""A scheduled send on PostgreSQL outlives the node that accepted it."""

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
PHONE = "5511966660001"


async def test_a_dead_nodes_scheduled_send_goes_out_once_from_another(
    tmp_path: Path, database: str, receiver: Receiver
) -> None:
    (tmp_path / "a").mkdir()
    node_a = ZapmuxProcess(
        tmp_path / "a",
        receiver.url,
        ZAPMUX_DATABASE_URL=database,
        ZAPMUX_NODE_ID="node-a",
        ZAPMUX_LEASE_SECONDS=str(LEASE_S),
    )
    await node_a.start()
    settings = make_settings(
        tmp_path / "b", database_url=database, node_id="node-b", lease_seconds=LEASE_S
    )
    try:
        async with LiveServer(settings) as b:
            assert (await node_a.http.post("/tenants", json={"tenantId": "t1"})).status_code == 201
            qr = await wait_for(lambda: _qr(b), what="the QR through node b")
            scan = await b.http.post("/sandbox/scan", json={"qr": qr, "phone": "5511988887777"})
            assert scan.status_code == 200
            await b.wait_status("t1", "connected")
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
    finally:
        await node_a.close()


async def _qr(b: LiveServer) -> str | None:
    response = await b.http.get("/tenants/t1/qr")
    return response.json().get("qr") if response.status_code == 200 else None
