"""Opt-outs: the numbers that asked a tenant to stop writing, and the keywords that do it."""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter

from zapmux.api.deps import GatewayDep, TenantDep
from zapmux.api.models import OptOutKeywordsBody
from zapmux.errors import NotFound
from zapmux.optouts import DEFAULT_KEYWORDS, clean_keywords, keywords_of
from zapmux.phone import normalize_phone

router = APIRouter(tags=["opt-outs"])


@router.get("/tenants/{tenant_id}/opt-outs", summary="Numbers that opted out")
async def list_opt_outs(tenant: TenantDep, gw: GatewayDep) -> dict[str, Any]:
    rows = await gw.store.list_opt_outs(tenant.id)
    return {"success": True, "opt_outs": [r.public() for r in rows]}


@router.delete("/tenants/{tenant_id}/opt-outs/{phone}", summary="Lift a number's opt-out")
async def lift_opt_out(tenant: TenantDep, phone: str, gw: GatewayDep) -> dict[str, Any]:
    phone = normalize_phone(phone)
    if not await gw.optouts.lift(tenant.id, phone):
        raise NotFound(f"{phone} has not opted out of tenant {tenant.id}", code="opt_out_not_found")
    logging.getLogger(f"zapmux.tenant.{tenant.id}").info("✅ opt-out of %s lifted", phone)
    return {"success": True, "tenant_id": tenant.id, "phone": phone}


def _keywords(tenant_id: str, keywords: list[str], custom: bool) -> dict[str, Any]:
    return {"success": True, "tenant_id": tenant_id, "keywords": keywords, "default": not custom}


@router.get("/tenants/{tenant_id}/opt-out-keywords", summary="The words that opt a number out")
async def get_keywords(tenant: TenantDep) -> dict[str, Any]:
    return _keywords(tenant.id, keywords_of(tenant), tenant.opt_out_keywords is not None)


@router.put("/tenants/{tenant_id}/opt-out-keywords", summary="Set the tenant's opt-out words")
async def put_keywords(
    tenant: TenantDep, body: OptOutKeywordsBody, gw: GatewayDep
) -> dict[str, Any]:
    keywords = None if body.keywords is None else clean_keywords(body.keywords)
    stored = None if keywords is None else json.dumps(keywords)
    await gw.store.update_tenant(tenant.id, opt_out_keywords=stored)
    gw.webhooks.forget(tenant.id)  # incoming messages read the tenant's record from memory
    if keywords is None:
        return _keywords(tenant.id, list(DEFAULT_KEYWORDS), False)
    return _keywords(tenant.id, keywords, True)
