"""The README's walkthrough, as a new user runs it: a real `zapmux serve` process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import Receiver, wait_for
from tests.process import ServerProcess, serve_once


@pytest.fixture
async def readme_server(tmp_path: Path, receiver: Receiver) -> AsyncIterator[ServerProcess]:
    """zapmux started as the README says, with the seed's AUTH_DIR and FLASK_URL."""
    server = ServerProcess(
        tmp_path,
        defaults={},  # nothing a new user would not have set
        ZAPMUX_AUTH_DIR=None,
        AUTH_DIR=str(tmp_path / "auth"),
        FLASK_URL=receiver.url,
        ZAPMUX_LOG_FORMAT="json",
    )
    async with server:
        yield server
    # a clean shutdown on SIGTERM (uvicorn re-raises the signal once it is done)
    assert server.proc is not None and server.proc.returncode in (0, -15)
    assert "Application shutdown complete" in server.output(), server.output()


async def test_readme_walkthrough(
    readme_server: ServerProcess, receiver: Receiver, tmp_path: Path
) -> None:
    http = readme_server.http
    created = await http.post("/tenants", json={"tenantId": "1"})
    assert created.status_code == 201
    qr = (await http.get("/tenants/1/qr")).json()
    assert qr["status"] == "awaiting_qr"
    scan = await http.post("/sandbox/scan", json={"qr": qr["qr"], "phone": "5511988887777"})
    assert scan.status_code == 200
    await readme_server.wait_status("1", "connected")

    sent = await http.post("/send/1", json={"phone": "5511999999999", "message": "Olá! Lembrete"})
    assert sent.status_code == 200 and sent.json()["status"] == "sent"
    inbox = (await http.get("/sandbox/phones/5511999999999/messages")).json()["messages"]
    assert inbox[0]["text"] == "Olá! Lembrete"

    await http.post(
        "/sandbox/messages",
        json={"from": "5511999999999", "tenant_id": "1", "text": "Confirmado"},
    )

    await wait_for(receiver.got, what="the webhook")
    assert receiver.received[0].json["message"] == "Confirmado"
    assert receiver.received[0].json["empresa_id"] == 1
    # the seed's AUTH_DIR and the data dir are where the user said
    assert (tmp_path / "data" / "zapmux.db").exists()
    assert (tmp_path / "auth").is_dir()


async def test_non_loopback_without_key_is_refused(tmp_path: Path) -> None:
    refused = await asyncio.to_thread(serve_once, tmp_path, "--host", "0.0.0.0")
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "ZAPMUX_API_KEY" in lines[0] and "0.0.0.0" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before touching anything


async def test_sigterm_with_an_open_event_stream_stops_promptly(tmp_path: Path) -> None:
    async with ServerProcess(tmp_path) as server:
        async with server.http.stream("GET", "/events") as stream:
            assert stream.status_code == 200
            await stream.aiter_lines().__anext__()  # the stream is open
            started = asyncio.get_running_loop().time()
            assert server.proc is not None
            server.proc.terminate()
            # not uvicorn's 10 s graceful timeout
            await asyncio.to_thread(server.proc.wait, 8)
            assert asyncio.get_running_loop().time() - started < 8
