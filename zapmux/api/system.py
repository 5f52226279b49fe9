"""Server-wide routes: status, health, the seed's webhook relay, deliveries, webhooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from zapmux import __version__
from zapmux.api.deps import AdminDep, CallerDep, GatewayDep, TenantDep
from zapmux.api.models import RelayBody, WebhookBody
from zapmux.api.strict import StrictRoute
from zapmux.api.tenants import next_page, tenant_view
from zapmux.errors import Conflict, NotFound
from zapmux.gateway import Gateway
from zapmux.ids import validate_tenant_id
from zapmux.outbox import ATTENTION
from zapmux.phone import normalize_phone
from zapmux.redact import redact_urls
from zapmux.states import ALL as ALL_STATES
from zapmux.states import DeliveryStatus
from zapmux.store.records import Delivery
from zapmux.webhook_url import check_tenant_host, check_webhook_url

router = APIRouter(route_class=StrictRoute)
log = logging.getLogger("zapmux.outbox")


@router.get("/health", tags=["system"], summary="Liveness and store reachability (open)")
async def health(gw: GatewayDep) -> JSONResponse:
    try:
        await gw.store.ping()
    except Exception as exc:
        return JSONResponse(
            {
                "success": False,
                "status": "unavailable",
                "error": {"code": "store_unreachable", "message": type(exc).__name__},
            },
            status_code=503,
        )
    return JSONResponse({"success": True, "status": "ok"})


@router.get("/status", tags=["system"], summary="The server, its tenants and their connections")
async def server_status(
    gw: GatewayDep,
    _: AdminDep,
    limit: int | None = Query(None, ge=1, le=10_000, description="connections per page"),
    after: str | None = Query(None, max_length=64, description="the previous page's `next`"),
) -> JSONResponse:
    records = await gw.tenants.list_tenants(after, limit)
    found = await gw.tenants.count_tenants()
    counts = {"total": sum(found.values()), **dict.fromkeys(ALL_STATES, 0), **found}
    body = {
        "success": True,
        "status": "running",
        "version": __version__,
        "engine": gw.engine.name,
        "uptime_s": round(time.time() - gw.started_at, 3),
        "tenants": counts,
        "connections": [tenant_view(r, gw.settings.engine) for r in records],
        "next": next_page(records, limit),
        "deliveries": await gw.outbox_counts.current(),
        "background_tasks": {"running": len(gw.tasks.tasks), "failures": gw.tasks.failures[-10:]},
    }
    return JSONResponse(body)


@router.post(
    "/webhook",
    status_code=202,
    tags=["webhooks"],
    summary="Relay a payload to the Flask webhook through the durable outbox (seed route)",
)
async def relay(
    body: RelayBody,
    gw: GatewayDep,
    _: AdminDep,
    url: str | None = Query(
        None, max_length=2048, description="an explicit destination instead of the Flask URL"
    ),
) -> dict[str, Any]:
    payload = body.model_dump(exclude_none=False)
    if body.phone is not None:
        payload["phone"] = normalize_phone(body.phone)
    if body.empresa_id is not None:
        validate_tenant_id(body.empresa_id)
    destination = (
        check_webhook_url(url, by_admin=True, allowed_hosts=gw.settings.allowed_webhook_hosts)
        if url is not None
        else None
    )
    delivery = await gw.webhooks.relay(payload, destination)
    return {"success": True, "delivery_id": delivery.delivery_id}


def _webhook_view(
    url: str | None, secret: str | None, events: Sequence[str], set_by: str | None
) -> dict[str, Any]:
    hint = f"…{secret[-4:]}" if secret else None  # never echo a secret in full
    shown = redact_urls(url) if url else url  # credentials in the URL are never echoed
    return {
        "url": shown,
        "secret_set": bool(secret),
        "secret_hint": hint,
        "events": events,
        "set_by": set_by,
    }


@router.put("/tenants/{tenant_id}/webhook", tags=["webhooks"], summary="Set the tenant's webhook")
async def put_webhook(
    tenant: TenantDep, body: WebhookBody, gw: GatewayDep, who: CallerDep
) -> dict[str, Any]:
    import json

    allowed = gw.settings.allowed_webhook_hosts
    url = check_webhook_url(body.url, by_admin=who.is_admin, allowed_hosts=allowed)
    if not who.is_admin:
        await check_tenant_host(url, gw.deliverer.resolver, allowed)
    set_by = "admin" if who.is_admin else "tenant"  # each delivery checks by it
    events = sorted(set(body.events))
    await gw.tenants.update_tenant(
        tenant.id,
        webhook_url=url,
        webhook_secret=body.secret,
        webhook_events=json.dumps(events),
        webhook_by=set_by,
    )
    return {
        "success": True,
        "tenant_id": tenant.id,
        "webhook": _webhook_view(url, body.secret, events, set_by),
    }


@router.get("/tenants/{tenant_id}/webhook", tags=["webhooks"], summary="The tenant's webhook")
async def get_webhook(tenant: TenantDep, gw: GatewayDep) -> dict[str, Any]:
    if not tenant.webhook_url:
        flask = f"{gw.settings.flask_url}/webhook/whatsapp"
        view = _webhook_view(flask, None, ["message"], "admin")
        return {"success": True, "tenant_id": tenant.id, "webhook": {**view, "default": True}}
    view = _webhook_view(
        tenant.webhook_url, tenant.webhook_secret, tenant.events, tenant.webhook_by
    )
    return {"success": True, "tenant_id": tenant.id, "webhook": {**view, "default": False}}


@router.delete(
    "/tenants/{tenant_id}/webhook",
    tags=["webhooks"],
    summary="Remove the override: back to the Flask URL",
)
async def delete_webhook(tenant: TenantDep, gw: GatewayDep) -> dict[str, Any]:
    await gw.tenants.update_tenant(
        tenant.id, webhook_url=None, webhook_secret=None, webhook_events=None, webhook_by=None
    )
    return {"success": True, "tenant_id": tenant.id, "deleted": True}


@router.get("/deliveries", tags=["webhooks"], summary="Webhook deliveries in the outbox")
async def list_deliveries(
    gw: GatewayDep,
    _: AdminDep,
    status: str | None = Query(None, pattern="^(pending|delivered|dead)$"),
    tenant_id: str | None = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    if tenant_id is not None:
        validate_tenant_id(tenant_id)
    rows = await gw.store.list_deliveries(status, tenant_id, limit)
    targets = gw.deliverer.targets
    shown = []
    for d in rows:
        endpoint = await targets.resolve(d)
        shown.append(d.public(endpoint.url if endpoint else None, targets.stale(d)))
    return {"success": True, "deliveries": shown}


@router.get(
    "/deliveries/health",
    tags=["webhooks"],
    summary="Are webhooks failing? Pending and dead counts, and the last error",
)
async def delivery_health(gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    counts = await gw.store.count_deliveries(ATTENTION)
    # the newest rows tell whether the receiver fails now: enough for a banner
    failing = [
        d for d in await gw.store.list_deliveries(DeliveryStatus.PENDING, limit=100) if d.last_error
    ]
    last = failing[:1] or await gw.store.list_deliveries(DeliveryStatus.DEAD, limit=1)
    return {
        "success": True,
        "pending": counts.get(DeliveryStatus.PENDING, 0),
        "dead": counts.get(DeliveryStatus.DEAD, 0),
        "failing": len(failing),
        "last_error": last[0].last_error if last else None,
        "last_error_tenant_id": last[0].tenant_id if last else None,
    }


@router.post("/deliveries/retry-dead", tags=["webhooks"], summary="Replay every dead delivery")
async def retry_dead(
    gw: GatewayDep, _: AdminDep, tenant_id: str | None = Query(None, max_length=64)
) -> dict[str, Any]:
    count = await gw.store.retry_deliveries(tenant_id=_tenant_or_none(tenant_id))
    gw.deliverer.wake()
    return {"success": True, "retried": count}


@router.post("/deliveries/{delivery_id}/retry", tags=["webhooks"], summary="Replay one delivery")
async def retry_one(delivery_id: str, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    found = await _delivery(gw, delivery_id)
    count = await gw.store.retry_deliveries(delivery_id=found.delivery_id)
    gw.deliverer.wake()
    return {"success": True, "retried": count, "id": found.delivery_id}


@router.post("/deliveries/discard-dead", tags=["webhooks"], summary="Remove every dead delivery")
async def discard_dead(
    gw: GatewayDep, _: AdminDep, tenant_id: str | None = Query(None, max_length=64)
) -> dict[str, Any]:
    count = await gw.store.discard_deliveries(tenant_id=_tenant_or_none(tenant_id))
    if count:
        log.warning(
            "🗑 %d dead deliveries discarded%s", count, f" of {tenant_id}" if tenant_id else ""
        )
    return {"success": True, "discarded": count}


@router.post(
    "/deliveries/{delivery_id}/discard",
    tags=["webhooks"],
    summary="Remove one delivery (dead, or pending and stuck): its chat's next ones go on",
)
async def discard_one(delivery_id: str, gw: GatewayDep, _: AdminDep) -> dict[str, Any]:
    found = await _delivery(gw, delivery_id)
    count = await gw.store.discard_deliveries(delivery_id=found.delivery_id)
    if not count:
        raise Conflict(
            "the delivery is being attempted right now; try again", code="delivery_in_flight"
        )
    log.warning("🗑 delivery %s (%s, %s) discarded", found.delivery_id, found.event, found.status)
    gw.deliverer.wake()  # the next row of its chat may go now
    return {"success": True, "discarded": count, "id": found.delivery_id}


async def _delivery(gw: Gateway, delivery_id: str) -> Delivery:
    found = await gw.store.get_delivery(delivery_id[:64])
    if found is None:
        raise NotFound("no delivery with that id", code="delivery_not_found")
    return found


def _tenant_or_none(tenant_id: str | None) -> str | None:
    return None if tenant_id is None else validate_tenant_id(tenant_id)
