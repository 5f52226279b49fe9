"""The README's walkthrough, as a new user runs it: a real `zapmux serve` process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Receiver, free_port, wait_for
from tests.process import ZapmuxProcess


@pytest.fixture
async def zapmux_process(tmp_path: Path, receiver: Receiver) -> AsyncIterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "ZAPMUX_DATA_DIR": str(tmp_path / "data"),
        "AUTH_DIR": str(tmp_path / "auth"),
        "FLASK_URL": receiver.url,
        "ZAPMUX_LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "zapmux", "serve", "--engine", "sandbox", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url) as http:

            async def up() -> bool:
                try:
                    return (await http.get("/health")).status_code == 200
                except httpx.TransportError:
                    return proc.poll() is not None  # stop waiting if it died

            await wait_for(up, timeout=20, what="the server")
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        yield url
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0].decode()
        # a clean shutdown on SIGTERM (uvicorn re-raises the signal once it is done)
        assert proc.returncode in (0, -15) and "Application shutdown complete" in output, output


async def test_readme_walkthrough(zapmux_process: str, receiver: Receiver, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=zapmux_process, timeout=10) as http:
        created = await http.post("/tenants", json={"tenantId": "1"})
        assert created.status_code == 201
        qr = (await http.get("/tenants/1/qr")).json()
        assert qr["status"] == "awaiting_qr"
        scan = await http.post("/sandbox/scan", json={"qr": qr["qr"], "phone": "5511988887777"})
        assert scan.status_code == 200

        async def connected() -> bool:
            return (await http.get("/tenants/1/status")).json()["status"] == "connected"

        await wait_for(connected, what="connected")

        sent = await http.post(
            "/send/1", json={"phone": "5511999999999", "message": "Olá! Lembrete"}
        )
        assert sent.status_code == 200 and sent.json()["status"] == "sent"
        inbox = (await http.get("/sandbox/phones/5511999999999/messages")).json()["messages"]
        assert inbox[0]["text"] == "Olá! Lembrete"

        await http.post(
            "/sandbox/messages",
            json={"from": "5511999999999", "tenant_id": "1", "text": "Confirmado"},
        )

        async def delivered() -> bool:
            return bool(receiver.received)

        await wait_for(delivered, what="the webhook")
        assert receiver.received[0].json["message"] == "Confirmado"
        assert receiver.received[0].json["empresa_id"] == 1
    # the seed's AUTH_DIR and the data dir are where the user said
    assert (tmp_path / "data" / "zapmux.db").exists()
    assert (tmp_path / "auth").is_dir()


async def test_non_loopback_without_key_is_refused(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZAPMUX_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zapmux",
        "serve",
        "--host",
        "0.0.0.0",
        "--engine",
        "sandbox",
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "ZAPMUX_API_KEY" in lines[0] and "0.0.0.0" in lines[0]
    assert not (tmp_path / "data").exists()  # refused before touching anything


async def test_sigterm_with_an_open_event_stream_stops_promptly(tmp_path: Path) -> None:
    server = ZapmuxProcess(tmp_path, "http://127.0.0.1:9")
    await server.start()
    try:
        async with server.http.stream("GET", "/events") as stream:
            assert stream.status_code == 200
            await stream.aiter_lines().__anext__()  # the stream is open
            started = asyncio.get_running_loop().time()
            assert server.proc is not None
            server.proc.terminate()
            await asyncio.wait_for(server.proc.wait(), 8)  # not uvicorn's 10 s graceful timeout
            assert asyncio.get_running_loop().time() - started < 8
    finally:
        await server.close()
