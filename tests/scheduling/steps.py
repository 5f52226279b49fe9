"""Shared steps for the scheduling tests: webhook payloads, phones answering."""

from __future__ import annotations

from typing import Any

from tests.helpers import LiveServer, Receiver, wait_for


async def webhook_messages(receiver: Receiver, count: int, timeout: float = 10.0) -> list[Any]:
    """The first ``count`` message payloads that reached the Flask webhook."""

    def payloads() -> list[Any]:
        return [r.json for r in receiver.received if r.path == "/webhook/whatsapp"]

    async def check() -> list[Any] | None:
        return payloads() if len(payloads()) >= count else None

    return list(await wait_for(check, timeout, what=f"{count} webhook messages"))[:count]


async def phone_votes(
    server: LiveServer, tenant_id: str, phone: str, message_id: str, options: list[str]
) -> Any:
    body = {"from": phone, "tenant_id": tenant_id, "message_id": message_id, "options": options}
    return await server.http.post("/sandbox/votes", json=body)
