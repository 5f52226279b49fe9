"""Test helpers: a live zapmux server in this event loop, the tenant steps every test
takes (pair, QR, status), a webhook receiver, waiting."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import uvicorn
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from zapmux.api.app import create_app
from zapmux.api.protocol import OneWriteProtocol
from zapmux.config import Settings
from zapmux.gateway import Gateway
from zapmux.phone import JID
from zapmux.states import MessageStatus
from zapmux.store.base import Store
from zapmux.store.records import MessageRecord

T = TypeVar("T")
#: The discard port: nothing listens there (a webhook receiver that is never reached).
DISCARD_URL = "http://127.0.0.1:9"
#: The phone a tenant is paired with when the test does not care which.
PAIRED_PHONE = "5511988880000"


async def fresh_pg_database(url: str) -> tuple[str, str]:
    """A new empty database on the server of ``url``: (its URL, its name)."""
    name = f"zapmux_test_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return url.rsplit("/", 1)[0] + "/" + name, name


async def drop_pg_database(url: str, name: str) -> None:
    admin = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(app: web.Application, port: int) -> web.AppRunner:
    """``app`` answering on 127.0.0.1:``port``; ``cleanup()`` the runner to stop it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def make_settings(tmp_path: Any, **overrides: Any) -> Settings:
    """Settings for a test: nothing from the developer's environment or .env."""
    values: dict[str, Any] = {
        "engine": "sandbox",
        "host": "127.0.0.1",
        "port": free_port(),
        "data_dir": tmp_path / "data",
        "auth_dir": tmp_path / "auth",
        "flask_url": DISCARD_URL,
        "sandbox_qr_seconds": 20.0,
        "send_rate_per_minute": 0,
        "delivery_backoff_base_s": 0.05,
        "delivery_backoff_cap_s": 0.2,
        "reconnect_base_s": 0.05,
        "reconnect_cap_s": 0.2,
        # the tests serve media from their own 127.0.0.1 servers; the refusal of private
        # addresses has its own test (tests/security/test_media_fetch.py)
        "media_allow_private": True,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def message_record(
    tenant_id: str,
    message_id: str,
    status: str = MessageStatus.QUEUED,
    phone: str = "5511999999999",
    **fields: Any,
) -> MessageRecord:
    """A message row as the store keeps it: an outgoing text to ``phone`` whose WhatsApp id
    and text are its own id, unless ``fields`` say otherwise."""
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "message_id": message_id,
        "wa_id": message_id,
        "direction": "out",
        "chat": str(JID(phone)),
        "phone": phone,
        "message_type": "texto",
        "status": status,
        "timestamp": time.time(),
        "text": message_id,
    }
    return MessageRecord(**{**values, **fields})


