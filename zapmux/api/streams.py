"""Live events as Server-Sent Events: every tenant (admin) or one tenant."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from zapmux.api.deps import AdminDep, GatewayDep, TenantDep
from zapmux.api.strict import StrictRoute
from zapmux.hub import Hub

router = APIRouter(tags=["events"], route_class=StrictRoute)
KEEPALIVE_S = 15.0
_SSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "a stream of events"}
}


async def _stream(
    hub: Hub, request: Request, tenant_id: str | None, first: list[dict[str, Any]]
) -> AsyncIterator[str]:
    queue = hub.subscribe()
    try:
        yield "retry: 2000\n\n"
        for snapshot in first:
            yield _frame(snapshot)
        while not hub.closed.is_set() and not await request.is_disconnected():
            envelope = await next_event(queue, hub)
            if envelope is None:
                yield ": keep-alive\n\n"
            elif tenant_id is None or envelope["tenant_id"] == tenant_id:
                yield _frame(envelope)
    finally:
        hub.unsubscribe(queue)


async def next_event(queue: asyncio.Queue[dict[str, Any]], hub: Hub) -> dict[str, Any] | None:
    """The next event; None after a quiet keep-alive period or when the hub closes."""
    getting = asyncio.ensure_future(queue.get())
    closing = asyncio.ensure_future(hub.closed.wait())
    try:
        await asyncio.wait(
            {getting, closing}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
        )
    finally:  # also when the stream itself is cancelled (the client went away)
        closing.cancel()
        getting.cancel()
    return getting.result() if getting.done() and not getting.cancelled() else None


def _frame(envelope: dict[str, Any]) -> str:
    return f"event: {envelope['event']}\ndata: {json.dumps(envelope, default=str)}\n\n"


def _response(stream: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/events", summary="Every tenant's live events (SSE)", responses=_SSE)
async def all_events(request: Request, gw: GatewayDep, _: AdminDep) -> StreamingResponse:
    first = [
        {"event": "status", "tenant_id": r.tenant_id, "timestamp": None, "data": r.snapshot()}
        for r in gw.supervisor.runners.values()
    ]
    return _response(_stream(gw.hub, request, None, first))


@router.get("/tenants/{tenant_id}/events", summary="One tenant's live events (SSE)", responses=_SSE)
async def tenant_events(request: Request, tenant: TenantDep, gw: GatewayDep) -> StreamingResponse:
    runner = gw.supervisor.runner(tenant.id)
    first = [
        {"event": "status", "tenant_id": tenant.id, "timestamp": None, "data": runner.snapshot()}
    ]
    return _response(_stream(gw.hub, request, tenant.id, first))
