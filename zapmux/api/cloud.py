"""Meta's webhook for every cloud tenant: ``GET`` (the subscription handshake) and
``POST`` (messages and statuses) on ``/cloud/webhook``.

No API key: Meta cannot send one. The handshake is answered only for some cloud
tenant's verify token, and a post is accepted only with the ``X-Hub-Signature-256`` of
the app secret of every tenant it names. What it carries is written to the message log
and the outbox before the 200, so Meta's retries (it posts again until it gets a 200)
are deduplicated there: each message reaches the webhook once.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from zapmux.api.deps import GatewayDep
from zapmux.engines.cloud import CloudEngine
from zapmux.errors import Forbidden
from zapmux.events import storable
from zapmux.gateway import Gateway

# Not StrictRoute: a NUL escaped in what a customer wrote must not turn Meta's post
# into a 400 that Meta retries for days; the text keeps it visibly (events.storable).
router = APIRouter(prefix="/cloud", tags=["cloud"])


async def _engine(gw: Gateway) -> CloudEngine:
    engine = await gw.engines.get("cloud")
    assert isinstance(engine, CloudEngine)
    return engine


@router.get(
    "/webhook",
    summary="Meta's webhook verification (answers hub.challenge for a known verify token)",
    response_class=PlainTextResponse,
)
async def verify(request: Request, gw: GatewayDep) -> PlainTextResponse:
    query = request.query_params
    engine = await _engine(gw)
    if not await engine.verify_subscription(query.get("hub.mode"), query.get("hub.verify_token")):
        raise Forbidden("no cloud tenant has that verify token", code="verify_token_mismatch")
    return PlainTextResponse(query.get("hub.challenge") or "")


@router.post("/webhook", summary="Meta's webhook: messages and statuses of cloud tenants")
async def receive(request: Request, gw: GatewayDep) -> dict[str, Any]:
    engine = await _engine(gw)
    events = await engine.receive(await request.body(), request.headers.get("x-hub-signature-256"))
    for tenant_id, event in events:
        # as a runner hands its engine's events over (NUL kept visibly), from any node
        await gw.supervisor.on_event(tenant_id, storable(event))
    return {"success": True, "events": len(events)}
