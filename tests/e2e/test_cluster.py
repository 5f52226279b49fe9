"""Two nodes on one PostgreSQL: any node answers, and a dead node's tenants move over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import (
    LiveServer,
    Receiver,
    drop_pg_database,
    free_port,
    fresh_pg_database,
    make_settings,
    wait_for,
)

PG_URL = os.environ.get("ZAPMUX_TEST_DATABASE_URL")
pytestmark = pytest.mark.skipif(
    not PG_URL, reason="needs ZAPMUX_TEST_DATABASE_URL (.ci/run sets it)"
)
LEASE_S = 1.5


@pytest.fixture
async def database() -> AsyncIterator[str]:
    assert PG_URL
    url, name = await fresh_pg_database(PG_URL)
    yield url
    await drop_pg_database(PG_URL, name)


async def _node_a(
    tmp_path: Path, database: str, receiver: Receiver
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "ZAPMUX_DATABASE_URL": database,
        "ZAPMUX_NODE_ID": "node-a",
        "ZAPMUX_LEASE_SECONDS": str(LEASE_S),
        "ZAPMUX_DATA_DIR": str(tmp_path / "a"),
        "ZAPMUX_AUTH_DIR": str(tmp_path / "a-auth"),
        "ZAPMUX_FLASK_URL": receiver.url,
        "ZAPMUX_SEND_RATE_PER_MINUTE": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "zapmux", "serve", "--engine", "sandbox", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{url}/health")).status_code == 200
        except httpx.TransportError:
            assert proc.poll() is None, "node a exited"
            return False

    await wait_for(up, timeout=30, what="node a")
    return proc, url


async def test_any_node_answers_and_a_dead_nodes_tenant_moves(
    tmp_path: Path, database: str, receiver: Receiver
) -> None:
    proc, a_url = await _node_a(tmp_path, database, receiver)
    settings = make_settings(
        tmp_path / "b",
        database_url=database,
        node_id="node-b",
        lease_seconds=LEASE_S,
        flask_url=receiver.url,
    )
    try:
        async with LiveServer(settings) as b, httpx.AsyncClient(base_url=a_url, timeout=10) as a:
            assert (await a.post("/tenants", json={"tenantId": "t1"})).status_code == 201
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

            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            await wait_for(
                lambda: _runs_here(b), timeout=LEASE_S * 4, what="node b to take t1 over"
            )
            await b.wait_status("t1", "connected")
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
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _qr(b: LiveServer) -> str | None:
    response = await b.http.get("/tenants/t1/qr")
    return response.json().get("qr") if response.status_code == 200 else None


async def _runs_here(b: LiveServer) -> bool:
    return "t1" in b.gateway.supervisor.runners


async def _got(receiver: Receiver) -> bool:
    return any(r.json.get("message") == "oi" for r in receiver.received)
