"""`zapmux serve` on the real whatsmeow engine, offline: a worker process per tenant."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx

from tests.helpers import free_port, wait_for
from tests.process import ServerProcess

WORKER_MODULE = "zapmux.engines.whatsmeow.worker"


def worker_pids(server_pid: int) -> dict[str, int]:
    """The server's live worker processes by tenant, read from /proc."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == server_pid and WORKER_MODULE.encode() in args and state != "Z":
            found[args[args.index(b"--tenant") + 1].decode()] = int(entry.name)
    return found


def _server(tmp_path: Path, proxy: str) -> ServerProcess:
    """zapmux on the real whatsmeow engine, dialing through ``proxy``."""
    return ServerProcess(
        tmp_path,
        engine="whatsmeow",
        ZAPMUX_WHATSMEOW_PROXY=proxy,
        ZAPMUX_RECONNECT_BASE_S="0.2",
        ZAPMUX_RECONNECT_CAP_S="0.5",
    )


async def test_each_tenant_gets_its_own_worker_and_survives_a_killed_neighbour(
    tmp_path: Path, blackhole_proxy: str
) -> None:
    server = _server(tmp_path, blackhole_proxy)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for tenant in ("a", "b"):
                assert (await http.post("/tenants", json={"tenantId": tenant})).status_code == 201
                await http.get(f"/tenants/{tenant}/qr")
            workers = await wait_for(lambda: _two(server.pid), timeout=30, what="two workers")
            assert workers["a"] != workers["b"]
            assert (tmp_path / "auth" / "a").is_dir() and (tmp_path / "auth" / "b").is_dir()
            maps = Path(f"/proc/{server.pid}/maps").read_text()
            assert "neonize" not in maps  # the Go library lives only in the workers

            os.kill(workers["a"], signal.SIGKILL)

            async def restarted() -> dict[str, int] | None:
                now = worker_pids(server.pid)
                return now if now.get("a") not in (None, workers["a"]) else None

            after = await wait_for(restarted, timeout=30, what="a new worker for a")
            assert after["b"] == workers["b"]  # the neighbour was not touched
            status = (await http.get("/tenants/a/status")).json()
            assert status["reconnect_attempts"] >= 1
            assert (await http.get("/health")).status_code == 200
            errors = [e for e in await _last_errors(http, "a") if e]
            assert any("signal 9" in e or "SIGKILL" in e for e in errors), errors
        pid = server.pid
    finally:
        await server.close()
    await asyncio.sleep(0.5)
    assert worker_pids(pid) == {}  # no orphans


async def _two(server_pid: int) -> dict[str, int] | None:
    pids = worker_pids(server_pid)
    return pids if {"a", "b"} <= pids.keys() else None


async def _last_errors(http: httpx.AsyncClient, tenant: str) -> list[str]:
    """last_error as it moves: the crash is reported, then the new worker dials."""
    seen = []
    for _ in range(40):
        seen.append((await http.get(f"/tenants/{tenant}/status")).json()["last_error"])
        if any(e and ("signal 9" in e or "SIGKILL" in e) for e in seen):
            break
        await asyncio.sleep(0.05)
    return seen


async def test_the_dial_failure_is_each_tenants_last_error(tmp_path: Path) -> None:
    refused = f"http://127.0.0.1:{free_port()}"  # nobody listens: the dial fails at once
    server = _server(tmp_path, refused)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            for tenant in ("x", "y"):
                await http.post("/tenants", json={"tenantId": tenant})

            async def failed(tenant: str) -> dict | None:
                body = (await http.get(f"/tenants/{tenant}/status")).json()
                return body if body["last_error"] and body["reconnect_attempts"] >= 1 else None

            for tenant in ("x", "y"):
                status = await wait_for(
                    lambda t=tenant: failed(t), timeout=30, what=f"{tenant}'s dial error"
                )
                # in words for a person, the raw error kept beside it (issue 11)
                assert status["last_error"] == (
                    "this server cannot reach WhatsApp (internet, DNS or ZAPMUX_WHATSMEOW_PROXY)"
                ), status
                assert "refused" in status["detail"] and "dial" in status["detail"], status
                assert status["status"] in {"reconnecting", "connecting"}  # retried, not given up
    finally:
        await server.close()