async def wait_for(
    check: Callable[[], Awaitable[Any]],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


class TenantSteps:
    """The steps tests take with a tenant over the HTTP API, written once for every server
    a test runs: ``LiveServer`` here, ``tests.process.ServerProcess`` in its own process,
    or any client (``TenantSteps(http)``). Pairing goes through the sandbox engine."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def qr(self, tenant_id: str) -> str | None:
        """The tenant's current QR code, or None while it shows none."""
        response = await self.http.get(f"/tenants/{tenant_id}/qr")
        return response.json().get("qr") if response.status_code == 200 else None

    async def current_qr(self, tenant_id: str, timeout: float = 15.0) -> str:
        """The tenant's QR code, waiting while it is being prepared."""
        qr = await wait_for(lambda: self.qr(tenant_id), timeout, what=f"a QR code of {tenant_id}")
        return str(qr)

    async def scan(self, tenant_id: str, phone: str) -> None:
        """A sandbox phone scans the tenant's QR code (read again if it rotated meanwhile)."""
        for _ in range(5):
            body = {"qr": await self.current_qr(tenant_id), "phone": phone}
            scan = await self.http.post("/sandbox/scan", json=body)
            if scan.status_code != 410:  # 410: the code rotated between reading and scanning
                break
        assert scan.status_code == 200, scan.text

    async def pair(self, tenant_id: str, phone: str = PAIRED_PHONE) -> dict[str, Any]:
        """Pair an existing tenant with ``phone``; its status once connected."""
        await self.scan(tenant_id, phone)
        return await self.wait_status(tenant_id, "connected")

    async def create_paired(self, tenant_id: str, phone: str = PAIRED_PHONE) -> dict[str, Any]:
        """Create a tenant and pair it; the creation's answer."""
        created = await self.http.post("/tenants", json={"tenantId": tenant_id})
        assert created.status_code == 201, created.text
        await self.pair(tenant_id, phone)
        return dict(created.json())

    async def status(self, tenant_id: str) -> dict[str, Any]:
        """The tenant's status body (an error body, without "status", if there is none)."""
        response = await self.http.get(f"/tenants/{tenant_id}/status")
        return dict(response.json())

    async def wait_status(
        self, tenant_id: str, *states: str, timeout: float = 15.0
    ) -> dict[str, Any]:
        """The tenant's status body once it is in one of ``states``."""

        async def check() -> dict[str, Any] | None:
            body = await self.status(tenant_id)
            return body if body.get("status") in states else None

        what = f"{tenant_id} to be {' or '.join(states)}"
        return dict(await wait_for(check, timeout, what=what))

    async def customer_says(self, phone: str, tenant_id: str, text: str, **more: Any) -> str:
        """A sandbox phone writes to the tenant (``more``: media, message_id…); its id."""
        body = {"from": phone, "tenant_id": tenant_id, "text": text, **more}
        response = await self.http.post("/sandbox/messages", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["message_id"])

    async def deliveries(self, **params: Any) -> list[dict[str, Any]]:
        """The webhook deliveries that match ``params``."""
        response = await self.http.get("/deliveries", params=params)
        assert response.status_code == 200, response.text
        return list(response.json()["deliveries"])


class BlockingSteps:
    """``TenantSteps`` for synchronous tests (the CLI's, the browser's): each step runs to
    its end on an event loop of its own in a worker thread, beside any loop this thread
    holds (Playwright's sync API keeps one)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}

    def run(self, step: Callable[[TenantSteps], Awaitable[T]]) -> T:
        async def main() -> T:
            async with httpx.AsyncClient(
                base_url=self.url, headers=self.headers, timeout=15
            ) as http:
                return await step(TenantSteps(http))

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, main()).result()

    def current_qr(self, tenant_id: str, timeout: float = 15.0) -> str:
        return self.run(lambda steps: steps.current_qr(tenant_id, timeout))

    def scan(self, tenant_id: str, phone: str) -> None:
        self.run(lambda steps: steps.scan(tenant_id, phone))

    def pair(self, tenant_id: str, phone: str = PAIRED_PHONE) -> dict[str, Any]:
        return self.run(lambda steps: steps.pair(tenant_id, phone))

    def create_paired(self, tenant_id: str, phone: str = PAIRED_PHONE) -> dict[str, Any]:
        return self.run(lambda steps: steps.create_paired(tenant_id, phone))

    def status(self, tenant_id: str) -> dict[str, Any]:
        return self.run(lambda steps: steps.status(tenant_id))

    def wait_status(self, tenant_id: str, *states: str, timeout: float = 15.0) -> dict[str, Any]:
        return self.run(lambda steps: steps.wait_status(tenant_id, *states, timeout=timeout))


class LiveServer(TenantSteps):
    """zapmux served by uvicorn on a real port, in the test's event loop."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.gateway = Gateway(settings, store=store)
        self.app = create_app(settings, self.gateway)
        self.url = f"http://127.0.0.1:{settings.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=settings.port,
                log_config=None,
                lifespan="on",
                http=OneWriteProtocol,  # as zapmux serve
            )
        )
        self.task: asyncio.Task[None] | None = None
        super().__init__(httpx.AsyncClient(base_url=self.url, timeout=15))

    async def __aenter__(self) -> LiveServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        self.server.should_exit = True
        if self.task:
            await self.task


class Names(AbstractResolver):
    """A DNS of the test's own: each name resolves to the address set for it at that
    moment (``names[name] = ...`` points it elsewhere, as DNS rebinding does)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self.names.get(host)
        if address is None:
            raise OSError(f"{host}: Name or service not known")
        kind = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [
            ResolveResult(
                hostname=host, host=address, port=port, family=kind, proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]  # fmt: skip

    async def close(self) -> None:
        pass


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int = 0  # the status the receiver answered with

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook receiver on a real port that records what it is sent.

    ``statuses`` answers the next requests (then 200); ``status`` answers all;
    ``delay`` holds each answer back that long (``busy`` counts requests being held).
    """

    port: int = field(default_factory=free_port)
    status: int = 200
    statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    runner: web.AppRunner | None = None
    delay: float = 0.0
    busy: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.statuses.pop(0) if self.statuses else self.status
        self.received.append(Received(request.path, dict(request.headers), body, status))
        if self.delay:
            self.busy += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.busy -= 1
        return web.json_response({"ok": status < 300}, status=status)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = await serve(app, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def got(self, count: int = 1) -> bool:
        """Whether ``count`` requests have arrived (a check for ``wait_for``)."""
        return len(self.received) >= count

    def ok(self) -> list[Received]:
        return [r for r in self.received]
