"""Shared steps for the sending tests: a paired tenant, its sends, a phone's inbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import LiveServer, make_settings, wait_for

TENANT_PHONE = "5511988880000"


@asynccontextmanager
async def paced_server(
    tmp_path: Path, flask_url: str, rate_per_minute: float, burst: int
) -> AsyncIterator[LiveServer]:
    """A server that sends ``rate_per_minute`` after a burst of ``burst``; "acme" paired."""
    settings = make_settings(
        tmp_path, flask_url=flask_url, send_rate_per_minute=rate_per_minute, send_burst=burst
    )
    async with LiveServer(settings) as server:
        await server.create_paired("acme")
        yield server


async def send(
    server: LiveServer, tenant_id: str, phone: str, text: str, key: str | None = None, **more: Any
) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    body = {"phone": phone, "message": text, **more}
    return await server.http.post(f"/tenants/{tenant_id}/send", json=body, headers=headers)


async def inbox(server: LiveServer, phone: str) -> list[dict[str, Any]]:
    response = await server.http.get(f"/sandbox/phones/{phone}/messages")
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


async def wait_inbox(
    server: LiveServer, phone: str, count: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """The phone's inbox once it holds ``count`` messages."""

    async def check() -> list[dict[str, Any]] | None:
        messages = await inbox(server, phone)
        return messages if len(messages) >= count else None

    return list(await wait_for(check, timeout, what=f"{count} messages on {phone}"))


async def message(server: LiveServer, tenant_id: str, message_id: str) -> dict[str, Any]:
    response = await server.http.get(f"/tenants/{tenant_id}/messages/{message_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_message_status(
    server: LiveServer, tenant_id: str, message_id: str, status: str, timeout: float = 10.0
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = await message(server, tenant_id, message_id)
        return body if body["status"] == status else None

    return dict(await wait_for(check, timeout, what=f"{message_id} to be {status}"))


async def fault(server: LiveServer, tenant_id: str, kind: str) -> None:
    response = await server.http.post(f"/sandbox/tenants/{tenant_id}/fault", json={"kind": kind})
    assert response.status_code == 200, response.text
