"""zapmux as a real process (``python -m zapmux serve``) for tests that need one: to
kill it with SIGKILL and start it again on the same data, or to look at its children."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import Received, free_port, wait_for


class ZapmuxProcess:
    """One server process over a data directory that outlives it (start, kill, start)."""

    def __init__(self, root: Path, flask_url: str, engine: str = "sandbox", **env: str) -> None:
        self.root = root
        self.engine = engine
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            "ZAPMUX_DATA_DIR": str(root / "data"),
            "ZAPMUX_AUTH_DIR": str(root / "auth"),
            "ZAPMUX_FLASK_URL": flask_url,
            "ZAPMUX_PORT": str(self.port),
            "ZAPMUX_HOST": "127.0.0.1",
            "ZAPMUX_LOG_FORMAT": "json",
            "ZAPMUX_SEND_RATE_PER_MINUTE": "0",
            "ZAPMUX_RECONNECT_BASE_S": "0.05",
            "ZAPMUX_RECONNECT_CAP_S": "0.2",
            "ZAPMUX_DELIVERY_BACKOFF_BASE_S": "0.05",
            "ZAPMUX_DELIVERY_BACKOFF_CAP_S": "0.3",
            **env,
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.http = httpx.AsyncClient(base_url=self.url, timeout=15)

    @property
    def log_path(self) -> Path:
        return self.root / f"zapmux-{self.starts}.log"

    async def start(self) -> None:
        assert self.proc is None or self.proc.returncode is not None, "already running"
        self.starts += 1
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZAPMUX_")}
        env.update(self.env)
        with self.log_path.open("wb") as log:  # a file, not a pipe: it never fills up
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "zapmux",
                "serve",
                "--engine",
                self.engine,
                env=env,
                cwd=self.root,
                stdout=log,
                stderr=log,
            )
        await wait_for(self._healthy, timeout=30, interval=0.1, what="zapmux to start")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.returncode is not None:
            raise AssertionError(f"zapmux exited {self.proc.returncode}:\n{self.logs()}")
        try:
            return (await self.http.get("/health")).status_code == 200
        except httpx.TransportError:
            return False

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever was in flight is cut."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                await self.kill()

    async def close(self) -> None:
        await self.stop()
        await self.http.aclose()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.root.glob("zapmux-*.log"))
        )

    # --- conveniences over the API -------------------------------------------------
    async def qr(self, tenant_id: str) -> str | None:
        response = await self.http.get(f"/tenants/{tenant_id}/qr")
        return response.json().get("qr") if response.status_code == 200 else None

    async def status(self, tenant_id: str) -> str | None:
        response = await self.http.get(f"/tenants/{tenant_id}/status")
        return response.json().get("status") if response.status_code == 200 else None

    async def wait_status(self, tenant_id: str, status: str, timeout: float = 15) -> None:
        async def check() -> bool:
            return await self.status(tenant_id) == status

        await wait_for(check, timeout, what=f"{tenant_id} to be {status}")

    async def pair(self, tenant_id: str, phone: str, create: bool = True) -> None:
        if create:
            created = await self.http.post("/tenants", json={"tenantId": tenant_id})
            assert created.status_code == 201, created.text
        qr = await wait_for(lambda: self.qr(tenant_id), what="a QR code")
        scan = await self.http.post("/sandbox/scan", json={"qr": qr, "phone": phone})
        assert scan.status_code == 200, scan.text
        await self.wait_status(tenant_id, "connected")

    async def customer_says(self, phone: str, tenant_id: str, text: str) -> str:
        response = await self.http.post(
            "/sandbox/messages", json={"from": phone, "tenant_id": tenant_id, "text": text}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["message_id"])

    async def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.http.get("/deliveries", params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["deliveries"])


def signature_ok(hit: Received, secret: str, max_skew_s: float = 300) -> bool:
    """What a receiver does: recompute the HMAC of "<timestamp>.<body>", check freshness."""
    timestamp = hit.headers.get("X-Zapmux-Timestamp", "")
    given = hit.headers.get("X-Zapmux-Signature", "")
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + hit.body, hashlib.sha256)
    fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < max_skew_s
    return fresh and hmac.compare_digest(given, "sha256=" + mac.hexdigest())
