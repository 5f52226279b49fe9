"""Any node answers any request: tenant routes are forwarded to the node that runs the
tenant (its lease holder), streamed both ways, so SSE works through it too."""

from __future__ import annotations

import re

import aiohttp
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zapmux.api.errors import error_response
from zapmux.gateway import Gateway
from zapmux.ids import TENANT_ID

TENANT_ROUTE = re.compile(r"^/(?:tenants|send|restart|sandbox/tenants)/([^/]+)(?:/|$)")
FORWARDED = b"x-zapmux-forwarded-by"
_HOP_BY_HOP = {
    b"host",
    b"connection",
    b"keep-alive",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-authenticate",
    b"content-length",
}


class Forwarder:
    """ASGI middleware: a tenant route for a tenant another node runs goes there."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = await owner_elsewhere(self.gateway, scope) if scope["type"] == "http" else None
        if target is None:
            await self.app(scope, receive, send)
            return
        try:
            await self._forward(target, scope, receive, send)
        except aiohttp.ClientError as exc:
            response = error_response(
                503,
                "node_unreachable",
                f"the node running this tenant did not answer: {type(exc).__name__}",
            )
            await response(scope, receive, send)

    async def _forward(self, target: str, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.gateway.http
        assert session is not None, "the gateway is not started"
        body = await _read_body(receive)
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"] if k not in _HOP_BY_HOP]
        headers.append((FORWARDED.decode(), self.gateway.cluster.node))
        url = (
            target
            + scope["path"]
            + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        )
        async with session.request(
            scope["method"], url, data=body, headers=headers, allow_redirects=False
        ) as upstream:
            await send(
                {
                    "type": "http.response.start",
                    "status": upstream.status,
                    "headers": [
                        (k.lower().encode(), v.encode())
                        for k, v in upstream.headers.items()
                        if k.lower().encode() not in _HOP_BY_HOP
                    ],
                }
            )
            async for chunk in upstream.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})


async def owner_elsewhere(gateway: Gateway, scope: Scope) -> str | None:
    """The URL of the node a request must go to, or None to answer it here."""
    match = TENANT_ROUTE.match(scope["path"])
    if not match or not TENANT_ID.fullmatch(match.group(1)):
        return None  # not a tenant route, or an id the route itself will refuse
    if any(name == FORWARDED for name, _ in scope["headers"]):
        return None  # already forwarded once: answer here, never loop
    return await gateway.cluster.owner_url(match.group(1))


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()  # never forward half a body (cut off, or over the cap)
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)
