"""Inbound events that could not be recorded: listed, and replayed once the cause is fixed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query

from zapmux.api.deps import AdminDep, GatewayDep
from zapmux.api.strict import StrictRoute
from zapmux.errors import NotFound
from zapmux.ids import validate_tenant_id

router = APIRouter(tags=["webhooks"], route_class=StrictRoute)


@router.get("/inbound/dead", summary="Inbound events set aside because they could not be recorded")
async def list_dead(
    gw: GatewayDep,
    _: AdminDep,
    tenant_id: str | None = Query(None, max_length=64),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    if tenant_id is not None:
        validate_tenant_id(tenant_id)
    rows = await gw.store.list_dead_inbound(tenant_id, limit)
    return {"success": True, "events": [row.public() for row in rows]}


@router.post("/inbound/dead/{dead_id}/replay", summary="Record a set-aside inbound event again")
async def replay_dead(
    gw: GatewayDep, _: AdminDep, dead_id: int = Path(ge=1, le=2**62)
) -> dict[str, Any]:
    dead = await gw.store.get_dead_inbound(dead_id)
    if dead is None:
        raise NotFound("no set-aside inbound event with that id", code="dead_event_not_found")
    await gw.dispatcher.replay(dead)
    return {"success": True, "replayed": dead_id, "tenant_id": dead.tenant_id}
