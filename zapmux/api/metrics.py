"""``GET /metrics``: Prometheus text, behind the admin key when one is set."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from zapmux.api.deps import AdminDep, GatewayDep
from zapmux.api.strict import StrictRoute
from zapmux.metrics import Labels
from zapmux.states import DeliveryStatus, Status

router = APIRouter(tags=["system"], route_class=StrictRoute)


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(gw: GatewayDep, _: AdminDep) -> PlainTextResponse:
    tenants: dict[Labels, float] = {(("state", s.value),): 0 for s in Status}
    for state, count in (await gw.tenants.count_tenants()).items():
        tenants[(("state", state),)] = count
    deliveries: dict[Labels, float] = {(("status", s.value),): 0 for s in DeliveryStatus}
    for status, count in (await gw.outbox_counts.current()).items():
        deliveries[(("status", status),)] = count
    gauges: dict[str, tuple[str, dict[Labels, float]]] = {
        "tenants": ("Tenants by state", tenants),
        "deliveries": ("Webhook deliveries in the outbox by status", deliveries),
        "uptime_seconds": ("Seconds since this server started", {(): time.time() - gw.started_at}),
        "background_task_failures": (
            "Background tasks that failed",
            {(): float(len(gw.tasks.failures))},
        ),
    }
    body = gw.metrics.render(gauges)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")
